"""--cache-dir: the package manager's cache in the rootfs is a bind mount of a persistent directory.

Builds that share a cache dir take turns on it: a build holds an exclusive lock on it from the moment it reads
the repositories' metadata until its install is done, so that its inputs digest and its install see the same
metadata, and no two package managers write the same cache at once (dnf's own pid-file locks mean nothing across
the PID namespaces of two sandboxes).  Everything else (profile, export, smoke test) runs side by side.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Callable

from . import mounts
from .context import BuildContext
from .errors import BadInput
from .run import RUNNING

LOCK_NAME = ".mkimage.lock"
LOCK_POLL_SECONDS = 0.2


def attach(ctx: BuildContext) -> None:
    """Lock the cache dir (waiting for another build if it must) and mount it into the rootfs."""
    cache_dir = ctx.spec.cache_dir
    if cache_dir is None or ctx.cache_lock is not None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(cache_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        wait_for_lock(lock, lambda: ctx.ui.info(f"waiting for another build to finish with --cache-dir {cache_dir}"))
    except BaseException:
        os.close(lock)
        raise
    ctx.cache_lock = lock
    cache_in_root = ctx.package_cache
    cache_in_root.mkdir(parents=True, exist_ok=True)
    try:
        mounts.mount(str(cache_dir), cache_in_root, "", mounts.MS_BIND)
    except mounts.MountError as err:
        detach(ctx)
        raise BadInput(f"cannot use --cache-dir {cache_dir}: {err}") from None
    ctx.cache_mount = cache_in_root


def wait_for_lock(lock: int, on_wait: Callable[[], None]) -> None:
    """The exclusive lock, waiting for it as long as the build goes on (a build whose other architecture failed,
    or that was interrupted, stops waiting: run.Cancelled)."""
    waited = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not waited:
                on_wait()
                waited = True
        RUNNING.check(["flock"])
        time.sleep(LOCK_POLL_SECONDS)


def detach(ctx: BuildContext) -> None:
    """Unmount the cache (before anything else touches the tree) and let the next build have it."""
    if ctx.cache_mount is not None:
        mounts.unmount(ctx.cache_mount)
        ctx.cache_mount = None
    if ctx.cache_lock is not None:
        os.close(ctx.cache_lock)
        ctx.cache_lock = None
