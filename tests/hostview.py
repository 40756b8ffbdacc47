"""Runs a command with a view of this host that a fresh machine would have, whatever this machine holds.

    python tests/hostview.py --empty DIR ... --scratch DIR [--writable DIR ...] [--write PATH=TEXT ...]
                             [--chmod PATH=OCTAL ...] -- CMD ...

In a private mount namespace (nothing it mounts is seen by the host or outlives the command): each --empty DIR
that exists gets an empty tmpfs over it (the host's rpm databases, its yum/dnf vars); each --writable DIR gets an
overlay whose writes go to the scratch dir (so a test can put a var file in /etc/dnf/vars without writing the
host's /etc); each --write PATH=TEXT is written after that, and --chmod PATH=OCTAL applied.  Then CMD replaces
this process.  Tests build the argv with fresh_host().
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mkimage import mounts  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--empty", action="append", default=[], type=Path)
    parser.add_argument("--writable", action="append", default=[], type=Path)
    parser.add_argument("--write", action="append", default=[])
    parser.add_argument("--chmod", action="append", default=[])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def overlay(directory: Path, scratch: Path) -> None:
    name = str(directory).strip("/").replace("/", "_")
    upper, work = scratch / f"{name}.upper", scratch / f"{name}.work"
    upper.mkdir()
    work.mkdir()
    mounts.mount("overlay", directory, "overlay", 0, f"lowerdir={directory},upperdir={upper},workdir={work}")


HOME = Path(os.environ.get("HOME", "/root"))
FRESH_EMPTY = ("/var/lib/rpm", "/usr/lib/sysimage/rpm", str(HOME / ".rpmdb"), "/etc/yum/vars", "/etc/dnf/vars")
"""What a fresh Debian has empty or not at all: the rpm databases (Debian's %_dbpath is ~/.rpmdb), yum/dnf vars."""


def fresh_host(scratch: Path, writes: Sequence[str] = (), chmods: Sequence[str] = ()) -> list[str]:
    """argv prefix: this machine as a fresh one sees it, plus the files given as PATH=TEXT (and PATH=OCTAL modes),
    written into an overlay of /etc."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--scratch", str(scratch)]
    for directory in FRESH_EMPTY:
        argv += ["--empty", directory]
    if writes:
        argv += ["--writable", "/etc"]
    argv += [f"--write={item}" for item in writes] + [f"--chmod={item}" for item in chmods]
    return [*argv, "--"]


def main(argv: list[str]) -> None:
    args = parse(argv)
    if not mounts.enter_private_namespace():
        sys.exit("hostview: no private mount namespace here")
    mounts.mount("hostview", args.scratch, "tmpfs", 0, "mode=0700")
    for directory in args.empty:
        if directory.is_dir():
            mounts.mount("hostview-empty", directory, "tmpfs", 0, "mode=0755")
    for directory in args.writable:
        overlay(directory, args.scratch)
    for item in args.write:
        path, _, text = item.partition("=")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    for item in args.chmod:
        path, _, mode = item.partition("=")
        os.chmod(path, int(mode, 8))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
