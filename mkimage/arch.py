"""The architectures mkimage builds for: their names, their OCI platforms, whether this host can run their
programs (qemu-user through binfmt_misc), and what the package manager needs to install them.

Names are rpm's (`x86_64`, `aarch64`, `ppc64le`, `s390x`), as `--arch`, `$basearch` and package file names
spell them; the OCI platform (`amd64`, `arm64`/`v8`) is derived.  A foreign architecture's programs run under
qemu-user: the package's `%post` in the sandbox, a profile's chroot commands, the smoke test.  That needs a
binfmt_misc registration with the **F** flag, whose interpreter the kernel opens when it is registered, so that
it is found inside the sandbox's and the image's root, where no qemu binary is.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
QEMU_HINT = "apt-get install qemu-user-static (Debian/Ubuntu) or dnf install qemu-user-static (Fedora/EL)"


@dataclass(frozen=True)
class Arch:
    """One architecture, as rpm names it."""

    name: str
    """rpm's name: x86_64, aarch64, ppc64le, s390x."""
    goarch: str
    """The OCI platform's architecture (Go's name): amd64, arm64."""
    variant: str | None = None
    """The OCI platform's variant: v8 for arm64."""
    qemu: str = ""
    """qemu-user's name for it (the binfmt_misc entry qemu-NAME)."""

    @property
    def platform(self) -> str:
        """linux/arm64/v8, as the image-spec's platform reads."""
        return "/".join(filter(None, ("linux", self.goarch, self.variant)))

    @property
    def engine_platform(self) -> str:
        """What `docker run --platform` takes: linux/arm64."""
        return f"linux/{self.goarch}"

    @property
    def binfmt_entry(self) -> Path:
        return BINFMT_DIR / f"qemu-{self.qemu or self.name}"

    def __str__(self) -> str:
        return self.name


KNOWN: dict[str, Arch] = {arch.name: arch for arch in (
    Arch("x86_64", "amd64", qemu="x86_64"),
    Arch("aarch64", "arm64", "v8", qemu="aarch64"),
    Arch("ppc64le", "ppc64le", qemu="ppc64le"),
    Arch("s390x", "s390x", qemu="s390x"),
    Arch("riscv64", "riscv64", qemu="riscv64"),
    Arch("i686", "386", qemu="i386"),
    Arch("armv7hl", "arm", "v7", qemu="arm"),
)}
# platform.machine() -> rpm's name
MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64", "i686": "i686", "i386": "i686", "armv7l": "armv7hl"}
# What the host's CPU runs without emulation, besides its own architecture.
NATIVE_TOO = {"x86_64": ("i686",)}
# The names people reach for first (OCI's, Debian's) -> rpm's.
ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le", "386": "i686", "armhf": "armv7hl"}


def host(machine: str | None = None) -> Arch:
    """This host's architecture."""
    name = machine or platform.machine()
    rpm_name = MACHINES.get(name, name)
    return KNOWN.get(rpm_name, Arch(rpm_name, rpm_name, qemu=rpm_name))


def is_host(arch: Arch) -> bool:
    return arch.name == host().name


def runs_natively(arch: Arch, host_arch: Arch | None = None) -> bool:
    here = host_arch or host()
    return arch.name == here.name or arch.name in NATIVE_TOO.get(here.name, ())


def parse(values: Iterable[str]) -> tuple[tuple[Arch, ...], list[str]]:
    """--arch values (repeatable, comma-separated) -> the architectures in the order given (no repeats),
    and the problems; none given: this host's."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    problems = []
    arches: list[Arch] = []
    for name in dict.fromkeys(names):
        if name in KNOWN:
            arches.append(KNOWN[name])
        elif name in ALIASES:
            problems.append(f"--arch {name}: give rpm's name, {ALIASES[name]}")
        else:
            problems.append(f"--arch {name}: unknown architecture (known: {', '.join(KNOWN)})")
    return (tuple(arches) or (host(),)), problems


def binfmt_problem(arch: Arch, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why this host cannot run arch's programs in the sandbox and the image's root, or None."""
    if runs_natively(arch):
        return None
    entry = binfmt_dir / arch.binfmt_entry.name
    needs = f"--arch {arch}: building for {arch} on this {host()} host needs qemu-user"
    if not (binfmt_dir / "status").exists():
        return (f"{needs}, but binfmt_misc is not mounted: mount -t binfmt_misc binfmt_misc {binfmt_dir} "
                f"(then: {QEMU_HINT})")
    try:
        lines = entry.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"{needs} registered with binfmt_misc ({entry} is missing): {QEMU_HINT}"
    except OSError as err:
        return f"{needs}: cannot read {entry}: {err.strerror}"
    return _entry_problem(arch, entry, lines, needs)


def _entry_problem(arch: Arch, entry: Path, lines: Sequence[str], needs: str) -> str | None:
    if "enabled" not in lines[:1]:
        return f"{needs}: {entry} is disabled: update-binfmts --enable qemu-{arch.qemu} (or echo 1 > {entry})"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return (f"{needs} registered with the F flag, so that the kernel finds its interpreter inside the "
                f"sandbox and the image's root; {entry} has flags {flags or 'none'!r}: {QEMU_HINT} "
                "(its registrations have F)")
    return None


def forcearch(arch: Arch) -> str:
    """What dnf's --forcearch gets for a root of arch: its name for an architecture other than this host's (even
    one the CPU runs natively: dnf installs only the host's by default), '' for the host's."""
    return "" if is_host(arch) else arch.name


def package_manager_flags(arch: Arch) -> tuple[str, ...]:
    """What every call of dnf for a root of arch needs (makecache, install, clean): --forcearch for a foreign
    architecture (without it dnf says `does not have a compatible architecture` or `No packages marked`)."""
    forced = forcearch(arch)
    return (f"--forcearch={forced}",) if forced else ()


def package_manager_problem(arch: Arch, package_manager: str) -> str | None:
    """yum 3 has no --forcearch: it installs only this host's architecture."""
    if forcearch(arch) and package_manager != "dnf":
        return f"--arch {arch}: {package_manager} cannot install another architecture (it has no --forcearch); use dnf"
    return None


# A compound extension stays whole: sbom.spdx.json -> sbom.aarch64.spdx.json.
COMPOUND_SUFFIXES = (".spdx.json", ".cdx.json", ".cyclonedx.json", ".spdx.xml", ".cdx.xml")


def arch_path(path: Path, arch: Arch) -> Path:
    """path with the architecture before its extension: sbom.json -> sbom.aarch64.json (one file per
    architecture of a multi-architecture build)."""
    name = path.name
    suffix = next((s for s in COMPOUND_SUFFIXES if name.endswith(s) and len(name) > len(s)), path.suffix)
    stem = name[:len(name) - len(suffix)] if suffix else name
    return path.with_name(f"{stem}.{arch.name}{suffix}")
