"""rpm as the package manager runs it: where the image's database is written during the install, the private
``HOME`` that pins it there, and the empty database that stands for a host that has none.

The database is written to ``INSTALL_DBPATH``, a place no package owns, so that no target layout can collide
with it (a target whose rpm package ships ``/var/lib/rpm`` as a link to ``/usr/lib/sysimage/rpm`` cannot install
over a real ``/var/lib/rpm`` directory); the rpmdb stage then moves it where the image's own rpm looks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..run import BuildLog, run_captured

INSTALL_DBPATH = "/.mkimage-rpmdb"
DB_FILES = ("rpmdb.sqlite", "Packages.db", "Packages")
HOST_DBPATH_ARGV = ("rpm", "--eval", "%{_dbpath}")
"""Asks this host's rpm where its own database is (with the caller's environment: Debian's rpm says ~/.rpmdb)."""


def host_macros() -> str:
    """The ``.rpmmacros`` of the package manager's private HOME."""
    return f"%_dbpath {INSTALL_DBPATH}\n"


def write_host_macros(home: Path) -> None:
    """rpm < 4.18 reads ``~/.rpmmacros``; rpm >= 4.18 reads it too (and ``~/.config/rpm/macros``)."""
    home.mkdir(mode=0o700, exist_ok=True)
    (home / ".rpmmacros").write_text(host_macros(), encoding="utf-8")


def has_database(db_dir: Path | str) -> bool:
    return any(os.path.isfile(os.path.join(db_dir, name)) for name in DB_FILES)


def checkpoint_sqlite(db_dir: Path) -> None:
    """Fold the write-ahead log into rpmdb.sqlite and switch it to rollback-journal mode, so that no -wal/-shm
    file is needed (or left), and a reader on a read-only file system can open it."""
    database = db_dir / "rpmdb.sqlite"
    if not database.is_file():
        return
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()


def make_empty_database(db_dir: Path, *, log: BuildLog, env: dict[str, str]) -> Path | None:
    """An empty rpm database in db_dir (in the build's work dir), readable on a read-only mount: what the sandbox
    shows `--releasever=/` as this host's when this host has no release package (or no database at all).
    None when this host's rpm cannot make one."""
    result = run_captured(["rpm", "--dbpath", str(db_dir), "--initdb"], log=log, env=env, timeout=60)
    if not result.ok or not has_database(db_dir):
        return None
    checkpoint_sqlite(db_dir)
    return db_dir
