"""Applying a profile to the installed tree, in this order: run the chroot commands (they may add users),
write files, remove paths, set modes and owners, harden, rebuild the rpm db.

Every path is an in-image path resolved inside the rootfs (see fsutil), so nothing here can touch the host.
"""

from __future__ import annotations

import os
import stat
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from . import mounts, sandbox
from .context import BuildContext
from .devices import make_device_nodes, make_runtime_links
from .errors import ProfileError, ProfileTimeout
from .fsutil import (
    ConfinementError, MountPointError, glob_in_root, host_path, remove_tree, resolve_in_root, walk_tree,
    write_file_in_root,
)
from .profile import FileSet, FileWrite, Hardening
from .result import ProfileOutcome
from .run import relevant_lines, run_captured, run_streaming, tool_env
from .ui import human_bytes

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHARED_SECRETS = (
    "/etc/ssh/ssh_host_*key", "/etc/ssh/ssh_host_*key.pub",
    "/etc/pki/tls/private/localhost.key", "/etc/pki/tls/certs/localhost.crt",
    "/var/lib/systemd/random-seed", "/var/lib/random-seed",
)
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
PKG_LOGS = (
    "/var/log/dnf*.log", "/var/log/dnf.librepo.log*", "/var/log/dnf.rpm.log*", "/var/log/hawkey.log*",
    "/var/log/yum.log*", "/var/lib/dnf/history*", "/var/lib/yum/history",
)
SETID_BITS = stat.S_ISUID | stat.S_ISGID


def apply_profile(ctx: BuildContext) -> None:
    outcome = ctx.result.profile
    profile = ctx.profile
    root = ctx.rootfs
    try:
        run_commands(ctx, outcome)
        write_files(root, profile.write, outcome)
        kept = keep_set(root, profile.keep)
        remove_paths(root, profile.remove, kept, outcome, outcome.removed_paths)
        if profile.remove_package_cache:
            cache = PurePosixPath(ctx.spec.config_answer.cachedir) / "*"
            remove_paths(root, (str(cache),), kept, outcome, outcome.removed_paths)
        set_files(root, profile.set, outcome)
        harden(root, profile.hardening, kept, outcome)
        if profile.rebuild_rpmdb:
            rebuild_rpmdb(ctx, outcome)
    except (ConfinementError, MountPointError, OSError) as err:
        raise ProfileError(f"applying the profile failed: {err}") from None
    report(ctx, outcome)


def report(ctx: BuildContext, outcome: ProfileOutcome) -> None:
    ui = ctx.ui
    if outcome.removed_entries:
        ui.info(f"removed {outcome.removed_entries} entries ({human_bytes(outcome.bytes_freed)}) "
                f"under {len(outcome.removed_paths)} paths")
    for path in outcome.removed_paths:
        ui.detail(f"removed {path}")
    for path in outcome.setuid_stripped:
        ui.info(f"stripped setuid/setgid bits: {path}")
    for path in outcome.world_writable_fixed:
        ui.info(f"removed world write permission: {path}")
    for path in outcome.secrets_removed:
        ui.info(f"removed per-host secret: {path}")


# ------------------------------------------------------------------------------------------ accounts
def _id_from_db(root: Path, db: str, name: str | int | None) -> int:
    """A numeric id, looking names up in the image's own /etc/passwd or /etc/group."""
    if name is None:
        return -1
    if isinstance(name, int):
        return name
    db_path = host_path(root, resolve_in_root(root, f"/etc/{db}"))
    try:
        for line in db_path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == name:
                return int(fields[2])
    except (FileNotFoundError, ValueError):
        pass
    raise ProfileError(f"{name!r} is not in the image's /etc/{db}")


def _chown(root: Path, target: Path, owner: str | int | None, group: str | int | None) -> None:
    uid = _id_from_db(root, "passwd", owner)
    gid = _id_from_db(root, "group", group)
    if uid != -1 or gid != -1:
        os.chown(target, uid, gid, follow_symlinks=False)


# --------------------------------------------------------------------------------------------- steps
def write_files(root: Path, items: tuple[FileWrite, ...], outcome: ProfileOutcome) -> None:
    for item in items:
        real = write_file_in_root(root, item.path, item.content.encode(), item.mode)
        _chown(root, host_path(root, real), item.owner, item.group)
        outcome.files_written.append(item.path)


def set_files(root: Path, items: tuple[FileSet, ...], outcome: ProfileOutcome) -> None:
    for item in items:
        real = resolve_in_root(root, item.path)
        target = host_path(root, real)
        if not target.exists() or target.is_symlink():
            raise ProfileError(f"files.set: {item.path} does not exist in the image")
        if item.mode is not None:
            os.chmod(target, item.mode)
        _chown(root, target, item.owner, item.group)
        outcome.files_set.append(item.path)


def keep_set(root: Path, keep: tuple[str, ...]) -> frozenset[Path]:
    """The host paths the profile's keep patterns match: no removal touches them."""
    return frozenset(host_path(root, path) for pattern in keep for path in glob_in_root(root, pattern))


def remove_paths(root: Path, patterns: tuple[str, ...], kept: frozenset[Path], outcome: ProfileOutcome,
                 removed: list[str]) -> None:
    """Remove what the patterns match, except what is kept; counts go to the outcome, paths to removed."""
    for pattern in patterns:
        for image_path in glob_in_root(root, pattern):
            stats = remove_tree(host_path(root, image_path), keep=kept)
            if stats.entries:
                removed.append(str(image_path))
                outcome.removed_entries += stats.entries
                outcome.bytes_freed += stats.bytes


# ---------------------------------------------------------------------------------- chroot commands
@contextmanager
def chroot_mounts(root: Path) -> Iterator[None]:
    """/proc and a fresh /dev (a tmpfs with the device table, never the host's) for chroot commands;
    always unmounted afterwards, even when a command fails."""
    proc_dir, dev_dir = _real_dir(root, "proc", 0o555), _real_dir(root, "dev", 0o755)
    mounts.mount("proc", proc_dir, "proc", mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC)
    try:
        mounts.mount("mkimage-dev", dev_dir, "tmpfs", mounts.MS_NOSUID, "mode=0755,size=1m")
        try:
            make_device_nodes(dev_dir)
            make_runtime_links(dev_dir)
            yield
        finally:
            mounts.unmount(dev_dir)
    finally:
        mounts.unmount(proc_dir)


def _real_dir(root: Path, name: str, mode: int) -> Path:
    """root/name as a real directory; a link there (to the host's /proc, say) is refused."""
    path = root / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ProfileError(f"/{name} in the image is not a directory; refusing to mount over it")
    if not path.exists():
        path.mkdir(mode=mode)
    return path


def chroot_env() -> dict[str, str]:
    """The environment of a program run inside the image."""
    return tool_env({"PATH": CHROOT_PATH, "HOME": "/root", "TERM": "dumb", "TMPDIR": "/tmp"})


def run_commands(ctx: BuildContext, outcome: ProfileOutcome) -> None:
    commands = ctx.profile.commands
    if not commands:
        return
    env = ctx.contained_env(chroot_env())
    try:
        with image_mounts(ctx):
            for argv in commands:
                ctx.ui.info(f"running in the rootfs: {' '.join(argv)}")
                result = run_streaming(chroot_command(ctx, argv, network=ctx.profile.chroot_network), log=ctx.log,
                                       on_line=ctx.ui.tool_output, env=env, timeout=ctx.profile.chroot_timeout)
                outcome.commands_run.append(list(argv))
                if result.timed_out:
                    raise ProfileTimeout(f"chroot command {' '.join(argv)!r} timed out after "
                                         f"{ctx.profile.chroot_timeout:g}s and was stopped (chroot.timeout in the "
                                         "profile)", details=result.tail[-8:], log_path=ctx.log.path)
                if not result.ok:
                    raise ProfileError(f"chroot command {' '.join(argv)!r} failed with exit code "
                                       f"{result.returncode}", details=result.tail[-8:], log_path=ctx.log.path)
    except mounts.MountError as err:
        raise ProfileError(f"cannot prepare the chroot for profile commands: {err}") from None


def chroot_command(ctx: BuildContext, argv: Sequence[str], *, network: bool = False) -> list[str]:
    """argv run with the rootfs as its root: under bwrap (its own /proc and /dev, no network unless asked),
    or with --no-sandbox a plain chroot (inside image_mounts)."""
    if ctx.spec.sandbox:
        return sandbox.chroot_argv(tuple(argv), root=ctx.rootfs, network=network)
    return ["chroot", str(ctx.rootfs), *argv]


def image_mounts(ctx: BuildContext) -> AbstractContextManager[None]:
    """What a program run inside the image needs around it: bwrap brings its own /proc and /dev (it needs
    real directories to mount them on); a plain chroot gets /proc and a private /dev mounted here."""
    return _sandbox_mount_points(ctx.rootfs) if ctx.spec.sandbox else chroot_mounts(ctx.rootfs)


@contextmanager
def _sandbox_mount_points(root: Path) -> Iterator[None]:
    """bwrap mounts its own /proc and /dev over these: real directories, never links out of the image."""
    _real_dir(root, "proc", 0o555)
    _real_dir(root, "dev", 0o755)
    yield


# --------------------------------------------------------------------------------------------- harden
def harden(root: Path, hardening: Hardening, kept: frozenset[Path], outcome: ProfileOutcome) -> None:
    if hardening.remove_shared_secrets:
        remove_paths(root, SHARED_SECRETS, kept, outcome, outcome.secrets_removed)
    if hardening.remove_pkg_logs:
        remove_paths(root, PKG_LOGS, kept, outcome, outcome.pkg_logs_removed)
    if hardening.empty_machine_id:
        outcome.machine_id_emptied = empty_machine_id(root)
    if hardening.lock_root:
        outcome.root_locked = lock_root(root)
    if hardening.strip_setuid or hardening.world_writable != "ignore":
        scan_permissions(root, hardening, outcome)


def scan_permissions(root: Path, hardening: Hardening, outcome: ProfileOutcome) -> None:
    """One walk of the tree for both setuid/setgid bits and world-writable entries."""
    allowed = {resolve_in_root(root, path) for path in hardening.setuid_allow}
    offenders: list[str] = []
    for path, st in walk_tree(root):
        mode = st.st_mode
        image_path = PurePosixPath("/", path.relative_to(root))
        if hardening.strip_setuid and stat.S_ISREG(mode) and mode & SETID_BITS and image_path not in allowed:
            mode &= ~SETID_BITS
            os.chmod(path, stat.S_IMODE(mode))
            outcome.setuid_stripped.append(str(image_path))
        if hardening.world_writable != "ignore" and _world_writable(mode):
            if hardening.world_writable == "fail":
                offenders.append(str(image_path))
            else:
                os.chmod(path, stat.S_IMODE(mode) & ~stat.S_IWOTH)
                outcome.world_writable_fixed.append(str(image_path))
    outcome.setuid_stripped.sort()
    outcome.world_writable_fixed.sort()
    if offenders:
        raise ProfileError(f"{len(offenders)} world-writable entries without the sticky bit "
                           "(hardening.world_writable = \"fail\")", details=sorted(offenders)[:20])


def _world_writable(mode: int) -> bool:
    if not mode & stat.S_IWOTH:
        return False
    if stat.S_ISDIR(mode):
        return not mode & stat.S_ISVTX
    return stat.S_ISREG(mode)


def empty_machine_id(root: Path) -> bool:
    """Empty /etc/machine-id (systemd makes a fresh one per container); a link is left alone."""
    emptied = False
    for image_path in MACHINE_ID_FILES:
        target = host_path(root, resolve_in_root(root, image_path, follow_last=False))
        if target.is_file() and not target.is_symlink():
            mode = stat.S_IMODE(target.stat().st_mode)
            write_file_in_root(root, image_path, b"", mode)
            emptied = True
    return emptied


def lock_root(root: Path) -> bool:
    """Prefix root's password hash in /etc/shadow with '!' (an empty one becomes '!')."""
    shadow_image_path = "/etc/shadow"
    shadow = host_path(root, resolve_in_root(root, shadow_image_path))
    if not shadow.is_file():
        raise ProfileError("hardening.lock_root: the image has no /etc/shadow")
    lines = shadow.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = False
    for index, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields[0] == "root" and len(fields) > 1:
            if not (fields[1].startswith("!") or fields[1].startswith("*")):
                fields[1] = "!" + fields[1]
                lines[index] = ":".join(fields) + ("\n" if line.endswith("\n") else "")
            changed = True
    if not changed:
        raise ProfileError("hardening.lock_root: root is not in the image's /etc/shadow")
    write_file_in_root(root, shadow_image_path, "".join(lines).encode(), stat.S_IMODE(shadow.stat().st_mode))
    return True


# ------------------------------------------------------------------------------------------- rpm db
def rpmdb_dir(ctx: BuildContext) -> Path | None:
    """Where this host's rpm keeps the database inside the rootfs (ask rpm: Debian's is ~/.rpmdb)."""
    result = run_captured(["rpm", "--root", str(ctx.rootfs), "--eval", "%{_dbpath}"], log=ctx.log, env=ctx.tool_env)
    db_path = result.stdout.strip()
    if not result.ok or not db_path.startswith("/"):
        return None
    return host_path(ctx.rootfs, resolve_in_root(ctx.rootfs, db_path))


def _dir_bytes(directory: Path | None) -> int:
    if directory is None or not directory.is_dir():
        return 0
    return sum(st.st_size for _, st in walk_tree(directory) if stat.S_ISREG(st.st_mode))


def rebuild_rpmdb(ctx: BuildContext, outcome: ProfileOutcome) -> None:
    db_dir = rpmdb_dir(ctx)
    outcome.rpmdb_bytes_before = _dir_bytes(db_dir)
    result = run_streaming(ctx.contained(["rpm", "--root", str(ctx.rootfs), "--rebuilddb"]), log=ctx.log,
                           on_line=ctx.ui.tool_output, env=ctx.contained_env(ctx.tool_env))
    if not result.ok:
        raise ProfileError("rpm --rebuilddb failed", details=relevant_lines(result.tail, ["error"]),
                           log_path=ctx.log.path)
    outcome.rpmdb_bytes_after = _dir_bytes(db_dir)
