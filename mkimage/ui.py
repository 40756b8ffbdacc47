"""All that mkimage says to people goes through one Reporter, on stderr.

Plain timestamped lines when stderr is not a terminal (pipelines, logs), rich progress when it is.
stdout is kept for the result alone (the image reference), so ``IMAGE=$(mkimage ...)`` works.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from .result import BuildResult

QUIET, NORMAL, VERBOSE = 0, 1, 2


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


class Reporter:
    """Plain lines: '2026-11-22T06:48:37Z mkimage[install] message'."""

    def __init__(self, verbosity: int = NORMAL, stream: IO[str] | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream if stream is not None else sys.stderr
        self.current_stage = ""

    def _line(self, text: str) -> None:
        self.emit(self.current_stage, text)

    def emit(self, where: str, text: str) -> None:
        """One line, said in a stage (or none): also what each architecture's reporter says through."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        label = f"[{where}]" if where else ""
        print(f"{stamp} mkimage{label} {text}", file=self.stream, flush=True)

    def for_arch(self, arch: str) -> "Reporter":
        """What one architecture of a multi-architecture build says, side by side with the others."""
        return ArchReporter(self, arch)

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[None]:
        previous, self.current_stage = self.current_stage, name
        started = time.monotonic()
        if self.verbosity >= NORMAL:
            self._line(f"{title}")
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            if self.verbosity >= NORMAL:
                self._line(f"done in {elapsed:.1f}s")
            self.current_stage = previous

    def info(self, text: str) -> None:
        if self.verbosity >= NORMAL:
            self._line(text)

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}")

    def detail(self, text: str) -> None:
        if self.verbosity >= VERBOSE:
            self._line(text)

    def tool_output(self, line: str) -> None:
        """A line of a package manager or chroot command (shown with -v)."""
        if self.verbosity >= VERBOSE:
            print(f"  | {line}", file=self.stream, flush=True)

    def progress(self, text: str) -> None:
        """Transient progress (bytes streamed); plain output only shows it with -v."""
        self.detail(text)

    def summary(self, result: "BuildResult") -> None:
        if self.verbosity < NORMAL:
            return
        for key, value in result.summary_items():
            self._line(f"summary {key}: {value}")

    def close(self) -> None:
        pass


class RichReporter(Reporter):
    """A spinner with elapsed time per stage, and a closing table, for a person at a terminal."""

    def __init__(self, verbosity: int = NORMAL, stream: IO[str] | None = None) -> None:
        super().__init__(verbosity, stream)
        from rich.console import Console

        self.console = Console(file=self.stream, highlight=False, markup=False, emoji=False)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def _start_progress(self, title: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=self.console, transient=True)
        progress.start()
        self._task = progress.add_task(title)
        self._progress = progress

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._task = None

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[None]:
        previous, self.current_stage = self.current_stage, name
        started = time.monotonic()
        if self.verbosity >= NORMAL:
            self._start_progress(title)
        ok = False
        try:
            yield
            ok = True
        finally:
            self._stop_progress()
            elapsed = time.monotonic() - started
            if self.verbosity >= NORMAL:
                mark = "✓" if ok else "✗"
                self.console.print(f"{mark} {title}  ({elapsed:.1f}s)")
            self.current_stage = previous

    def _print(self, text: str) -> None:
        self.console.print(text)

    def emit(self, where: str, text: str) -> None:
        self.console.print(f"  [{where}] {text}" if where else f"  {text}")

    def info(self, text: str) -> None:
        if self.verbosity >= NORMAL:
            self._print(f"  {text}")

    def warn(self, text: str) -> None:
        self.console.print(f"warning: {text}", style="yellow")

    def detail(self, text: str) -> None:
        if self.verbosity >= VERBOSE:
            self._print(f"  {text}")

    def tool_output(self, line: str) -> None:
        if self.verbosity >= VERBOSE:
            self.console.print(f"  | {line}", style="dim")

    def progress(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            title = self._progress.tasks[0].description.split("  ·")[0]
            self._progress.update(self._task, description=f"{title}  · {text}")

    def summary(self, result: "BuildResult") -> None:
        if self.verbosity < NORMAL:
            return
        from rich.table import Table

        table = Table(title="mkimage summary", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in result.summary_items():
            table.add_row(key, value)
        self.console.print(table)

    def close(self) -> None:
        self._stop_progress()


class ArchReporter(Reporter):
    """One architecture's stages, said through its build's reporter as plain lines labelled with the
    architecture (`mkimage[aarch64:install] ...`): the architectures build side by side, so there is no one
    current stage for a spinner."""

    _lock = threading.Lock()

    def __init__(self, parent: Reporter, arch: str) -> None:
        super().__init__(parent.verbosity, parent.stream)
        self.parent, self.arch = parent, arch

    def emit(self, where: str, text: str) -> None:
        with self._lock:
            self.parent.emit(f"{self.arch}:{where}" if where else self.arch, text)

    def tool_output(self, line: str) -> None:
        if self.verbosity >= VERBOSE:
            self.emit(self.current_stage, f"| {line}")

    def summary(self, result: "BuildResult") -> None:
        pass


def make_reporter(verbosity: int, stream: IO[str] | None = None) -> Reporter:
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        return RichReporter(verbosity, target)
    return Reporter(verbosity, target)
