"""What the package manager's output says: failed scriptlets (dnf exits 0 for them), the lines worth showing when
it fails, and a hint for the failures people meet most."""

from __future__ import annotations

import re
from typing import Iterable

SCRIPTLET_FAILURE_RES = (
    re.compile(r"%(?P<scriptlet>\w+)\((?P<package>[^)]+)\) scriptlet failed, exit status (?P<status>\d+)"),
    re.compile(r"Error in (?P<scriptlet>\w+) scriptlet in rpm package (?P<package>\S+)"),
    re.compile(r"Non-fatal (?P<scriptlet>\w+) scriptlet failure in rpm package (?P<package>\S+)"),
)
SCRIPTLET_NAMES = {"postin": "post", "prein": "pre", "postun": "postun", "preun": "preun", "posttrans": "posttrans",
                   "pretrans": "pretrans"}
NEVRA_RE = re.compile(r"^(?P<name>.+)-[^-]+-[^-]+$")

FAILURE_PATTERNS = (
    "no match for argument", "unable to find a match", "does not exist", "is not available", "no such group",
    "no package", "not found", "failed to download metadata", "cannot download", "curl error",
    "cannot retrieve repository metadata", "errors during downloading metadata", "cannot find a valid baseurl",
    "no space left", "disk requirements", "at least", "nothing provides", "conflicts with", "problem",
    "error:", "error ",
)

# (every one of these in the output, the hint); the first match is given.
RELEASEVER_HINT = "the repo URL needs $releasever, which dnf could not detect: pass --releasever"
HINTS = (
    (("no space left",), "the rootfs is full: try --rootfs-in-memory never, or free memory or disk"),
    (("disk requirements",), "the rootfs is full: try --rootfs-in-memory never, or free memory or disk"),
    (("no match for argument",), "a package name is unknown to the configured repos"),
    (("group", "is not available"), "a group is unknown to the configured repos (dnf group list shows them)"),
    (("group", "does not exist"), "a group is unknown to the configured repos (yum grouplist shows them)"),
    (("failed to download metadata",), "a repository cannot be reached"),
    (("cannot retrieve repository metadata",), "a repository cannot be reached"),
)


def scriptlet_failure(line: str) -> tuple[str, str] | None:
    """'warning: %post(demo-1.0-1.noarch) scriptlet failed, exit status 1' ->
    ('demo', '%post of demo-1.0-1.noarch'); the package name is the key (rpm and dnf both report one failure)."""
    for regex in SCRIPTLET_FAILURE_RES:
        match = regex.search(line)
        if match:
            scriptlet = match.group("scriptlet").lower()
            package = match.group("package")
            nevra = NEVRA_RE.match(package)
            name = nevra.group("name") if nevra and "." in package.rsplit("-", 1)[-1] else package
            return name, f"%{SCRIPTLET_NAMES.get(scriptlet, scriptlet)} of {package}"
    return None


def failure_hints(lines: Iterable[str], *, repos_use_releasever: bool = False) -> list[str]:
    """Hints for a failed install.  dnf warns that it cannot detect the release version on every host
    without a release package, so that warning only counts when a repo URL really uses $releasever."""
    text = "\n".join(lines).lower()
    hints = [hint for needles, hint in HINTS if all(needle in text for needle in needles)]
    if repos_use_releasever and "unable to detect release version" in text:
        hints.insert(0, RELEASEVER_HINT)
    return hints


