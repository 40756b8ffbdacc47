"""Mounts, made in a private mount namespace so that none of them can outlive mkimage or leak to the host."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MountError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise MountError(f"{what}: {os.strerror(err)}")


def enter_private_namespace() -> bool:
    """Give this process its own mount namespace with private propagation.

    Every mount made afterwards is seen by mkimage and its children only, and vanishes when they exit,
    even after SIGKILL.  Returns False where the kernel or the sandbox does not allow it.
    """
    if _libc.unshare(CLONE_NEWNS) != 0:
        return False
    return _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0


def mount(source: str, target: Path, fstype: str, flags: int = 0, options: str = "") -> None:
    _check(
        _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, options.encode() or None),
        f"mounting {fstype} on {target}",
    )


def unmount(target: Path) -> None:
    """Unmount, lazily if something still holds it busy."""
    if _libc.umount2(os.fsencode(target), 0) == 0:
        return
    _check(_libc.umount2(os.fsencode(target), MNT_DETACH), f"unmounting {target}")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first."""
    prefix = str(path.resolve())
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            mount_point = _unescape(line.split()[4])
            if mount_point == prefix or mount_point.startswith(prefix.rstrip("/") + "/"):
                found.append(Path(mount_point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all_under(path: Path) -> None:
    for mount_point in mounts_under(path):
        unmount(mount_point)


def mem_available_bytes() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0
