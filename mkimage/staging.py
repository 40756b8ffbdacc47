"""Files written aside, then moved into place all together, or not at all.

Every file a build hands over (an archive, an OCI layout's new blobs and index, an SBOM) is first written under a
temp name beside the path it is for, on the same file system, so that one rename moves it into place.
``Staging.publish`` makes the renames in order; what a rename replaces is kept aside (a hard link beside it) until
``commit``, so that ``roll_back`` can put every earlier file back byte for byte.  ``discard`` removes whatever was
staged and not moved.  Nothing but a missing path or a regular file is ever replaced: a device node, a FIFO or a
symlink at the path stops the publish.

``ReservedFile`` is for the one file written after everything else (the report): its space is taken before
anything is published, so that writing it at the very end cannot fail for want of space.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

RESERVE_SPARE = 64 << 10
"""Bytes a reserved file may grow by between its draft and its final version."""


class NotReplaceable(OSError):
    """Something other than a regular file is where a file is to be written."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(errno.EEXIST, f"{what}; refusing to replace it", str(path))


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden name beside path: .NAME.RANDOM.tmp"""
    return path.with_name(f".{path.name}.{os.urandom(4).hex()}.{kind}")


def replaceable_problem(path: Path) -> str | None:
    """Why a file must not be written at path: anything but a missing path or a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link; give the path of the file itself"
    if stat.S_ISDIR(mode):
        return "is a directory"
    return "is not a regular file (a device, FIFO or socket)"


def check_replaceable(path: Path) -> None:
    problem = replaceable_problem(path)
    if problem is not None:
        raise NotReplaceable(path, problem)


def create_exclusive(path: Path, mode: int = 0o644) -> int:
    """A new file, never through a symlink, never over an existing one."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # our own temp dir: rmtree does not follow symlinks
    else:
        path.unlink(missing_ok=True)


@dataclass
class Move:
    source: Path
    """The staged file (or, for a new directory, the staged directory)."""
    target: Path
    label: str
    """What the user asked for, as the report names it: 'output oci:/srv/layout', 'sbom /srv/x.json'."""
    directory: bool = False
    backup: Path | None = None
    made_dirs: list[Path] = field(default_factory=list)
    done: bool = False


class StagingError(Exception):
    """A move into place failed; every move already made was put back (``problems`` says what could not be)."""

    def __init__(self, move: Move, err: OSError, problems: list[str]) -> None:
        super().__init__(f"{move.target}: {err.strerror or err}")
        self.move, self.error, self.problems = move, err, problems


class Staging:
    def __init__(self) -> None:
        self.moves: list[Move] = []
        self.scratch: list[Path] = []
        """Temp dirs staged files live in (removed at the end, whatever happened)."""

    # ------------------------------------------------------------------------------------ staging
    def add(self, source: Path, target: Path, label: str, *, directory: bool = False) -> None:
        self.moves.append(Move(source, target, label, directory))

    def add_scratch(self, directory: Path) -> None:
        self.scratch.append(directory)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(move.label for move in self.moves))

    # ----------------------------------------------------------------------------------- publishing
    def publish(self) -> None:
        """Every move, in order; if one fails, the ones made are put back and StagingError says which failed."""
        for move in self.moves:
            try:
                _publish(move)
            except OSError as err:
                raise StagingError(move, err, self.roll_back()) from None

    def roll_back(self) -> list[str]:
        """Put back what publish moved (the earlier files, byte for byte); one line per thing that could not be."""
        problems = []
        for move in reversed([move for move in self.moves if move.done]):
            try:
                _unpublish(move)
            except OSError as err:
                problems.append(f"{move.label}: could not put back {move.target}: {err.strerror or err}")
        return problems

    def unrestored(self) -> list[str]:
        """The labels of moves still in place (published, and not put back)."""
        return list(dict.fromkeys(move.label for move in self.moves if move.done))

    def commit(self) -> list[str]:
        """Published for good: the kept earlier files go, and the scratch dirs."""
        problems = []
        for move in self.moves:
            if move.backup is not None:
                try:
                    move.backup.unlink(missing_ok=True)
                except OSError as err:
                    problems.append(f"could not remove {move.backup}: {err.strerror or err}")
                move.backup = None
        return problems + self.discard()

    def discard(self) -> list[str]:
        """Remove whatever was staged and is not in place, and the scratch dirs."""
        problems = []
        for path in [move.source for move in self.moves if not move.done] + self.scratch:
            try:
                _remove(path)
            except OSError as err:
                problems.append(f"could not remove {path}: {err.strerror or err}")
        self.scratch = []
        return problems


def _publish(move: Move) -> None:
    if move.directory:
        _check_new_dir(move.target)
    else:
        check_replaceable(move.target)
    move.made_dirs = _make_parents(move.target)
    if not move.directory and os.path.lexists(move.target):
        move.backup = _keep_aside(move.target)
    try:
        if move.directory:
            os.rename(move.source, move.target)
        else:
            os.replace(move.source, move.target)
    except OSError:
        if move.backup is not None and not os.path.lexists(move.target):
            os.replace(move.backup, move.target)
            move.backup = None
        _remove_dirs(move.made_dirs)
        raise
    move.done = True


def _unpublish(move: Move) -> None:
    if move.backup is not None:
        os.replace(move.backup, move.target)
        move.backup = None
    elif move.directory:
        os.rename(move.target, move.source)  # back to its temp name: discard() removes it
    else:
        os.unlink(move.target)
    move.done = False
    _remove_dirs(move.made_dirs)


def _check_new_dir(target: Path) -> None:
    if os.path.lexists(target):
        raise NotReplaceable(target, "appeared while the build ran")


def _keep_aside(target: Path) -> Path:
    """A second name for the file at target, so that it survives the rename over it."""
    backup = temp_name(target, "old")
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:  # no hard links here: move it aside (target is missing for a moment)
        os.rename(target, backup)
    return backup


def _make_parents(target: Path) -> list[Path]:
    """The missing parent dirs of target (in an OCI layout: blobs/sha256), made; returned to be removed again."""
    missing = []
    parent = target.parent
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
    return missing


def _remove_dirs(directories: list[Path]) -> None:
    for directory in directories:  # deepest first
        try:
            os.rmdir(directory)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------- reserved file
class ReservedFile:
    """A file written last that must not fail then: ``reserve`` writes a draft, with room to spare, under a temp
    name beside the path (proving the directory writable and taking the space); ``write`` puts the final bytes
    into that same file, in place, and renames it into place.  Without a reservation ``write`` is a plain atomic
    write.  Only a missing path or a regular file is ever replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp: Path | None = None

    def reserve(self, draft: bytes, spare: int = RESERVE_SPARE) -> None:
        check_replaceable(self.path)
        temp = temp_name(self.path)
        try:
            fd = create_exclusive(temp)
            try:
                _write_all(fd, draft + b" " * spare)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self.temp = temp

    def write(self, data: bytes) -> None:
        temp, self.temp = self.temp, None
        try:
            check_replaceable(self.path)
            if temp is None:
                temp = temp_name(self.path)
                fd = create_exclusive(temp)
            else:
                fd = os.open(temp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                _write_all(fd, data)
                os.ftruncate(fd, len(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except BaseException:
            if temp is not None:
                temp.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)
