"""File-system work confined to a rootfs.

Paths inside the image are resolved the way the image itself would see them (as under chroot):
an absolute symlink target is re-rooted at the rootfs and ``..`` stops at its top, so a link such as
``/lib64 -> /usr/lib64`` or ``/x -> ../../../etc`` can never lead outside.  Removal never follows
a symlink and never crosses a mount point.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

MAX_SYMLINKS = 40
GLOB_CHARS = frozenset("*?[")


class ConfinementError(Exception):
    """A path could not be resolved safely inside the rootfs."""


class MountPointError(Exception):
    """Removal met a mount point and refused to cross it."""


def has_glob(pattern: str) -> bool:
    return any(ch in GLOB_CHARS for ch in pattern)


def image_parts(path: str) -> list[str]:
    """The components of an absolute in-image path, without empty or '.' parts."""
    return [part for part in path.split("/") if part not in ("", ".")]


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> PurePosixPath:
    """The real in-image path of ``path`` (absolute, '/'-rooted), resolving symlinks inside ``root``.

    With ``follow_last=False`` the final component is kept as it is (to act on a link itself).
    Components that do not exist are kept literally.
    """
    pending = image_parts(path)
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        if not pending and not follow_last:
            resolved.append(part)
            break
        host_path = root.joinpath(*resolved, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(host_path).st_mode)
        except FileNotFoundError:
            is_link = False
        if not is_link:
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise ConfinementError(f"too many levels of symbolic links in {path}")
        target = os.readlink(host_path)
        if target.startswith("/"):
            resolved = []
        pending = image_parts(target) + pending
    return PurePosixPath("/", *resolved)


def host_path(root: Path, image_path: PurePosixPath | str) -> Path:
    """The host path of an already resolved in-image path."""
    return root.joinpath(*image_parts(str(image_path)))


def glob_in_root(root: Path, pattern: str) -> list[PurePosixPath]:
    """In-image paths matching a shell-style pattern ('*', '?', '[...]'; '**' for any depth).

    Like the shell, wildcards do not match names starting with '.' unless the pattern does.
    The last component of each match is not resolved, so a matched symlink is the link itself.
    """
    parts = image_parts(pattern)
    if not parts:
        return []
    if not any(has_glob(part) for part in parts):
        return [resolve_in_root(root, pattern, follow_last=False)]
    matches: list[PurePosixPath] = []
    _glob_walk(root, PurePosixPath("/"), parts, matches)
    return sorted(set(matches))


def _glob_walk(root: Path, base: PurePosixPath, parts: list[str], out: list[PurePosixPath]) -> None:
    part, rest = parts[0], parts[1:]
    if part == "**":
        _glob_walk_any_depth(root, base, rest, out)
        return
    if not has_glob(part):
        candidates = [part]
    else:
        candidates = [name for name in _list_dir(root, base) if _name_matches(name, part)]
    for name in candidates:
        child = base / name
        if not rest:
            if os.path.lexists(host_path(root, child)):
                out.append(child)
            continue
        real_child = resolve_in_root(root, str(child))
        if os.path.isdir(host_path(root, real_child)) and not os.path.islink(host_path(root, real_child)):
            _glob_walk(root, real_child, rest, out)


def _glob_walk_any_depth(root: Path, base: PurePosixPath, rest: list[str], out: list[PurePosixPath]) -> None:
    """'**' matches zero or more directories; directory links are not descended into."""
    if rest:
        _glob_walk(root, base, rest, out)
    for name in _list_dir(root, base):
        child = base / name
        child_host = host_path(root, child)
        if name.startswith(".") or child_host.is_symlink() or not child_host.is_dir():
            continue
        _glob_walk_any_depth(root, child, rest, out)


def _list_dir(root: Path, base: PurePosixPath) -> list[str]:
    try:
        return sorted(os.listdir(host_path(root, base)))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _name_matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


@dataclass
class RemovalStats:
    entries: int = 0
    bytes: int = 0

    def add(self, other: "RemovalStats") -> None:
        self.entries += other.entries
        self.bytes += other.bytes


def remove_tree(path: Path, *, keep: frozenset[Path] = frozenset(), measure: bool = True) -> RemovalStats:
    """Remove ``path`` (a file, a link or a directory tree) without following links or crossing mounts.

    Anything in ``keep`` (host paths) survives, with the directories leading to it.  With ``measure``
    the bytes of removed regular files are counted (one stat each; cleanup skips it).
    Raises MountPointError, leaving the mount untouched, if a mount point lies inside.
    """
    stats = RemovalStats()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return stats
    if any(kept == path or kept in path.parents for kept in keep):
        return stats
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        stats.entries += 1
        stats.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return stats
    if os.path.ismount(path):
        raise MountPointError(f"{path} is a mount point")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        emptied = _remove_contents(fd, path, st.st_dev, keep, stats, measure)
    finally:
        os.close(fd)
    if emptied:
        os.rmdir(path)
        stats.entries += 1
    return stats


def _remove_contents(dir_fd: int, dir_path: Path, device: int, keep: frozenset[Path], stats: RemovalStats,
                     measure: bool) -> bool:
    """Empty a directory given as an open fd; returns False when something kept stays inside.

    The entry type comes from the directory itself (d_type): only directories are stat'ed, for the mount check.
    """
    everything_removed = True
    with os.scandir(dir_fd) as scanned:
        entries = list(scanned)
    for entry in entries:
        name = entry.name
        if keep and dir_path / name in keep:
            everything_removed = False
            continue
        if not entry.is_dir(follow_symlinks=False):
            if measure and entry.is_file(follow_symlinks=False):
                stats.bytes += entry.stat(follow_symlinks=False).st_size
            os.unlink(name, dir_fd=dir_fd)
            stats.entries += 1
            continue
        if entry.stat(follow_symlinks=False).st_dev != device:
            raise MountPointError(f"{dir_path / name} is a mount point")
        child_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            child_emptied = _remove_contents(child_fd, dir_path / name, device, keep, stats, measure)
        finally:
            os.close(child_fd)
        if child_emptied:
            os.rmdir(name, dir_fd=dir_fd)
            stats.entries += 1
        else:
            everything_removed = False
    return everything_removed


def walk_tree(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry below root (not root itself), without following links or crossing mount points."""
    device = os.lstat(root).st_dev
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                children = [(Path(entry.path), entry.stat(follow_symlinks=False)) for entry in entries]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for child, st in children:
            yield child, st
            if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                stack.append(child)


def make_dirs_in_root(root: Path, image_dir: str, mode: int = 0o755) -> PurePosixPath:
    """mkdir -p inside the rootfs, resolving existing links in-root; returns the real in-image dir."""
    real = resolve_in_root(root, image_dir)
    current = root
    for part in image_parts(str(real)):
        current = current / part
        if not os.path.lexists(current):
            os.mkdir(current)
            os.chmod(current, mode)
        elif not current.is_dir() or current.is_symlink():
            raise ConfinementError(f"{image_dir}: {current.relative_to(root)} is not a directory")
    return real


def write_file_in_root(root: Path, image_path: str, content: bytes, mode: int) -> PurePosixPath:
    """Create or replace a regular file inside the rootfs with exactly ``mode``; never writes through a link."""
    parent = make_dirs_in_root(root, str(PurePosixPath(image_path).parent))
    real = parent / PurePosixPath(image_path).name
    target = host_path(root, real)
    if target.is_symlink():
        os.unlink(target)
    elif target.exists() and not target.is_file():
        raise ConfinementError(f"{image_path} exists and is not a regular file")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, content)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return real


def is_executable_in_root(root: Path, program: str) -> bool:
    """Whether the in-image absolute path is a regular executable file (links resolved inside the rootfs)."""
    if not program.startswith("/"):
        return False
    try:
        st = os.lstat(host_path(root, resolve_in_root(root, program)))
    except (FileNotFoundError, ConfinementError):
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)
