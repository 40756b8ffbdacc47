"""Reproducible builds: with SOURCE_DATE_EPOCH (or --reproducible) the same inputs give a byte-identical layer.

What varies between two builds of the same packages, found by building twice and comparing with diffoscope:
rpm's install times (rpm >= 4.18 takes them from SOURCE_DATE_EPOCH, which mkimage passes to dnf and rpm), dnf's
history database and logs, the file times of everything the build created, and the order in which tar meets
directory entries.  GNU tar's default format stores no atime or ctime, so sorting by name and clamping mtimes is
enough there.  The rpm database itself comes out identical once its write-ahead log is checkpointed (the rpmdb
stage does that for every build).
"""

from __future__ import annotations

from .context import BuildContext
from .customize import PKG_LOGS, empty_machine_id, keep_set, remove_paths

# Written with the time or a random value of the build, never read by the image.
VARYING_FILES = (*PKG_LOGS, "/var/lib/dnf/history.sqlite*", "/var/cache/ldconfig/aux-cache",
                 "/var/lib/systemd/random-seed", "/var/lib/random-seed")


def tar_options(epoch: int) -> list[str]:
    """Entries sorted by name, no file newer than the epoch."""
    return ["--sort=name", f"--mtime=@{epoch}", "--clamp-mtime"]


def scrub(ctx: BuildContext) -> None:
    """Remove what records the build's time or randomness (the profile's keep list still wins)."""
    root, outcome = ctx.rootfs, ctx.result.profile
    removed: list[str] = []
    remove_paths(root, VARYING_FILES, keep_set(root, ctx.profile.keep), outcome, removed)
    if empty_machine_id(root):
        removed.append("/etc/machine-id (emptied)")
    ctx.result.reproducible_scrubbed = sorted(removed)
    for path in removed:
        ctx.ui.detail(f"reproducible: removed {path}")
