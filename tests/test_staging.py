"""Files written aside and moved into place together: publish, roll back byte for byte, commit, discard; the
reserved report file; and the log that never raises."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mkimage.run import BuildLog, run_streaming
from mkimage.staging import NotReplaceable, ReservedFile, Staging, StagingError, temp_name


def staged(staging: Staging, directory: Path, name: str, content: bytes) -> Path:
    temp = temp_name(directory / name)
    temp.write_bytes(content)
    staging.add(temp, directory / name, f"output {name}")
    return temp


def test_publish_then_roll_back_puts_earlier_files_back_byte_for_byte(tmp_path: Path) -> None:
    old = tmp_path / "a.tar"
    old.write_bytes(b"earlier")
    os.utime(old, ns=(1, 2))
    before = os.stat(old)
    staging = Staging()
    staged(staging, tmp_path, "a.tar", b"new")
    staged(staging, tmp_path, "b.json", b"new too")
    staging.publish()
    assert old.read_bytes() == b"new" and (tmp_path / "b.json").read_bytes() == b"new too"
    assert staging.roll_back() == []
    staging.discard()
    assert old.read_bytes() == b"earlier" and os.stat(old).st_mtime_ns == before.st_mtime_ns
    assert os.stat(old).st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]


def test_commit_drops_the_kept_copies(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"earlier")
    staging = Staging()
    staged(staging, tmp_path, "a.tar", b"new")
    staging.publish()
    assert staging.commit() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]
    assert (tmp_path / "a.tar").read_bytes() == b"new"


def test_a_failing_move_puts_back_the_ones_made(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"earlier")
    os.mkfifo(tmp_path / "b.fifo")
    staging = Staging()
    staged(staging, tmp_path, "a.tar", b"new")
    staged(staging, tmp_path, "b.fifo", b"never")
    with pytest.raises(StagingError) as caught:
        staging.publish()
    assert isinstance(caught.value.error, NotReplaceable) and caught.value.move.target == tmp_path / "b.fifo"
    staging.discard()
    assert (tmp_path / "a.tar").read_bytes() == b"earlier"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "b.fifo").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "b.fifo"]


def test_a_new_directory_moves_in_and_out_with_the_dirs_it_made(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    staging = Staging()
    blob = tmp_path / ".blob.tmp"
    blob.write_bytes(b"blob")
    staging.add(blob, layout / "blobs" / "sha256" / "abc", "output oci:layout")
    staging.publish()
    assert (layout / "blobs" / "sha256" / "abc").read_bytes() == b"blob"
    staging.roll_back()
    staging.discard()
    assert list(layout.iterdir()) == [] and not blob.exists()


def test_reserved_file_takes_its_space_first_and_writes_in_place(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text("earlier")
    reserved = ReservedFile(report)
    reserved.reserve(b'{"draft": true}')
    assert report.read_text() == "earlier", "the reservation changes nothing in place"
    assert reserved.temp is not None and reserved.temp.stat().st_size > 64 << 10
    reserved.write(b'{"final": true}\n')
    assert report.read_bytes() == b'{"final": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_reserved_file_never_replaces_a_device_or_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotReplaceable):
        ReservedFile(fifo).write(b"{}")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_a_log_that_cannot_be_written_never_raises(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "missing-dir" / "build.log")
    assert log.error is not None
    log.write("x")
    log.command(["true"])
    assert run_streaming(["sh", "-c", "echo out; echo err >&2"], log=log).tail == ["out", "err"]
    log.close()


def test_run_streaming_stops_a_command_at_its_timeout(tmp_path: Path) -> None:
    log = BuildLog(tmp_path / "build.log")
    result = run_streaming(["sh", "-c", "echo started; exec sleep 60"], log=log, timeout=0.5)
    log.close()
    assert result.timed_out and not result.ok
    assert result.tail == ["started"]
    assert "timed out" in (tmp_path / "build.log").read_text()
