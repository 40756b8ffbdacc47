"""The package managers mkimage drives: yum 3 (EL7) and dnf 4 (EL8+, and dnf 4 anywhere), one module each.

Both get the same request; the argv each accepts is built by pure functions (`dnf.py`, `yum.py`), how the config
is read is asked of the package manager itself (`config.py`), and what its output means is read in `output.py`.
dnf5 is detected and refused: it reads its configuration and repositories from inside the installroot unless
told otherwise, which would build something other than what was asked.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

HOST_VARS_DIRS = (Path("/etc/yum/vars"), Path("/etc/dnf/vars"))


@dataclass(frozen=True)
class InstallRequest:
    config: Path
    root: Path
    releasever: str | None
    """What --releasever gets: a version, '/' (detect it from the host), or None (no flag at all)."""
    groups: tuple[str, ...]
    packages: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    keep_cache: bool = False
    """Keep downloaded packages (the cache dir is a persistent --cache-dir)."""
    arch_flags: tuple[str, ...] = ()
    """What every call for this root needs for its architecture (mkimage.arch: --forcearch for a foreign one)."""


@dataclass(frozen=True)
class PackageManager:
    """What dnf 4 and yum 3 share; each module says what its own binary does differently."""

    binary: str
    name: str = "dnf"

    def common_argv(self, request: InstallRequest) -> list[str]:
        releasever = [] if request.releasever is None else [f"--releasever={request.releasever}"]
        return [
            self.binary, "-c", str(request.config), f"--installroot={request.root}", *releasever, *request.arch_flags,
            "--setopt=tsflags=nodocs", "--setopt=group_package_types=mandatory",
            *self.extra_setopts(), *(["--setopt=keepcache=True"] if request.keep_cache else []), "-y",
        ]

    def extra_setopts(self) -> list[str]:
        return []

    def install_argv(self, request: InstallRequest) -> list[str]:
        """One transaction, one depsolve, for the groups and the packages together."""
        excludes = [f"--exclude={pattern}" for pattern in request.exclude]
        targets = [f"@{group}" for group in request.groups] + list(request.packages)
        return [*self.common_argv(request), *excludes, "install", *targets]

    def makecache_argv(self, request: InstallRequest) -> list[str]:
        """Fetch the repositories' metadata into the rootfs's cache (the install reuses it)."""
        return [*self.common_argv(request), "makecache"]

    def clean_argv(self, request: InstallRequest) -> list[str]:
        return [*self.common_argv(request), "clean", "all"]


def _is_dnf5(path: str) -> bool:
    return os.path.basename(os.path.realpath(path)).startswith("dnf5")


def _is_dnf(path: str) -> bool:
    return os.path.basename(os.path.realpath(path)).startswith("dnf")


def detect(choice: str) -> tuple[PackageManager | None, str | None]:
    """The package manager for --pkg-manager auto|yum|dnf, or a sentence saying why there is none."""
    from .dnf import Dnf
    from .yum import Yum

    dnf = shutil.which("dnf")
    yum = shutil.which("yum")
    if choice in ("auto", "dnf") and dnf and not _is_dnf5(dnf):
        return Dnf(dnf), None
    if choice in ("auto", "yum") and yum and not _is_dnf5(yum):
        return (Dnf(yum) if _is_dnf(yum) else Yum(yum)), None
    if any(path and _is_dnf5(path) for path in (dnf, yum)) or shutil.which("dnf5"):
        return None, ("only dnf5 was found, which mkimage does not support yet (it reads its configuration "
                      "and repositories from inside the installroot unless given --use-host-config); "
                      "install dnf 4 (python3-dnf) or yum")
    wanted = {"auto": "dnf or yum", "dnf": "dnf", "yum": "yum"}[choice]
    return None, f"{wanted} not found on PATH: install it (Debian/Ubuntu: apt-get install dnf)"


def default_config(yum_conf: Path = Path("/etc/yum.conf"), dnf_conf: Path = Path("/etc/dnf/dnf.conf")) -> Path:
    """/etc/yum.conf as the script had it; /etc/dnf/dnf.conf where only that exists."""
    if not yum_conf.exists() and dnf_conf.exists():
        return dnf_conf
    return yum_conf


def config_file_problem(config: Path) -> str | None:
    """Why the config file can't be read at all, or None (what is in it, the package manager judges)."""
    try:
        mode = config.stat().st_mode
    except FileNotFoundError:
        return f"config file {config} does not exist (give one with -y/--yum-config)"
    except OSError as err:
        return f"config file {config} cannot be accessed: {err.strerror}"
    if not stat.S_ISREG(mode):
        return f"config file {config} is not a regular file"
    if not os.access(config, os.R_OK):
        return f"config file {config} is not readable"
    return None
