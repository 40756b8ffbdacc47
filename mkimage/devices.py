"""The /dev nodes of mkimage-yum.sh, made with os.mknod and exact modes whatever the umask."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceNode:
    name: str
    kind: int
    """stat.S_IFCHR or stat.S_IFIFO"""
    major: int
    minor: int
    mode: int


DEVICE_NODES: tuple[DeviceNode, ...] = (
    DeviceNode("console", stat.S_IFCHR, 5, 1, 0o600),
    DeviceNode("initctl", stat.S_IFIFO, 0, 0, 0o600),
    DeviceNode("full", stat.S_IFCHR, 1, 7, 0o666),
    DeviceNode("null", stat.S_IFCHR, 1, 3, 0o666),
    DeviceNode("ptmx", stat.S_IFCHR, 5, 2, 0o666),
    DeviceNode("random", stat.S_IFCHR, 1, 8, 0o666),
    DeviceNode("tty", stat.S_IFCHR, 5, 0, 0o666),
    DeviceNode("tty0", stat.S_IFCHR, 4, 0, 0o666),
    DeviceNode("urandom", stat.S_IFCHR, 1, 9, 0o666),
    DeviceNode("zero", stat.S_IFCHR, 1, 5, 0o666),
)
DEV_DIR_MODE = 0o755


def make_device_nodes(dev_dir: Path) -> None:
    """Create dev_dir (0755) and every node of DEVICE_NODES in it."""
    dev_dir.mkdir(mode=DEV_DIR_MODE, exist_ok=True)
    os.chmod(dev_dir, DEV_DIR_MODE)
    for node in DEVICE_NODES:
        path = dev_dir / node.name
        os.mknod(path, node.kind | node.mode, os.makedev(node.major, node.minor))
        os.chmod(path, node.mode)


def make_runtime_links(dev_dir: Path) -> None:
    """The links a program run in the chroot expects in /dev (only on the temporary /dev of commands)."""
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev_dir / name)
    (dev_dir / "shm").mkdir(mode=0o1777)
    os.chmod(dev_dir / "shm", 0o1777)
