"""Why packages failed the GPG check, in one sentence: which package, and whether it is unsigned, signed by a
key nobody imported, or altered after signing.

dnf 4 and yum 3 print the same per-package lines (dnf's sigCheckPkg is yum's), dnf then ends with
`Error: GPG check FAILED`.  Neither says which key signed a package, so the files they name are asked with
`rpmkeys --checksig` against the rootfs's rpm database, the way dnf itself checks them.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .installer.config import ConfigAnswer
from .run import BuildLog, run_captured

NOT_SIGNED, NO_KEY, WRONG_KEY, NOT_TRUSTED, BAD = "not-signed", "no-key", "wrong-key", "not-trusted", "bad"

PER_PACKAGE_RES = (
    (NOT_SIGNED, re.compile(r"Package (?P<file>\S+\.rpm) is not signed")),
    (NO_KEY, re.compile(r"Public key for (?P<file>\S+\.rpm) is not installed")),
    (NOT_TRUSTED, re.compile(r"Public key for (?P<file>\S+\.rpm) is not trusted")),
    (BAD, re.compile(r"Problem opening package (?P<file>\S+\.rpm)")),
)
WRONG_KEYS_RE = re.compile(r'The GPG keys listed for the "(?P<repo>.*)" repository are already installed but they '
                           r"are not correct for this package")
FAILING_RE = re.compile(r"Failing package is: (?P<nevra>\S+)")
CONFIGURED_RE = re.compile(r"GPG Keys are configured as: (?P<urls>.*\S)")
# rpm's own warning (yum 3 lets librpm print it while reading the header; dnf 4 does not).
RPM_NOKEY_RE = re.compile(r"(?P<path>[^\s:]+\.rpm): Header V\d \S+ Signature, key ID (?P<key>[0-9a-fA-F]+): NOKEY")
NO_KEYS_TEXT = "you do not have any GPG public keys installed"
PROBLEM_REPO_RE = re.compile(r"Problem repository: \[?(?P<repo>[^\]\s]+)")
RPMKEYS_KEY_RE = re.compile(r"Signature, key ID (?P<key>[0-9a-fA-F]+): (?P<status>[A-Z]+)")
RPMKEYS_BAD_RE = re.compile(r"^\s*(?P<what>[^:]+): BAD\b")
FINAL_LINE = "GPG check FAILED"

HINTS = {
    NOT_SIGNED: "an unsigned package: sign it (rpmsign --addsign) or take it from a signed repository; set "
                "gpgcheck=0 for its repository only if you trust where it comes from",
    NOT_TRUSTED: "rpm does not trust the key that signed it: import a valid key with gpgkey=",
    BAD: "the package was altered after it was signed, or is damaged: get it again from a trusted source "
         "(with --cache-dir, remove the cached copy) and do not install it as it is",
}
LOCAL_PACKAGE_NOTE = ("; a local .rpm given with -p is checked (localpkg_gpgcheck) only against keys already "
                      "imported, dnf never imports one for it")


@dataclass(frozen=True)
class GpgFailure:
    file: str
    """The package file as the package manager names it: demo-hello-1.0-1.noarch.rpm."""
    reason: str
    repo_keys: tuple[str, ...] = ()
    """The repository's gpgkey URLs, when the package manager listed them."""
    key_id: str = ""
    """The key that signed the package (8 hex digits, as rpm -q gpg-pubkey-KEY names it), when known."""
    bad: tuple[str, ...] = ()
    """What rpmkeys found BAD: 'Payload SHA256 digest', 'Header V4 RSA/SHA512 Signature'..."""

    def describe(self) -> str:
        key = f"0x{self.key_id.upper()}" if self.key_id else "its key"
        if self.reason == NOT_SIGNED:
            return f"{self.file} is not signed"
        if self.reason in (NO_KEY, WRONG_KEY):
            listed = ("the repository's gpgkey does not list it" if self.repo_keys
                      else "no gpgkey= lists a key for it")
            return f"{self.file}: public key {key} is not imported ({listed})"
        if self.reason == NOT_TRUSTED:
            return f"{self.file}: public key {key} is not trusted"
        found = f" ({', '.join(part + ' BAD' for part in self.bad)})" if self.bad else ""
        return f"{self.file}: bad signature or digest{found}"


@dataclass(frozen=True)
class GpgExplanation:
    message: str
    hints: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- parsing
def parse_failures(lines: Iterable[str]) -> list[GpgFailure]:
    """The per-package GPG failures in dnf 4's or yum 3's output, in order, one per file."""
    failures: dict[str, GpgFailure] = {}
    key_ids: dict[str, str] = {}
    last: str | None = None
    wrong_keys_pending = False
    for line in lines:
        rpm_nokey = RPM_NOKEY_RE.search(line)
        if rpm_nokey:
            key_ids[os.path.basename(rpm_nokey.group("path"))] = rpm_nokey.group("key").lower()
        for reason, regex in PER_PACKAGE_RES:
            match = regex.search(line)
            if match:
                last = match.group("file")
                failures.setdefault(last, GpgFailure(last, reason))
        if WRONG_KEYS_RE.search(line):
            wrong_keys_pending = True
        failing = FAILING_RE.search(line)
        if failing and wrong_keys_pending:
            last = failing.group("nevra") + ".rpm"
            failures.setdefault(last, GpgFailure(last, WRONG_KEY))
            wrong_keys_pending = False
        configured = CONFIGURED_RE.search(line)
        if configured and last in failures:
            urls = tuple(url.strip() for url in configured.group("urls").split(",") if url.strip())
            failures[last] = replace(failures[last], repo_keys=urls)
    return [replace(f, key_id=f.key_id or key_ids.get(f.file, "")) for f in failures.values()]


def repo_without_key(lines: Sequence[str]) -> str | None:
    """dnf refuses to start when gpgcheck is on, no key is imported and a repository has no gpgkey=."""
    if not any(NO_KEYS_TEXT in line for line in lines):
        return None
    for line in lines:
        match = PROBLEM_REPO_RE.search(line)
        if match:
            return match.group("repo")
    return "?"


def unreadable_gpgkey(lines: Sequence[str], gpgkeys: Iterable[str]) -> str | None:
    """The line saying a configured gpgkey URL could not be fetched, if one does."""
    urls = [url for url in gpgkeys if url]
    for line in lines:
        if any(url in line for url in urls) and ("error" in line.lower() or "cannot" in line.lower()):
            return line.strip()
    return None


def parse_rpmkeys(output: str) -> tuple[str, tuple[str, ...]]:
    """`rpmkeys --checksig --verbose` output -> (the signing key id or '', the parts that are BAD)."""
    key = RPMKEYS_KEY_RE.search(output)
    bad = tuple(dict.fromkeys(m.group("what").strip() for line in output.splitlines()
                              if (m := RPMKEYS_BAD_RE.match(line))))
    return (key.group("key").lower() if key else ""), bad


def rpmkeys_argv(root: Path, package: Path) -> list[str]:
    """What dnf runs (on stdin) to check a package: every signature and digest, with the rootfs's keys."""
    return ["rpmkeys", "--checksig", "--verbose", "--root", str(root), "--define=_pkgverify_level signature",
            "--define=_pkgverify_flags 0x0", str(package)]


def rpmkeys_checker(root: Path, *, log: BuildLog, env: dict[str, str]) -> Callable[[Path], str]:
    """checksig for explain(): rpmkeys on the host (it exits 1 for every failed check), '' when it is missing."""
    def checksig(package: Path) -> str:
        if shutil.which("rpmkeys", path=env.get("PATH")) is None:
            return ""
        return run_captured(rpmkeys_argv(root, package), log=log, env=env).stdout
    return checksig


# ----------------------------------------------------------------------------------------- explaining
def find_file(name: str, dirs: Iterable[Path]) -> Path | None:
    for directory in dirs:
        for parent, subdirs, files in os.walk(directory):  # never follows symlinks
            if name in files and not (Path(parent) / name).is_symlink():
                return Path(parent) / name
    return None


def inspect(failure: GpgFailure, path: Path | None, checksig: Callable[[Path], str]) -> GpgFailure:
    """Add what rpmkeys says about the file: the key that signed it, what is BAD."""
    if path is None or failure.reason == NOT_SIGNED:
        return failure
    key_id, bad = parse_rpmkeys(checksig(path))
    return replace(failure, key_id=failure.key_id or key_id, bad=bad)


def key_hint(failures: Sequence[GpgFailure]) -> str | None:
    """Import the right key: which ones, and what gpgkey= lists now."""
    unknown = [failure for failure in failures if failure.reason in (NO_KEY, WRONG_KEY)]
    if not unknown:
        return None
    keys = sorted({f"0x{failure.key_id.upper()}" for failure in unknown if failure.key_id})
    configured = sorted({url for failure in unknown for url in failure.repo_keys})
    hint = (f"import the key that signed {'them' if len(unknown) > 1 else 'it'}"
            + (f" ({', '.join(keys)})" if keys else "")
            + ": add its public key's URL to the repository's gpgkey="
            + (f" (now: {', '.join(configured)})" if configured else ""))
    return hint + (LOCAL_PACKAGE_NOTE if any(not failure.repo_keys for failure in unknown) else "")


def describe(failures: Sequence[GpgFailure]) -> GpgExplanation:
    message = "GPG check failed: " + "; ".join(failure.describe() for failure in failures)
    hints = [HINTS[reason] for reason in dict.fromkeys(failure.reason for failure in failures) if reason in HINTS]
    key = key_hint(failures)
    return GpgExplanation(message, hints + ([key] if key else []))


def explain(lines: Sequence[str], *, answer: ConfigAnswer, cache: Path,
            checksig: Callable[[Path], str]) -> GpgExplanation | None:
    """One sentence and the hints for a GPG failure in the package manager's output; None when it is none.
    The failing files are looked for where the package manager put them: its cache in the rootfs, and the
    directories of local (file://) repositories, which it reads in place.
    checksig runs rpmkeys_argv on a file and returns its output."""
    failures = parse_failures(lines)
    if failures:
        dirs = [cache, *answer.local_repo_dirs]
        return describe([inspect(failure, find_file(failure.file, dirs), checksig) for failure in failures])
    repo = repo_without_key(lines)
    if repo:
        return GpgExplanation(f"GPG check failed: repository {repo} has gpgcheck=1 but no gpgkey=, and no key "
                              "is imported", ["add gpgkey=URL of the repository's signing key to it"])
    unreadable = unreadable_gpgkey(lines, answer.gpgkey_urls)
    if unreadable:
        return GpgExplanation(f"GPG check failed: a repository's gpgkey cannot be read: {unreadable}",
                              ["fix gpgkey= (a file:// key must exist and be readable by the package manager)"])
    if any(FINAL_LINE in line for line in lines):
        return GpgExplanation("GPG check failed (the package manager named no package)", [])
    return None
