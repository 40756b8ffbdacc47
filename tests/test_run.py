"""The subprocess helpers, with real processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from mkimage.errors import MkimageError
from mkimage.run import BuildLog, relevant_lines, run_captured, run_pipe, run_streaming


@pytest.fixture
def log(tmp_path: Path) -> BuildLog:
    return BuildLog(tmp_path / "build.log")


def test_pipe_counts_the_bytes_it_moves(log: BuildLog) -> None:
    result = run_pipe(["head", "-c", "5000000", "/dev/zero"], ["wc", "-c"], log=log)
    assert (result.producer_code, result.consumer_code) == (0, 0)
    assert result.bytes_moved == 5_000_000 and result.consumer_stdout.strip() == "5000000"


def test_a_failing_producer_never_gives_the_consumer_a_clean_end(log: BuildLog) -> None:
    """If tar fails half-way, docker import must not import what it got so far."""
    result = run_pipe(["sh", "-c", "printf partial; exit 3"], ["sh", "-c", "cat >/dev/null; echo imported"],
                      log=log)
    assert result.producer_code == 3
    assert result.consumer_code == -signal.SIGKILL and "imported" not in result.consumer_stdout


def test_streaming_keeps_a_tail_and_logs_everything(log: BuildLog) -> None:
    seen: list[str] = []
    result = run_streaming(["sh", "-c", "seq 1 500; exit 4"], log=log, on_line=seen.append)
    assert result.returncode == 4 and len(seen) == 500
    assert result.tail[-1] == "500" and len(result.tail) == 200
    log.close()
    text = log.path.read_text()
    assert text.startswith("+ sh -c 'seq 1 500; exit 4'\n1\n") and text.endswith("500\n[exit 4]\n")


def test_missing_tool_is_one_sentence(log: BuildLog) -> None:
    with pytest.raises(MkimageError, match="/nonexistent/tool not found: install it or put it on PATH"):
        run_streaming(["/nonexistent/tool"], log=log)
    with pytest.raises(MkimageError, match="not found"):
        run_captured(["/nonexistent/tool"])


def test_timeout_stops_the_command() -> None:
    result = run_captured(["sleep", "30"], timeout=0.5)
    assert result.returncode == -1 and result.tail == ["sleep timed out after 0.5s"]


def test_relevant_lines() -> None:
    lines = ["Last metadata expiration check", "No match for argument: vim", "Error: Unable to find a match: vim",
             "No match for argument: vim"]
    assert relevant_lines(lines, ["no match for argument", "error:"]) == [
        "No match for argument: vim", "Error: Unable to find a match: vim"]
