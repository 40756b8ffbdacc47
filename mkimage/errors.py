"""The few errors mkimage raises.  Library code raises them; only the CLI turns them into exit codes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Sequence

import click

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_INSTALL = 3
EXIT_PROFILE = 4
EXIT_EXPORT = 5
EXIT_SMOKE = 6
EXIT_PUSH = 7

# What stderr shows of an error: every line capped, so that a tool that printed a megabyte on one line does not
# put it on the terminal (the log keeps it all).
LINE_MAX = 1000
DETAILS_MAX = 40


def capped(line: str, limit: int = LINE_MAX) -> str:
    """line, or its first limit characters and how many more there were."""
    if len(line) <= limit:
        return line
    return f"{line[:limit]}... ({len(line) - limit} more characters)"


class MkimageError(click.ClickException):
    """A failure mkimage can explain: one line, then optional indented details."""

    exit_code = EXIT_INTERNAL
    kind = "error"

    def __init__(self, message: str, *, details: Sequence[str] = (), log_path: Path | None = None) -> None:
        super().__init__(message)
        self.details = list(details)
        self.log_path = log_path

    def format_message(self) -> str:
        lines = [capped(self.message)]
        lines += [f"  {capped(line)}" for line in self.details[:DETAILS_MAX]]
        if len(self.details) > DETAILS_MAX:
            lines.append(f"  ... ({len(self.details) - DETAILS_MAX} more lines)")
        if self.log_path is not None:
            lines.append(f"  full log: {self.log_path}")
        return "\n".join(lines)


class BadInput(MkimageError):
    """Something the user gave is wrong; found before any work started."""

    exit_code = EXIT_BAD_INPUT
    kind = "bad-input"


class Problems(BadInput):
    """Every problem preflight found, reported at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            super().__init__(f"{len(problems)} problems found, nothing was built:",
                             details=[f"- {problem}" for problem in problems])
        self.problems = list(problems)


class InstallError(MkimageError):
    exit_code = EXIT_INSTALL
    kind = "install-failed"


class ProfileError(MkimageError):
    """A profile step (writing files, chroot commands, hardening) failed on the built tree."""

    exit_code = EXIT_PROFILE
    kind = "profile-failed"


class ProfileTimeout(ProfileError):
    """A profile chroot command ran longer than the profile's chroot.timeout."""

    kind = "profile-command-timeout"


class ExportError(MkimageError):
    exit_code = EXIT_EXPORT
    kind = "export-failed"


class ReportError(ExportError):
    """The --report cannot be written."""

    kind = "report-failed"


class SmokeTestError(MkimageError):
    exit_code = EXIT_SMOKE
    kind = "smoke-test-failed"


class SmokeTimeout(SmokeTestError):
    """A smoke command ran longer than the profile's smoke.timeout."""

    kind = "smoke-test-timeout"


class Unchanged(Exception):
    """--skip-unchanged found an image built from the same inputs: nothing to do (exit 0)."""

    def __init__(self, reference: str) -> None:
        super().__init__(reference)
        self.reference = reference


class PushError(MkimageError):
    """Pushing to the registry failed; every tag there is as it was (or the details say which is not).
    ``cause`` says why: "auth" (credentials or permission), "tls", "network" or "registry"."""

    exit_code = EXIT_PUSH
    kind = "push-failed"

    def __init__(self, cause: str, message: str, *, details: Sequence[str] = (),
                 log_path: Path | None = None) -> None:
        super().__init__(message, details=details, log_path=log_path)
        self.cause = cause


class Interrupted(MkimageError):
    """SIGINT or SIGTERM arrived; exit code is 128 + the signal number (130, 143)."""

    kind = "interrupted"

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; the build was cleaned up")
        self.exit_code = 128 + signum
        self.signum = signum
