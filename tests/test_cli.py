"""Bad input: a one-line actionable error, exit code 2, and nothing left behind — checked before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, mkimage
from hostview import fresh_host


@pytest.fixture
def tmpdir(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


def assert_one_line_error(run, fragment: str, code: int = 2) -> None:
    assert run.returncode == code, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    assert fragment in lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_help_lists_the_script_flags() -> None:
    run = mkimage("-h")
    assert run.returncode == 0
    for flag in ("-y, --yum-config", "-p, --package", "-g, --group", "-t, --tag", "--profile", "--rootfs-in-memory",
                 "--cache-dir", "--keep-rootfs", "--rootfs-only", "--no-smoke-test", "--smoke-cmd", "--report",
                 "--engine", "--extra-tag", "--keep-replaced"):
        assert flag in run.stdout


def test_help_is_grouped_by_topic_and_lists_every_option_once() -> None:
    from mkimage.cli import HELP_SECTIONS, cli
    run = mkimage("--help")
    headings = [line[:-1] for line in run.stdout.splitlines() if line and not line[0].isspace() and
                line.endswith(":")]
    assert headings == [heading for heading, names in HELP_SECTIONS
                        if any(param.name in names for param in cli.params)]
    assert "Other:" not in run.stdout, "every option has a topic"
    for param in cli.params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--"):
                assert run.stdout.count(f"{flag} ") + run.stdout.count(f"{flag},") + \
                    run.stdout.count(f"{flag}\n") >= 1, flag


def test_list_and_show_profiles() -> None:
    listed = mkimage("--list-profiles")
    assert listed.returncode == 0
    assert "minimal (default)" in listed.stdout and "hardened" in listed.stdout
    shown = mkimage("--show-profile", "--profile", "hardened", "-g", "Extras", "-p", "vim", "-x", "nano")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["applied"] == ["minimal", "hardened"]
    assert data["packages"] == {"groups": ["Extras"], "install": ["vim"], "exclude": ["nano"]}
    assert data["hardening"]["strip_setuid"] is True


def test_missing_config(tmpdir: Path) -> None:
    run = mkimage("-y", str(tmpdir / "nope.conf"), "--tmpdir", str(tmpdir), "--rootfs-only", "centos72")
    assert_one_line_error(run, f"config file {tmpdir / 'nope.conf'} does not exist")
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("name, fragment", [
    ("CentOS72", "invalid image name 'CentOS72' (use lowercase)"),
    ("centos 72", "invalid image name 'centos 72'"),
    ("centos;reboot", "invalid image name 'centos;reboot'"),
    ("centos:bad tag", "invalid tag 'bad tag'"),
])
def test_invalid_names(repo_config: Path, tmpdir: Path, name: str, fragment: str) -> None:
    run = mkimage("-y", str(repo_config), "--tmpdir", str(tmpdir), "--rootfs-only", name)
    assert_one_line_error(run, fragment)
    assert list(tmpdir.iterdir()) == []


@pytest.fixture
def repo_config(tmp_path: Path) -> Path:
    """A config that parses; preflight never reaches its repository."""
    config = tmp_path / "yum.conf"
    config.write_text(f"[main]\nreposdir={tmp_path}/none\n[r]\nbaseurl=file:///nonexistent\n")
    return config


def test_every_problem_at_once(tmpdir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = mkimage("-y", str(tmpdir / "missing.conf"), "--tmpdir", str(tmpdir / "nodir"), "--profile", "nope",
                  "-t", "-bad", "--report", str(report), "Bad")
    assert run.returncode == 2
    assert run.stderr.startswith("Error: 5 problems found, nothing was built:")
    for fragment in ("invalid image name 'Bad'", "invalid tag '-bad'", "no built-in profile 'nope'",
                     "missing.conf does not exist", "--tmpdir"):
        assert fragment in run.stderr
    assert list(tmpdir.iterdir()) == []
    data = json.loads(report.read_text())
    assert (data["status"], data["exit_code"], data["error_kind"]) == ("failed", 2, "bad-input")
    assert len(data["problems"]) == 5 and data["image_id"] is None


def test_config_without_repositories(tmp_path: Path, tmpdir: Path) -> None:
    """Debian's own /etc/dnf/dnf.conf is like this: mkimage says so before any work."""
    config = tmp_path / "dnf.conf"
    config.write_text(f"[main]\ngpgcheck=1\nreposdir={tmp_path}/none\n")
    run = mkimage("-y", str(config), "--tmpdir", str(tmpdir), "centos72")
    assert_one_line_error(run, f"no enabled repository in {config} or its reposdir")
    assert list(tmpdir.iterdir()) == []


def test_tag_given_twice(repo_config: Path, tmpdir: Path) -> None:
    run = mkimage("-y", str(repo_config), "--tmpdir", str(tmpdir), "--rootfs-only", "-t", "1", "base:2")
    assert_one_line_error(run, "tag given twice")


def test_missing_name(repo_config: Path) -> None:
    assert_one_line_error(mkimage("-y", str(repo_config)), "missing image NAME")


def test_bad_profile_names_file_and_key(tmp_path: Path, repo_config: Path, tmpdir: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[files]\nremove = ["../../etc/passwd"]\n')
    run = mkimage("-y", str(repo_config), "--tmpdir", str(tmpdir), "--profile", str(profile), "base")
    assert_one_line_error(run, f"{profile}: files.remove[0]: '../../etc/passwd' must be an absolute path")
    assert list(tmpdir.iterdir()) == []


def test_conflicting_rootfs_options(repo_config: Path, tmpdir: Path) -> None:
    run = mkimage("-y", str(repo_config), "--tmpdir", str(tmpdir), "--keep-rootfs", "--rootfs-in-memory",
                  "always", "base")
    assert_one_line_error(run, "--keep-rootfs needs the rootfs on disk")


def test_bad_smoke_cmd(repo_config: Path) -> None:
    assert_one_line_error(mkimage("-y", str(repo_config), "--smoke-cmd", "echo 'unbalanced", "base"),
                          "--smoke-cmd")


def test_unset_releasever_is_caught_before_work(tmp_path: Path, tmpdir: Path) -> None:
    repos = tmp_path / "repos.d"
    repos.mkdir()
    (repos / "base.repo").write_text("[base]\nbaseurl=http://mirror.invalid/$releasever/os/\n")
    config = tmp_path / "yum.conf"
    config.write_text(f"[main]\nreposdir={repos}\n")
    (tmp_path / "scratch").mkdir()  # this host as a fresh one sees it: no rpm database, so no release package
    run = mkimage("-y", str(config), "--tmpdir", str(tmpdir), "--rootfs-only", "base",
                  wrapper=fresh_host(tmp_path / "scratch"))
    assert_one_line_error(run, "repository base uses $releasever")
    assert "--releasever" in run.stderr
    assert list(tmpdir.iterdir()) == []


def test_unreachable_docker_daemon(repo_config: Path, tmpdir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    proc = subprocess.run([sys.executable, "-m", "mkimage", "--engine", "docker", "-y", str(repo_config), "--tmpdir",
                           str(tmpdir), "b"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: cannot talk to the docker daemon")
    assert "--rootfs-only" in proc.stderr
    assert list(tmpdir.iterdir()) == []


NON_ROOT = """
import os, sys, difflib  # stdlib modules imported lazily later may be unreadable to nobody (pyenv under /root)
import mkimage.cli, mkimage.preflight, mkimage.installer, mkimage.profile, mkimage.engine, mkimage.context
os.setgroups([]); os.setgid(65534); os.setuid(65534)
mkimage.cli.main(sys.argv[1:])
"""


def test_non_root_is_refused_clearly(as_root: None, repo_config: Path, tmpdir: Path) -> None:
    os.chmod(tmpdir, 0o777)
    proc = subprocess.run([sys.executable, "-c", NON_ROOT, "-y", str(repo_config), "--tmpdir", str(tmpdir),
                           "--rootfs-only", "centos72"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "mkimage must run as root" in proc.stderr and "sudo" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmpdir.iterdir()) == []
