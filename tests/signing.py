"""OpenPGP keys made here with gpg, RPMs signed with rpmsign, and signed copies of the test repository, for the
tests that build with gpgcheck=1 (test_gpgcheck, test_real_configs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SIGNING_TOOLS = ("gpg", "rpmsign", "rpmkeys")


def run_tool(*argv: str, env: dict[str, str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL).stdout


@contextmanager
def gnupg_home(path: Path) -> Iterator[dict[str, str]]:
    """An empty GnuPG home at path; the environment that uses it.  The gpg-agent that gpg starts for it is
    stopped at the end (a test's servers do not outlive it)."""
    path.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(path), "LC_ALL": "C"}
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, stdin=subprocess.DEVNULL)


def make_key(gnupg: dict[str, str], name: str) -> str:
    """An RSA signing key without passphrase; its short id (what rpm and dnf print)."""
    run_tool("gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@mkimage.invalid>",
             "rsa2048", "sign", "never", env=gnupg)
    listing = run_tool("gpg", "--batch", "--with-colons", "--list-keys", name, env=gnupg)
    return next(line.split(":")[4] for line in listing.splitlines() if line.startswith("pub:"))[-8:].lower()


def export_key(gnupg: dict[str, str], name: str, path: Path) -> Path:
    """The key's public half, ASCII-armoured, at path (what a gpgkey= URL names)."""
    path.write_text(run_tool("gpg", "--batch", "--armor", "--export", name, env=gnupg))
    return path


def sign(gnupg: dict[str, str], key: str, rpms: list[Path]) -> None:
    # Debian's rpm names /usr/bin/gpg2 as %__gpg, which Debian does not ship: give it the gpg on PATH.
    run_tool("rpmsign", "--addsign", "--define", f"__gpg {shutil.which('gpg')}", "--define",
             f"_gpg_path {gnupg['GNUPGHOME']}", "--define", f"_gpg_name {key}", *map(str, rpms), env=gnupg)


def copy_packages(repo_root: Path, dest: Path) -> list[Path]:
    """The test repository's RPMs (not its repodata) copied to dest; the copies."""
    shutil.copytree(repo_root / "repo", dest, ignore=shutil.ignore_patterns("repodata"))
    return sorted(dest.glob("*.rpm"))


def index(packages: Path, comps: Path, env: dict[str, str]) -> None:
    """createrepo_c over packages, with the groups of comps."""
    run_tool("createrepo_c", "--quiet", "--no-database", "--groupfile", str(comps), str(packages), env=env)
