"""The image's rpm database: where the image's own rpm looks for it, in the backend it reads, and nothing else.

The package manager runs with this host's rpm, which decides where the database goes (Debian's rpm: ``~/.rpmdb``)
and in which format (Debian's rpm 4.18: sqlite).  mkimage pins the install location with a private ``HOME`` whose
``.rpmmacros`` says ``%_dbpath /var/lib/rpm``; after the profile this stage reads the image's own rpm
configuration (its macro files, never this host's), moves the database where that rpm expects it, converts it
with the image's own rpm where the backends differ, and leaves no lock or sqlite side files behind.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from .context import BuildContext
from .customize import chroot_command, chroot_env, image_mounts
from .errors import InstallError
from .fsutil import ConfinementError, glob_in_root, host_path, is_executable_in_root, remove_tree, resolve_in_root
from .installer.rpm import INSTALL_DBPATH, checkpoint_sqlite
from .run import CommandResult, run_captured

COMPAT_DBPATH = "/var/lib/rpm"
"""EL7/EL8/EL9's place, and the compatibility link Fedora and EL10 keep there."""
IMAGE_RPM = "/usr/bin/rpm"
# rpm's macro path, minus the per-architecture and fileattrs files (which never set the database).
MACRO_FILES = ("/usr/lib/rpm/macros", "/usr/lib/rpm/macros.d/macros.*", "/usr/lib/rpm/redhat/macros",
               "/etc/rpm/macros.*", "/etc/rpm/macros")
BACKEND_FILES = (("sqlite", "rpmdb.sqlite"), ("ndb", "Packages.db"), ("bdb", "Packages"))
OLD_RPM_BACKEND = "bdb"
"""rpm before 4.16 (EL7's 4.11, EL8's 4.14) has no %_db_backend: it reads Berkeley DB only."""
SIDE_FILE_PATTERNS = ("rpmdb.sqlite-wal", "rpmdb.sqlite-shm", ".rpm.lock", ".dbenv.lock", "__db.0*")
DEFINITION_RE = re.compile(r"^%(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<params>\([^)]*\))?[ \t]+(?P<body>.*)$")
REFERENCE_RE = re.compile(r"%(?:\{(?P<flag>[?!]*)(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<alt>[^}]*))?\}"
                          r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
MAX_EXPANSION_DEPTH = 16


# ------------------------------------------------------------------------------------- the image's rpm
@dataclass(frozen=True)
class TargetRpm:
    """What the image's own rpm expects, read from its macro files."""

    dbpath: str
    backend: str | None
    """None when the image has no rpm configuration: any backend will do."""
    has_rpm: bool


def parse_macros(texts: Iterable[str]) -> dict[str, str]:
    """Simple macro definitions (``%name body``) of rpm macro files, later files winning.
    Parametric macros are skipped; a body continued with a trailing backslash is joined."""
    macros: dict[str, str] = {}
    for text in texts:
        lines = iter(text.splitlines())
        for line in lines:
            while line.endswith("\\"):
                line = line[:-1] + "\n" + next(lines, "")
            match = DEFINITION_RE.match(line)
            if match and not match.group("params"):
                macros[match.group("name")] = match.group("body").strip()
    return macros


def expand(value: str, macros: Mapping[str, str], depth: int = 0) -> str | None:
    """Expand %{name}, %name, %{?name} and %{?name:alt}; None for what needs a shell or cannot be known."""
    if depth > MAX_EXPANSION_DEPTH or "%(" in value or "%[" in value:
        return None
    unknown = False

    def substitute(match: re.Match) -> str:
        nonlocal unknown
        name = match.group("braced") or match.group("bare")
        flags, alt = match.group("flag") or "", match.group("alt")
        defined = name in macros
        if "?" in flags:
            wanted = defined != ("!" in flags)
            if alt is not None:
                return (expand(alt, macros, depth + 1) or "") if wanted else ""
            return (expand(macros[name], macros, depth + 1) or "") if wanted and defined else ""
        if not defined:
            unknown = True
            return ""
        body = expand(macros[name], macros, depth + 1)
        if body is None:
            unknown = True
            return ""
        return body

    result = REFERENCE_RE.sub(substitute, value.replace("%%", "\0"))
    return None if unknown else result.replace("\0", "%").strip()


def macro_texts(root: Path) -> list[str]:
    """The image's macro files in rpm's order, each resolved inside the rootfs."""
    texts = []
    for pattern in MACRO_FILES:
        for image_path in sorted(glob_in_root(root, pattern)):
            try:
                path = host_path(root, resolve_in_root(root, str(image_path)))
            except ConfinementError:  # a link loop: rpm could not read it either
                continue
            if path.is_file():
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def read_target(root: Path) -> TargetRpm:
    """The image's %_dbpath and %_db_backend; /var/lib/rpm for a tree without rpm."""
    has_rpm = is_executable_in_root(root, IMAGE_RPM)
    texts = macro_texts(root)
    if not texts:
        return TargetRpm(COMPAT_DBPATH, None, has_rpm)
    macros = parse_macros(texts)
    dbpath = expand(macros.get("_dbpath", COMPAT_DBPATH), macros)
    if not dbpath or not dbpath.startswith("/") or ".." in dbpath.split("/"):
        dbpath = COMPAT_DBPATH
    backend = expand(macros["_db_backend"], macros) if "_db_backend" in macros else OLD_RPM_BACKEND
    return TargetRpm(str(PurePosixPath(dbpath)), backend or OLD_RPM_BACKEND, has_rpm)


# --------------------------------------------------------------------------------------- the database
def backend_on_disk(db_dir: Path) -> str | None:
    for backend, filename in BACKEND_FILES:
        if (db_dir / filename).is_file():
            return backend
    return None


def relocate(root: Path, dbpath: str) -> Path:
    """Move the database from INSTALL_DBPATH to dbpath as the image resolves it (through a /var/lib/rpm link its
    rpm package ships, say); where dbpath is elsewhere and the image has nothing at /var/lib/rpm, leave a relative
    link there (as Fedora and EL10 ship it).  Returns the host path of the database directory."""
    source = host_path(root, PurePosixPath(INSTALL_DBPATH))
    if source.is_symlink() or not source.is_dir():
        raise InstallError(f"{INSTALL_DBPATH} in the image is not the directory the install wrote; "
                           "cannot move the rpm database")
    target_image = resolve_in_root(root, dbpath)
    target = host_path(root, target_image)
    if target.exists() and not target.is_dir():
        raise InstallError(f"{dbpath} in the image is not a directory; cannot move the rpm database there")
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    for entry in sorted(os.listdir(source)):
        os.replace(source / entry, target / entry)
    source.rmdir()
    leave_compat_link(root, target_image)
    return target


def leave_compat_link(root: Path, target_image: PurePosixPath) -> None:
    """/var/lib/rpm -> the database, where the image has nothing there (its parents resolved inside the image)."""
    compat = PurePosixPath(COMPAT_DBPATH)
    parent_image = resolve_in_root(root, str(compat.parent))
    link = host_path(root, parent_image) / compat.name
    if os.path.lexists(link) or target_image == parent_image / compat.name:
        return
    link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.symlink(os.path.relpath(str(target_image), str(parent_image)), link)


def remove_side_files(db_dir: Path) -> list[str]:
    """rpm's lock files and sqlite's side files; returns their names."""
    removed = []
    for pattern in SIDE_FILE_PATTERNS:
        for path in sorted(db_dir.glob(pattern)):
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path.name)
    return removed


def tidy(db_dir: Path) -> list[str]:
    checkpoint_sqlite(db_dir)
    return remove_side_files(db_dir)


def backup(db_dir: Path, to: Path) -> None:
    shutil.copytree(db_dir, to, symlinks=True)


def restore(db_dir: Path, saved: Path) -> None:
    """Put the saved database back in place of whatever a failed conversion left."""
    for entry in os.listdir(db_dir):
        remove_tree(db_dir / entry, measure=False)
    for entry in os.listdir(saved):
        shutil.move(saved / entry, db_dir / entry)  # the work dir and a tmpfs rootfs are two file systems
    saved.rmdir()


# ------------------------------------------------------------------------------------------- the stage
QUERY_FORMAT = "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"


def finalize(ctx: BuildContext) -> None:
    """Put the database where the image's rpm looks, in a backend it reads; list the packages from there."""
    root, outcome = ctx.rootfs, ctx.result.rpmdb
    target = read_target(root)
    db_dir = relocate(root, target.dbpath)
    written = backend_on_disk(db_dir)
    if written is None:
        raise InstallError(f"no rpm database in {target.dbpath} after the install", log_path=ctx.log.path)
    checkpoint_sqlite(db_dir)
    outcome.path, outcome.host_backend, outcome.image_backend = target.dbpath, written, target.backend
    outcome.image_has_rpm = target.has_rpm
    if target.backend is not None and written != target.backend:
        outcome.converted = convert(ctx, db_dir, target)
    outcome.backend = backend_on_disk(db_dir)
    packages = host_rpm_packages(ctx, target.dbpath)
    outcome.readable_by_image_rpm = image_rpm_reads(ctx, target, outcome.backend, packages)
    outcome.side_files_removed = tidy(db_dir)
    ctx.result.packages = packages
    ctx.ui.info(f"rpm database at {target.dbpath} ({outcome.backend}), {len(packages)} packages; "
                + readable_phrase(outcome.readable_by_image_rpm))
    if outcome.readable_by_image_rpm is False:
        refuse_or_warn(ctx, target, written)


def readable_phrase(readable: bool | None) -> str:
    return {None: "the image has no rpm", True: "the image's own rpm reads it",
            False: "the image's own rpm CANNOT read it"}[readable]


def convert(ctx: BuildContext, db_dir: Path, target: TargetRpm) -> bool:
    """Rebuild the database with the image's own rpm, which writes the backend it reads; on any doubt,
    put the original back (an rpm that does not know its configured backend rebuilds into a dummy one)."""
    if not target.has_rpm:
        return False
    saved = ctx.workdir_path("rpmdb-saved")
    backup(db_dir, saved)
    result = run_in_image(ctx, ["rpm", "--rebuilddb"])
    if result.ok and backend_on_disk(db_dir) == target.backend:
        remove_tree(saved, measure=False)
        ctx.ui.info(f"converted the rpm database to {target.backend} with the image's own rpm")
        return True
    ctx.ui.detail(f"the image's rpm could not convert the database: {' '.join(result.tail[-3:])}")
    restore(db_dir, saved)
    return False


def host_rpm_packages(ctx: BuildContext, dbpath: str) -> list[str]:
    """This host's rpm reads every backend it can write, and Berkeley DB read-only."""
    argv = ["rpm", "--root", str(ctx.rootfs), "--dbpath", dbpath, "-qa", "--qf", QUERY_FORMAT]
    result = run_captured(argv, log=ctx.log, env=ctx.tool_env)
    if not result.ok:
        raise InstallError("cannot list the installed packages with rpm", details=result.tail[-5:],
                           log_path=ctx.log.path)
    return sorted(result.stdout.split())


def image_rpm_reads(ctx: BuildContext, target: TargetRpm, backend: str | None, packages: list[str]) -> bool | None:
    """Whether the image's own rpm sees exactly these packages, in the backend it is configured for.
    (rpm >= 4.16 falls back to whatever backend it finds; the rpm of EL7/EL8 does not, so the configured
    backend must match too.)"""
    if not target.has_rpm:
        return None
    if backend != target.backend:
        return False
    result = run_in_image(ctx, ["rpm", "-qa", "--qf", QUERY_FORMAT])
    return result.ok and sorted(result.stdout.split()) == packages


def refuse_or_warn(ctx: BuildContext, target: TargetRpm, written: str) -> None:
    problem = (f"the image's rpm reads {target.backend} databases, but this host's rpm ({host_rpm_version()}) "
               f"wrote {written} and the image's own rpm could not convert it")
    if ctx.spec.allow_rpmdb_mismatch:
        ctx.ui.warn(f"{problem}; accepted by --allow-rpmdb-mismatch: rpm -qa in the image and scanners that "
                    "read its database will see no packages")
        ctx.result.warnings.append(problem)
        return
    raise InstallError(f"{problem}: build this image on a host whose rpm writes {target.backend} (a host of the "
                       "image's own distribution), or pass --allow-rpmdb-mismatch to accept an image whose "
                       "rpm -qa shows no packages", log_path=ctx.log.path)


def host_rpm_version() -> str:
    result = run_captured(["rpm", "--version"], timeout=30)
    version = result.stdout.strip().removeprefix("RPM version ") if result.ok else ""
    return f"rpm {version}".strip()


def run_in_image(ctx: BuildContext, argv: list[str]) -> CommandResult:
    """The image's own program with the rootfs as its root, in the sandbox, without network."""
    with image_mounts(ctx):
        return run_captured(chroot_command(ctx, argv), log=ctx.log, env=ctx.contained_env(chroot_env()), timeout=600)
