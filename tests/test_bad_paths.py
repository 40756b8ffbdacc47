"""Bad paths and names, refused in preflight (exit 2) before any work: device nodes, FIFOs and symlinks where a
file is written, empty package and group names, an auth file that is not text, relative paths resolved against
the caller's directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, Run
from test_cli import assert_one_line_error


def mkimage_in(cwd: Path, *args: str) -> Run:
    proc = subprocess.run([sys.executable, "-m", "mkimage", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def tmpdir(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@pytest.fixture
def repo_config(tmp_path: Path) -> Path:
    """A config that parses; preflight never reaches its repository."""
    config = tmp_path / "yum.conf"
    config.write_text(f"[main]\nreposdir={tmp_path}/none\n[r]\nbaseurl=file:///nonexistent\n")
    return config


@pytest.fixture
def device(tmp_path: Path, as_root: None) -> Path:
    """A null device node of the test's own (a character device 1:3, like /dev/null)."""
    node = tmp_path / "node"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def assert_still_device(node: Path) -> None:
    assert stat.S_ISCHR(os.lstat(node).st_mode), f"{node} was replaced"
    assert [p.name for p in node.parent.iterdir() if p.name.startswith(f".{node.name}")] == [], "no temp left"


@pytest.mark.parametrize("option", ["--output", "--report", "--sbom", "--log-file"])
def test_a_device_node_at_an_output_path_is_refused(repo_config: Path, tmpdir: Path, device: Path,
                                                    option: str) -> None:
    value = f"oci-archive:{device}" if option == "--output" else str(device)
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), option, value, "base")
    assert_one_line_error(run, "is not a regular file")
    assert str(device) in run.stderr
    assert_still_device(device)
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("option", ["--output", "--report", "--sbom", "--log-file"])
def test_a_fifo_or_symlink_at_an_output_path_is_refused(repo_config: Path, tmpdir: Path, fifo: Path,
                                                        tmp_path: Path, option: str) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    for path in (fifo, link):
        value = f"docker-archive:{path}" if option == "--output" else str(path)
        run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), option, value, "base")
        assert_one_line_error(run, "is not a regular file" if path == fifo else "is a symbolic link")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert not (tmp_path / "elsewhere").exists()


def test_a_device_node_as_the_report_of_bad_input_is_left_alone(tmpdir: Path, device: Path) -> None:
    """The report of bad input is written too; never over a device."""
    run = mkimage_in(ROOT, "-y", str(tmpdir / "missing.conf"), "--report", str(device), "Bad")
    assert run.returncode == 2
    assert_still_device(device)


@pytest.mark.parametrize("option", ["-p", "-g", "-x"])
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_package_or_group_names_are_bad_input(repo_config: Path, tmpdir: Path, option: str,
                                                    value: str) -> None:
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), option, value, "base")
    assert_one_line_error(run, f"{option} ''" if not value else f"{option} '  '")
    assert "empty" in run.stderr
    assert list(tmpdir.iterdir()) == []


def test_an_auth_file_that_is_not_utf8_is_not_json(repo_config: Path, tmpdir: Path, tmp_path: Path) -> None:
    authfile = tmp_path / "auth.json"
    authfile.write_bytes(b"\xff\xfe{\x00\"auths\x00\x80")
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), "--push", "--authfile", str(authfile),
                     "registry.example:5000/base/el9")
    assert_one_line_error(run, f"--authfile {authfile} is not JSON")


def test_a_fifo_as_auth_file_is_refused_without_blocking(repo_config: Path, tmpdir: Path, fifo: Path) -> None:
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), "--push", "--authfile", str(fifo),
                     "registry.example:5000/base/el9")
    assert_one_line_error(run, f"--authfile {fifo} is not a regular file")


def test_a_report_in_a_missing_directory_says_it_does_not_exist(repo_config: Path, tmpdir: Path,
                                                                tmp_path: Path) -> None:
    report = tmp_path / "no-such-dir" / "r.json"
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), "--report", str(report), "base")
    assert_one_line_error(run, f"--report's directory {report.parent} does not exist")


def test_a_fifo_as_profile_is_not_a_regular_file(repo_config: Path, tmpdir: Path, fifo: Path) -> None:
    run = mkimage_in(ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir), "--profile", str(fifo), "base")
    assert_one_line_error(run, f"profile file '{fifo}' is not a regular file")


def test_relative_paths_are_named_absolute_in_preflight(repo_config: Path, tmp_path: Path) -> None:
    """Every path option is made absolute against the caller's directory once, at the start."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "yum.conf").write_text(repo_config.read_text())
    run = mkimage_in(work, "-y", "yum.conf", "--tmpdir", "tmp-rel", "--report", "out/r.json", "base")
    assert run.returncode == 2, run.stderr
    assert f"--tmpdir {work / 'tmp-rel'} does not exist" in run.stderr
    assert f"--report's directory {work / 'out'} does not exist" in run.stderr
