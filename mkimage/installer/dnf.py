"""dnf 4: the package manager of EL8 and later, and the one Debian and Ubuntu ship."""

from __future__ import annotations

from dataclasses import dataclass

from . import PackageManager


@dataclass(frozen=True)
class Dnf(PackageManager):
    name: str = "dnf"

    def extra_setopts(self) -> list[str]:
        # No weak dependencies: a base image gets what the groups require, nothing they merely recommend.
        return ["--setopt=install_weak_deps=False"]
