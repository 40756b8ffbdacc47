"""Builds as a machine that has never seen the project makes them, and with configs the way users write them.

A fresh Debian or Ubuntu has rpm with an empty /var/lib/rpm, no yum or dnf vars, and (Debian's %_dbpath)
~/.rpmdb that does not exist.  These builds run in a private mount namespace (tests/hostview.py) that gives them
exactly that, whatever this machine holds; others put variables where dnf reads them (vars files, DNF_VAR_*),
use a cachedir with variables, or a repository dnf reads as disabled.  Each must build, run, and leave the host
as it was.  (A target whose rpm owns /var/lib/rpm as a link: test_rpmdb's demo-rpm-sysimage ships one.)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import CORE_MANDATORY, Builder, Repo, image_layer, run_in_image
from hostview import HOME, fresh_host

# Where this host's rpm, dnf and yum keep state: a build must change none of them.
HOST_STATE = (Path("/var/lib/rpm"), Path("/usr/lib/sysimage/rpm"), HOME / ".rpmdb", Path("/etc/yum"),
              Path("/etc/dnf"), Path("/var/cache/dnf"), Path("/var/cache/yum"), Path("/var/lib/dnf"),
              Path("/var/log/dnf.log"), Path("/.mkimage-rpmdb"))


def snapshot(paths: tuple[Path, ...] = HOST_STATE) -> dict[str, str]:
    """Every file under paths with its size, mode and content digest (mtimes change when sqlite reads)."""
    seen: dict[str, str] = {}
    for top in paths:
        if not os.path.lexists(top):
            continue
        walked = [(str(top), [], [""])] if not top.is_dir() else os.walk(top)
        for directory, _, files in walked:
            for name in files:
                path = Path(directory, name) if name else Path(directory)
                if path.is_symlink() or not path.is_file():
                    seen[str(path)] = "other"
                    continue
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if not name.endswith("-shm") else "shm"
                seen[str(path)] = f"{path.stat().st_mode:o} {digest}"
            seen[directory] = "dir"
    return seen


def report_of(build: Builder) -> dict:
    return json.loads(build.report_paths[-1].read_text())


def assert_core_image(build: Builder, name: str) -> dict:
    report = report_of(build)
    assert report["status"] == "success"
    names = {nevra.rsplit("-", 2)[0] for nevra in report["packages"]}
    assert set(CORE_MANDATORY) <= names
    reference = report["tags"][0]
    assert run_in_image(reference, "/bin/sh", "-c", "echo ok").stdout.strip() == "ok"
    assert build.leftovers() == []
    return report


@pytest.mark.integration
def test_a_fresh_debian_host_builds(build: Builder, tmp_path: Path) -> None:
    """No rpm database anywhere, no vars: --releasever=/ detects nothing, as on a host whose database holds no
    release package — never `rpmdb open failed` (the database dnf looks at is an empty one in the work dir)."""
    (tmp_path / "scratch").mkdir()
    before = snapshot()
    run = build(name="mkimage-test-fresh", wrapper=fresh_host(tmp_path / "scratch"))
    assert run.returncode == 0, run.stderr
    report = assert_core_image(build, "mkimage-test-fresh")
    assert report["releasever"] is None
    assert snapshot() == before, "the build changed this host's rpm, dnf or yum state"


@pytest.mark.integration
def test_a_plain_build_leaves_the_host_as_it_was(build: Builder) -> None:
    before = snapshot()
    run = build(name="mkimage-test-hoststate")
    assert run.returncode == 0, run.stderr
    assert snapshot() == before, "the build changed this host's rpm, dnf or yum state"


def file_repo_config(tmp_path: Path, repo: Repo, baseurl: str, main: str = "", extra: str = "") -> Path:
    conf = tmp_path / "vars.conf"
    conf.write_text(f"[main]\nreposdir={tmp_path}/no-repos.d\ngpgcheck=0\n{main}\n"
                    f"[demo]\nname=demo\nbaseurl={baseurl}\nmetadata_expire=never\n{extra}")
    return conf


@pytest.mark.integration
def test_a_file_url_with_a_var_from_etc_dnf_vars(build: Builder, repo: Repo, tmp_path: Path) -> None:
    """baseurl=file://$myrepo/...: the sandbox binds the path dnf will open, with the variable substituted (the
    reason the script copies the host's yum vars)."""
    (tmp_path / "scratch").mkdir()
    conf = file_repo_config(tmp_path, repo, "file://$mkimagerepo/repo")
    wrapper = fresh_host(tmp_path / "scratch", [f"/etc/dnf/vars/mkimagerepo={repo.root}"])
    run = build(name="mkimage-test-varsfile", config=conf, wrapper=wrapper)
    assert run.returncode == 0, run.stderr
    assert_core_image(build, "mkimage-test-varsfile")
    assert not Path("/etc/dnf/vars/mkimagerepo").exists(), "the var file was the overlay's, not the host's"


@pytest.mark.integration
def test_a_file_url_with_a_var_from_the_environment(build: Builder, repo: Repo, tmp_path: Path) -> None:
    conf = file_repo_config(tmp_path, repo, "file://${mkimagerepo}/repo")
    run = build(name="mkimage-test-varsenv", config=conf, env={"DNF_VAR_mkimagerepo": str(repo.root)})
    assert run.returncode == 0, run.stderr
    assert_core_image(build, "mkimage-test-varsenv")


@pytest.mark.integration
def test_a_repository_dnf_reads_as_disabled_is_not_waited_for(build: Builder, repo: Repo, tmp_path: Path) -> None:
    """enabled=False, as mock renders it: dnf skips the repository, and so does mkimage."""
    conf = file_repo_config(tmp_path, repo, f"file://{repo.root}/repo",
                            extra="\n[unreachable]\nname=off\nbaseurl=http://127.0.0.1:9/none\nenabled=False\n")
    run = build(name="mkimage-test-disabled", config=conf)
    assert run.returncode == 0, run.stderr
    assert set(report_of(build)["inputs_repositories"]) == {"demo"}


@pytest.mark.integration
def test_a_cachedir_with_variables_is_where_mkimage_looks(build: Builder, repo: Repo, tmp_path: Path) -> None:
    """CentOS 7's stock yum.conf: cachedir=/var/cache/yum/$basearch/$releasever.  The metadata is found there
    (inputs digest), --cache-dir is mounted there, and the minimisation empties it."""
    conf = file_repo_config(tmp_path, repo, f"file://{repo.root}/repo",
                            main="cachedir=/var/cache/yum/$basearch/$releasever\nkeepcache=0\n")
    cache_dir = tmp_path / "cache"
    run = build("--releasever", "7", "--cache-dir", str(cache_dir), name="mkimage-test-cachedir", config=conf)
    assert run.returncode == 0, run.stderr
    report = assert_core_image(build, "mkimage-test-cachedir")
    arch = os.uname().machine
    assert report["cachedir"] == f"/var/cache/yum/{arch}/7" and report["releasever"] == "7"
    assert set(report["inputs_repositories"]) == {"demo"}
    assert list(cache_dir.glob("demo-*/repodata/repomd.xml")), "the metadata went to --cache-dir"
    layer = image_layer(report["tags"][0])
    assert layer.under(f"var/cache/yum/{arch}/7") == []


@pytest.mark.integration
def test_a_dnf5_only_option_is_refused_before_any_work(build: Builder, repo: Repo, tmp_path: Path) -> None:
    conf = file_repo_config(tmp_path, repo, f"file://{repo.root}/repo", main="pkg_gpgcheck=1\n")
    run = build(name="mkimage-test-dnf5", config=conf)
    assert run.returncode == 2
    assert [line for line in run.stderr.splitlines() if line.startswith("Error:")] == [run.error_line]
    assert "pkg_gpgcheck" in run.error_line and str(conf) in run.error_line
    assert build.leftovers() == []
    assert subprocess.run(["docker", "image", "inspect", "mkimage-test-dnf5"], capture_output=True).returncode != 0


@pytest.mark.integration
def test_a_fresh_debian_host_builds_for_another_architecture(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                                             tmp_path: Path) -> None:
    """One foreign build on the fresh machine (qemu-user through binfmt F, as scripts/lib.sh sets it up): dnf
    reads the config for that architecture ($basearch in the baseurl and the cachedir), its %post runs under
    qemu in the sandbox, the image runs as that architecture."""
    (tmp_path / "scratch").mkdir()
    conf = file_repo_config(tmp_path, multiarch_repo, f"file://{multiarch_repo.root}/repo-$basearch",
                            main="cachedir=/var/cache/yum/$basearch/$releasever\nkeepcache=0\n")
    before = snapshot()
    run = build("--arch", foreign_arch, "--releasever", "7", "-p", "demo-machine", name="mkimage-test-fresh-foreign",
                config=conf, wrapper=fresh_host(tmp_path / "scratch"))
    assert run.returncode == 0, run.stderr
    report = report_of(build)
    assert report["status"] == "success" and report["arch"] == foreign_arch
    assert report["cachedir"] == f"/var/cache/yum/{foreign_arch}/7"
    platform = f"--platform=linux/{'arm64' if foreign_arch == 'aarch64' else 'amd64'}"
    ran = subprocess.run(["docker", "run", "--rm", "--network", "none", platform, report["tags"][0], "/bin/sh", "-c",
                          "uname -m; cat /var/lib/demo-machine/uname"], capture_output=True, text=True)
    assert ran.stdout.split() == [foreign_arch, foreign_arch], ran.stderr
    assert build.leftovers() == []
    assert snapshot() == before, "the build changed this host's rpm, dnf or yum state"
