"""A full file system, named: which one filled up, and what to do about it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_full(err: BaseException) -> bool:
    """No space left (or over quota)."""
    return isinstance(err, OSError) and err.errno in FULL_ERRNOS


def mount_point(path: Path | str) -> Path:
    """The mount point of the file system that holds path (or would hold it, when it does not exist yet)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def where(path: Path | str) -> str:
    """'/srv/out (on the file system mounted at /srv)'."""
    return f"{path} (on the file system mounted at {mount_point(path)})"


def reason(err: OSError, path: Path | str | None = None) -> str:
    """The OS's words, and for a full file system which one it is."""
    said = err.strerror or str(err)
    if is_full(err) and path is not None:
        return f"{said}: the file system mounted at {mount_point(path)} is full"
    return said


def full_rootfs_hint(in_memory: bool, workdir: Path | None) -> str:
    """What to do when the rootfs filled up: the way out depends on where it was built."""
    if in_memory:
        return ("the rootfs is full: try --rootfs-in-memory never (on disk), or a larger tmpfs with "
                "MKIMAGE_TMPFS_SIZE (e.g. 8G), or free memory")
    place = f" of {mount_point(workdir)}" if workdir is not None else ""
    return f"the rootfs is full: free space on the file system{place}, or give another --tmpdir"


def rootfs_hints(hints: list[str], in_memory: bool, workdir: Path | None) -> list[str]:
    """The package manager's failure hints, with the one for a full rootfs fitted to where it was built."""
    return [full_rootfs_hint(in_memory, workdir) if hint.startswith("the rootfs is full") else hint
            for hint in hints]
