"""The build, one stage per step of mkimage-yum.sh, in order.  Cleanup runs in `finally` and on signals."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import cache, deliver, export, fullfs, gpgcheck, mounts, multiarch, provenance, reproducible, rpmdb, sbom
from .arch import is_host
from .context import BUILD_ID_LABEL, SMOKE_DEFAULT, SMOKE_EXPECTED, BuildContext
from .customize import apply_profile
from .devices import make_device_nodes
from .errors import (
    BadInput, ExportError, InstallError, Interrupted, MkimageError, ProfileError, SmokeTestError, SmokeTimeout,
)
from .fsutil import MountPointError, host_path, remove_tree, resolve_in_root
from .installer import HOST_VARS_DIRS
from .installer.output import FAILURE_PATTERNS, failure_hints, scriptlet_failure
from .installer.rpm import INSTALL_DBPATH, write_host_macros
from .reference import fallback_tag, version_from_release
from .run import CommandResult, relevant_lines, run_captured, run_streaming
from .ui import human_bytes

RELEASE_FILES = ("/etc/redhat-release", "/etc/system-release")
TMPFS_MIN_BYTES = 2 << 30
TMPFS_MAX_BYTES = 32 << 30
TMPFS_SIZE_ENV = "MKIMAGE_TMPFS_SIZE"
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[BuildContext], None]
    wanted: Callable[[BuildContext], bool] = lambda ctx: True
    once: bool = False
    """Run once for the whole build, over every architecture's image; otherwise once per architecture, in
    that architecture's context (mkimage.multiarch)."""


# ------------------------------------------------------------------------------------------- rootfs
def tmpfs_size(mem_available: int) -> int | None:
    """Half the available memory, capped; None when that is too little to be worth it."""
    size = min(mem_available // 2, TMPFS_MAX_BYTES)
    return size if size >= TMPFS_MIN_BYTES else None


def parse_size(text: str) -> int | None:
    """'512m', '4G', '1048576' -> bytes; None when it is not a size."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    number, unit = text.strip().rstrip("bB"), ""
    if number[-1:].lower() in units:
        number, unit = number[:-1], number[-1].lower()
    return int(number) * units[unit] if number.isdigit() and int(number) > 0 else None


def rootfs_tmpfs_size() -> int | None:
    """MKIMAGE_TMPFS_SIZE when set (checked in preflight), else sized from MemAvailable."""
    override = os.environ.get(TMPFS_SIZE_ENV)
    if override:
        return parse_size(override)
    return tmpfs_size(mounts.mem_available_bytes())


def wants_memory(ctx: BuildContext) -> bool:
    choice = ctx.spec.rootfs_in_memory
    if choice == "never" or (choice == "auto" and (ctx.spec.keep_rootfs or ctx.spec.rootfs_only)):
        return False
    return choice == "always" or rootfs_tmpfs_size() is not None


def create_rootfs(ctx: BuildContext) -> None:
    """A fresh temp dir under $TMPDIR (or --tmpdir), like mktemp -d; the rootfs inside it, 0755."""
    ctx.workdir = Path(tempfile.mkdtemp(prefix="mkimage-", dir=ctx.spec.tmpdir))
    ctx.result.rootfs = str(ctx.rootfs)
    ctx.rootfs.mkdir(mode=0o755)
    os.chmod(ctx.rootfs, 0o755)
    ctx.tool_tmpdir.mkdir(mode=0o700)
    write_host_macros(ctx.tool_home)
    if wants_memory(ctx):
        mount_rootfs_tmpfs(ctx)
    ctx.ui.detail(f"rootfs: {ctx.rootfs}" + (" (tmpfs)" if ctx.result.rootfs_in_memory else ""))


def mount_rootfs_tmpfs(ctx: BuildContext) -> None:
    size = rootfs_tmpfs_size() or TMPFS_MIN_BYTES
    try:
        mounts.mount("mkimage-rootfs", ctx.rootfs, "tmpfs", 0, f"mode=0755,size={size}")
    except mounts.MountError as err:
        if ctx.spec.rootfs_in_memory == "always":
            raise BadInput(f"cannot build the rootfs in memory ({err}): use --rootfs-in-memory never") from None
        ctx.ui.warn(f"building on disk: cannot mount a tmpfs ({err})")
        return
    ctx.result.rootfs_in_memory = True
    ctx.ui.detail(f"rootfs in memory: tmpfs of up to {human_bytes(size)}")


def make_devices(ctx: BuildContext) -> None:
    make_device_nodes(ctx.rootfs / "dev")


def copy_yum_vars(ctx: BuildContext) -> None:
    """Amazon Linux's yum fails without its vars: copy the host's vars dirs (the config's varsdir, as the package
    manager says: /etc/dnf/vars and /etc/yum/vars unless the config names others), modes kept."""
    for source in map(Path, ctx.spec.config_answer.varsdir or HOST_VARS_DIRS):
        if not source.is_absolute() or not source.is_dir():
            continue
        target = ctx.rootfs / source.relative_to("/")
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        ctx.ui.detail(f"copied {source}")


# ------------------------------------------------------------------------------------------ install
def install_packages(ctx: BuildContext) -> None:
    request = ctx.install_request()
    pm = ctx.spec.package_manager
    argv = pm.install_argv(request)
    ctx.ui.info(f"{pm.name} install {' '.join(argv[argv.index('install') + 1:])}")
    failures: dict[str, str] = {}

    def on_line(line: str) -> None:
        ctx.ui.tool_output(line)
        failure = scriptlet_failure(line)
        if failure:
            failures.setdefault(*failure)

    try:  # a GPG failure is explained from the files while the cache is still mounted
        result = run_streaming(ctx.contained(argv), log=ctx.log, on_line=on_line,
                               env=ctx.contained_env(ctx.tool_env))
        if not result.ok:
            raise install_failure(ctx, result)
    finally:
        cache.detach(ctx)
    record_scriptlet_failures(ctx, list(failures.values()))
    ctx.result.packages = installed_packages(ctx)
    ctx.ui.info(f"{len(ctx.result.packages)} packages installed")


def install_failure(ctx: BuildContext, result: CommandResult) -> InstallError:
    """The error for a failed install: a GPG failure named package by package, else dnf's relevant lines."""
    checksig = gpgcheck.rpmkeys_checker(ctx.rootfs, log=ctx.log, env=ctx.tool_env)
    gpg = gpgcheck.explain(result.tail, answer=ctx.spec.config_answer, cache=ctx.package_cache, checksig=checksig)
    if gpg is not None:
        return InstallError(gpg.message, details=[f"hint: {hint}" for hint in gpg.hints], log_path=ctx.log.path)
    lines = relevant_lines(result.tail, FAILURE_PATTERNS)
    hints = fullfs.rootfs_hints(failure_hints(result.tail,
                                              repos_use_releasever=ctx.spec.config_answer.uses_unset_releasever),
                                ctx.result.rootfs_in_memory, ctx.workdir)
    return InstallError(f"{ctx.spec.package_manager.name} install failed with exit code {result.returncode}"
                        + (f": {hints[0]}" if hints else ""), details=lines, log_path=ctx.log.path)


def record_scriptlet_failures(ctx: BuildContext, failures: list[str]) -> None:
    """dnf exits 0 when a %post fails; mkimage does not, unless --allow-scriptlet-failures."""
    ctx.result.scriptlet_failures = failures
    if not failures:
        return
    if not ctx.spec.allow_scriptlet_failures:
        raise InstallError(f"{len(failures)} package scriptlet(s) failed although the package manager "
                           "exited 0; the tree may be broken (use --allow-scriptlet-failures to accept it)",
                           details=failures, log_path=ctx.log.path)
    for failure in failures:
        ctx.ui.warn(f"{failure} failed (accepted by --allow-scriptlet-failures)")


def installed_packages(ctx: BuildContext) -> list[str]:
    """What the install left (the rpmdb stage lists them again from the database's final place)."""
    return rpmdb.host_rpm_packages(ctx, INSTALL_DBPATH)


def clean_packages(ctx: BuildContext) -> None:
    pm = ctx.spec.package_manager
    result = run_streaming(ctx.contained(pm.clean_argv(ctx.install_request())), log=ctx.log,
                           on_line=ctx.ui.tool_output, env=ctx.contained_env(ctx.tool_env))
    if not result.ok:
        ctx.ui.warn(f"{pm.name} clean all failed (exit {result.returncode}); the profile still removes caches")


# ---------------------------------------------------------------------------------------- version
def detect_version(root: Path) -> str | None:
    for release_file in RELEASE_FILES:
        path = host_path(root, resolve_in_root(root, release_file))
        if path.is_file():
            version = version_from_release(path.read_text(encoding="utf-8", errors="replace"))
            if version:
                return version
    return None


def find_version(ctx: BuildContext) -> None:
    if ctx.spec.explicit_tag:
        ctx.result.tag = ctx.spec.explicit_tag
        return
    version = detect_version(ctx.rootfs)
    if version is None:
        version = fallback_tag(ctx.spec.name)
        ctx.ui.warn(f"cannot detect the OS version in {' or '.join(RELEASE_FILES)}; using {version!r} as the tag")
    ctx.result.tag = version
    ctx.ui.info(f"tag: {ctx.result.reference}")


# ----------------------------------------------------------------------------------------- smoke, tag
def smoke_test(ctx: BuildContext) -> None:
    """`ENGINE run --rm IMAGE echo success` (no TTY), then the profile's smoke commands; all must pass, each within
    the profile's smoke.timeout."""
    assert ctx.image_id is not None
    commands = [ctx.spec.smoke_cmd, *ctx.profile.smoke]
    platform = None if is_host(ctx.spec.arch) else ctx.spec.arch.engine_platform
    timeout = ctx.profile.smoke_timeout
    for command in commands:
        argv = ctx.engine.run_argv(ctx.image_id, ctx.smoke_container, command, platform)
        ctx.result.smoke_commands.append(list(command))
        result = run_captured(argv, log=ctx.log, timeout=timeout)
        if result.timed_out:
            raise SmokeTimeout(f"smoke test {' '.join(command)!r} timed out after {timeout:g}s (smoke.timeout in "
                               f"the profile); {ctx.spec.name} was not tagged", details=result.tail[-5:],
                               log_path=ctx.log.path)
        output = result.stdout.strip()
        expected_output = tuple(command) != SMOKE_DEFAULT or output == SMOKE_EXPECTED
        if not result.ok or not expected_output:
            said = [f"stdout: {line}" for line in result.stdout.splitlines()[-5:]] + result.tail[-5:]
            raise SmokeTestError(f"smoke test {' '.join(command)!r} failed (exit code {result.returncode}); "
                                 f"{ctx.spec.name} was not tagged", details=said, log_path=ctx.log.path)
        ctx.ui.info(f"smoke test passed: {' '.join(command)}")
    ctx.result.smoke_tested = True


STAGES: tuple[Stage, ...] = (
    Stage("rootfs", "Creating the rootfs", create_rootfs),
    Stage("devices", "Making /dev nodes", make_devices),
    Stage("yumvars", "Copying the host's yum vars", copy_yum_vars),
    Stage("inputs", "Reading the repositories' metadata", provenance.work_out_inputs),
    Stage("unchanged", "Looking for an image built from the same inputs", provenance.skip_unchanged,
          lambda ctx: ctx.spec.skip_unchanged, once=True),
    Stage("install", "Installing packages", install_packages),
    Stage("clean", "Cleaning package caches", clean_packages),
    Stage("profile", "Applying the profile", apply_profile),
    Stage("rpmdb", "Placing the rpm database for the image's own rpm", rpmdb.finalize),
    Stage("scrub", "Removing what records the build's time", reproducible.scrub, lambda ctx: ctx.epoch is not None),
    Stage("version", "Finding the version", find_version, lambda ctx: not ctx.spec.rootfs_only),
    Stage("export", "Streaming the rootfs into the engine and the outputs", export.export,
          lambda ctx: ctx.spec.exports),
    Stage("smoke", "Smoke-testing the image", smoke_test,
          lambda ctx: ctx.spec.uses_engine and ctx.spec.smoke_test),
    Stage("sbom", "Writing the SBOM", sbom.stage, lambda ctx: bool(ctx.spec.sboms)),
    Stage("agree", "Checking the architectures' images agree", multiarch.agree,
          lambda ctx: ctx.spec.multi_arch and not ctx.spec.rootfs_only, once=True),
    Stage("outputs", "Writing the outputs aside", export.write_outputs,
          lambda ctx: bool(ctx.spec.outputs) or ctx.spec.push, once=True),
    # delivery, in this order (deliver.py): nothing moves before every product is ready; a failure puts it back
    Stage("publish", "Moving the outputs into place", deliver.publish_files, deliver.has_files, once=True),
    Stage("tag", "Tagging", deliver.tag, lambda ctx: ctx.spec.uses_engine, once=True),
    Stage("push", "Pushing to the registry", deliver.push, lambda ctx: ctx.spec.push, once=True),
    Stage("finish", "Removing what this build replaced", deliver.finish, deliver.delivers, once=True),
)


# ------------------------------------------------------------------------------------------ cleanup
def cleanup(ctx: BuildContext) -> None:
    """Leave nothing: no container, no untagged image, no mount, no temp dir (unless --keep-rootfs); put back what
    a build that did not get through delivery moved.  Every step runs, whatever the one before it did."""
    problems: list[str] = []
    for step in cleanup_steps(ctx):
        try:
            step(ctx, problems)
        except Exception as err:  # noqa: BLE001 - a cleanup step that fails must not stop the next
            problems.append(f"cleanup: {getattr(err, 'message', None) or err!r}")
    for problem in problems:
        ctx.ui.warn(problem)


def detach_cache(ctx: BuildContext, problems: list[str]) -> None:
    cache.detach(ctx)


def put_back_undelivered(ctx: BuildContext, problems: list[str]) -> None:
    problems.extend(deliver.abandon(ctx))


def remove_container_if_left(ctx: BuildContext, problems: list[str]) -> None:
    """`run --rm` removes its container, but not when the client was killed in the middle."""
    if ctx.spec.uses_engine and ctx.result.smoke_commands:
        ctx.engine.remove_container(ctx.smoke_container)


def remove_untagged_images(ctx: BuildContext, problems: list[str]) -> None:
    """The image of a failed build is removed, by id and by this build's label (an import that was
    interrupted after the engine had the stream gives no id)."""
    if not ctx.spec.uses_engine or ctx.tagged:
        return
    engine, label = ctx.engine, (BUILD_ID_LABEL, ctx.build_id)
    leftovers = set(engine.images_with_label(label, ctx.log))
    if ctx.image_id and not engine.image_tags(ctx.image_id, ctx.log):  # a reproducible build's image id may be
        leftovers.add(ctx.image_id)                                       # one a tag already points to: keep it
    if not leftovers:
        return
    result = run_captured(engine.rmi_argv(sorted(leftovers)), log=ctx.log, timeout=120)
    if result.ok:
        return
    remaining = set(engine.images_with_label(label, ctx.log))
    if ctx.image_id and engine.image_id(ctx.image_id, ctx.log):
        remaining.add(ctx.image_id)
    if remaining:
        problems.append(f"could not remove this build's untagged image(s) {', '.join(sorted(remaining))}: "
                        f"{' '.join(result.tail[-2:])}")


def remove_or_keep_workdir(ctx: BuildContext, problems: list[str]) -> None:
    if ctx.workdir is None:
        return
    if ctx.spec.keep_rootfs or (ctx.spec.rootfs_only and ctx.completed):
        ctx.result.rootfs_kept = True
    else:
        remove_workdir(ctx, problems)


def remove_workdir(ctx: BuildContext, problems: list[str]) -> None:
    assert ctx.workdir is not None
    try:
        mounts.unmount_all_under(ctx.workdir)
    except mounts.MountError as err:
        problems.append(f"{err}; {ctx.workdir} left in place")
        return
    try:
        remove_tree(ctx.workdir, measure=False)
    except MountPointError as err:
        problems.append(f"not removing {ctx.workdir}: {err}")


# ------------------------------------------------------------------------------------------- signals
class SignalGuard:
    """Turns SIGINT/SIGTERM into Interrupted while building; during cleanup a signal is only noted."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.shielded = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = self.received or signum
        if not self.shielded:
            self.shielded = True
            raise Interrupted(signum)

    def __enter__(self) -> "SignalGuard":
        for signum in INTERRUPT_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


CLEANUP = Stage("cleanup", "Cleaning up", cleanup)
CLEANUP_STEPS: tuple[Callable[[BuildContext, list[str]], None], ...] = (
    detach_cache, put_back_undelivered, remove_container_if_left, remove_untagged_images, remove_or_keep_workdir,
)


def cleanup_steps(ctx: BuildContext) -> tuple[Callable[[BuildContext, list[str]], None], ...]:
    """A multi-architecture build puts back its delivery once, as a whole, before each architecture's own
    cleanup (its cache, container, untagged image, rootfs)."""
    if ctx.arch_contexts:
        return (put_back_undelivered,)
    if ctx.whole is not None:
        return tuple(step for step in CLEANUP_STEPS if step is not put_back_undelivered)
    return CLEANUP_STEPS


def run_stage(ctx: BuildContext, stage: Stage) -> None:
    """Run one stage under its heading; its time is recorded whether it succeeds or not.  A full file system is
    named in the stage's own error; a log that could not be written fails the build once the stage is done."""
    started = time.monotonic()
    try:
        with ctx.ui.stage(stage.name, stage.title):
            try:
                stage.run(ctx)
            except OSError as err:
                if not fullfs.is_full(err):
                    raise
                raise full_disk_error(ctx, stage, err) from None
            except MkimageError as err:
                if ctx.log.error is not None and stage is not CLEANUP:
                    err.details.append(log_error(ctx).message)
                raise
            if ctx.log.error is not None and stage is not CLEANUP:
                raise log_error(ctx)
    finally:
        ctx.result.stages[stage.name] = time.monotonic() - started


# A full file system in one of these stages fails the build as the stage's own failure would; elsewhere exit 5.
FULL_DISK_ERRORS: dict[str, type[MkimageError]] = {
    **{name: InstallError for name in ("rootfs", "devices", "yumvars", "inputs", "install", "clean", "rpmdb",
                                       "scrub", "version")},
    "profile": ProfileError,
}


def full_disk_error(ctx: BuildContext, stage: Stage, err: OSError) -> MkimageError:
    path = err.filename or ctx.workdir or ctx.spec.tmpdir
    error = FULL_DISK_ERRORS.get(stage.name, ExportError)
    return error(f"{stage.title[0].lower()}{stage.title[1:]} failed: {fullfs.reason(err, path)}",
                 details=[log_error(ctx).message] if ctx.log.error else [], log_path=ctx.log.path)


def log_error(ctx: BuildContext) -> ExportError:
    """The log could not be written (the rest of it is lost)."""
    assert ctx.log.error is not None
    return ExportError(f"cannot write the log {ctx.log.path}: {fullfs.reason(ctx.log.error, ctx.log.path)}; "
                       "the log is incomplete")


BUILD_UMASK = 0o022


@contextmanager
def build_umask() -> Iterator[None]:
    """Directories mkimage (or a tool it runs) creates get 0755 whatever the caller's umask."""
    previous = os.umask(BUILD_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def build(ctx: BuildContext) -> None:
    """Run every stage, then clean up whatever happened; errors propagate after cleanup."""
    with SignalGuard() as guard, build_umask():
        if not mounts.enter_private_namespace():
            ctx.ui.detail("no private mount namespace here: mounts are made in the host's, removed at cleanup")
        multiarch.split(ctx)
        try:
            multiarch.run_stages(ctx, STAGES, run_stage)
            for each in ctx.per_arch:
                each.completed = ctx.completed = True
        finally:
            guard.shielded = True
            for each in [ctx, *ctx.arch_contexts]:
                run_stage(each, CLEANUP)
        if guard.received is not None:
            raise Interrupted(guard.received)
