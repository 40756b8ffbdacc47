"""yum 3: EL7's package manager.  Covered by argv tests: no yum 3 binary runs on the machines we test on."""

from __future__ import annotations

from dataclasses import dataclass

from . import PackageManager


@dataclass(frozen=True)
class Yum(PackageManager):
    name: str = "yum"

    def extra_setopts(self) -> list[str]:
        # yum 3 skips unknown names with exit 0 unless told not to.
        return ["--setopt=skip_missing_names_on_install=False"]
