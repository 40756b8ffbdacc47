import os
from pathlib import Path

import pytest

from mkimage import pkgmgr
from mkimage.pkgmgr import InstallRequest, PackageManager, Yum

REQUEST = InstallRequest(config=Path("/etc/yum.conf"), root=Path("/tmp/r"), releasever="/",
                         groups=("Core", "Extras"), packages=("vim", "tmux"), exclude=("nano",))
COMMON = ["-c", "/etc/yum.conf", "--installroot=/tmp/r", "--releasever=/", "--setopt=tsflags=nodocs",
          "--setopt=group_package_types=mandatory"]


@pytest.mark.parametrize("manager, extra", [
    (PackageManager("/usr/bin/dnf"), ["--setopt=install_weak_deps=False"]),
    (Yum("/usr/bin/yum"), ["--setopt=skip_missing_names_on_install=False"]),
])
def test_install_is_one_transaction(manager: PackageManager, extra: list) -> None:
    assert manager.install_argv(REQUEST) == [
        manager.binary, *COMMON, *extra, "-y", "--exclude=nano", "install", "@Core", "@Extras", "vim", "tmux",
    ]


@pytest.mark.parametrize("manager", [PackageManager("/usr/bin/dnf"), Yum("/usr/bin/yum")])
def test_clean_all(manager: PackageManager) -> None:
    argv = manager.clean_argv(REQUEST)
    assert argv[:7] == [manager.binary, *COMMON] and argv[-2:] == ["clean", "all"]


def test_keep_cache_only_with_a_cache_dir() -> None:
    request = InstallRequest(Path("/c"), Path("/r"), "/", ("Core",), (), keep_cache=True)
    assert "--setopt=keepcache=True" in PackageManager("dnf").install_argv(request)
    assert "--setopt=keepcache=True" not in PackageManager("dnf").install_argv(REQUEST)


def test_releasever_passes_through() -> None:
    request = InstallRequest(Path("/c"), Path("/r"), "9", ("Core",), ())
    assert "--releasever=9" in PackageManager("dnf").install_argv(request)


def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: dict) -> None:
    """A PATH holding only the given names (argv-level test: the binaries are never run)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in links.items():
        real = bindir / target
        if not real.exists():
            real.write_text("#!/bin/sh\nexit 0\n")
            real.chmod(0o755)
        if name != target:
            (bindir / name).symlink_to(target)
    monkeypatch.setenv("PATH", str(bindir))


@pytest.mark.parametrize("links, choice, expected", [
    ({"dnf": "dnf-3"}, "auto", ("dnf", "dnf")),
    ({"yum": "yum"}, "auto", ("yum", "yum")),                      # EL7: yum 3
    ({"yum": "dnf-3", "dnf": "dnf-3"}, "yum", ("dnf", "yum")),     # EL8+: yum is dnf
    ({"yum": "yum", "dnf": "dnf-3"}, "yum", ("yum", "yum")),
])
def test_detect(tmp_path, monkeypatch, links, choice, expected) -> None:
    fake_path(tmp_path, monkeypatch, links)
    manager, problem = pkgmgr.detect(choice)
    assert problem is None and manager is not None
    assert (manager.name, os.path.basename(manager.binary)) == expected


def test_dnf5_only_is_refused_clearly(tmp_path, monkeypatch) -> None:
    fake_path(tmp_path, monkeypatch, {"dnf": "dnf5", "dnf5": "dnf5"})
    manager, problem = pkgmgr.detect("auto")
    assert manager is None and "dnf5" in problem and "not support" in problem


def test_nothing_found(tmp_path, monkeypatch) -> None:
    fake_path(tmp_path, monkeypatch, {})
    assert pkgmgr.detect("yum") == (None, "yum not found on PATH: install it (Debian/Ubuntu: apt-get install dnf)")


def write_config(tmp_path: Path, url: str) -> Path:
    repos = tmp_path / "repos.d"
    repos.mkdir()
    (repos / "base.repo").write_text(f"[base]\nname=Base\nbaseurl={url}\n")
    config = tmp_path / "yum.conf"
    config.write_text(f"[main]\nreposdir={repos}\n")
    return config


def test_empty_releasever_is_detected(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://mirror/centos/$releasever/os/$basearch/")
    problem = pkgmgr.releasever_problem(config, "/", host_has_release=False)
    assert problem is not None and "base uses $releasever" in problem and "--releasever" in problem
    assert pkgmgr.releasever_problem(config, "7", host_has_release=False) is None
    assert pkgmgr.releasever_problem(config, "/", host_has_release=True) is None


def test_no_releasever_no_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file:///srv/repo")
    assert pkgmgr.releasever_problem(config, "/", host_has_release=False) is None


@pytest.mark.parametrize("line, expected", [
    ("warning: %post(demo-failpost-1.0-1.noarch) scriptlet failed, exit status 1",
     ("demo-failpost", "%post of demo-failpost-1.0-1.noarch")),
    ("Error in POSTIN scriptlet in rpm package demo-failpost", ("demo-failpost", "%post of demo-failpost")),
    ("Non-fatal POSTIN scriptlet failure in rpm package foo-1-1.x86_64", ("foo", "%post of foo-1-1.x86_64")),
    ("warning: %preun(a-b-c-2.0-3.el9.x86_64) scriptlet failed, exit status 2",
     ("a-b-c", "%preun of a-b-c-2.0-3.el9.x86_64")),
    ("  Running scriptlet: demo-post-1.0-1.noarch", None),
])
def test_scriptlet_failure(line: str, expected) -> None:
    assert pkgmgr.scriptlet_failure(line) == expected


def test_config_problems(tmp_path: Path) -> None:
    assert "does not exist" in pkgmgr.config_problem(tmp_path / "nope.conf")
    assert "not a regular file" in pkgmgr.config_problem(tmp_path)
    bad = tmp_path / "bad.conf"
    bad.write_text("no section header\n")
    assert "cannot be parsed" in pkgmgr.config_problem(bad)


UNDETECTED = "Unable to detect release version (use '--releasever' to specify release version)"


@pytest.mark.parametrize("output, uses_releasever, hint", [
    ([UNDETECTED, "Error: Failed to download metadata for repo 'base'"], True, "the repo URL needs $releasever"),
    ([UNDETECTED, "Error: Failed to download metadata for repo 'base'"], False, "a repository cannot be reached"),
    ([UNDETECTED, "Module or Group 'x' is not available.", "Error: Nothing to do."], False, "a group is unknown"),
    (["Error: Transaction test error:", "  installing package a needs 6MB more space on the / filesystem",
      "Disk Requirements:", "   At least 6MB more space needed on the / filesystem."], False, "the rootfs is full"),
])
def test_failure_hints(output: list, uses_releasever: bool, hint: str) -> None:
    assert pkgmgr.failure_hints(output, repos_use_releasever=uses_releasever)[0].startswith(hint)


def test_default_config(tmp_path: Path) -> None:
    yum_conf, dnf_conf = tmp_path / "yum.conf", tmp_path / "dnf.conf"
    assert pkgmgr.default_config(yum_conf, dnf_conf) == yum_conf, "the script's default, even when missing"
    dnf_conf.write_text("[main]\n")
    assert pkgmgr.default_config(yum_conf, dnf_conf) == dnf_conf, "only dnf's exists"
    yum_conf.write_text("[main]\n")
    assert pkgmgr.default_config(yum_conf, dnf_conf) == yum_conf


def test_a_config_without_enabled_repos_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "dnf.conf"
    config.write_text(f"[main]\nreposdir={tmp_path}/none\n[off]\nbaseurl=file:///x\nenabled=0\n")
    assert "no enabled repository in" in pkgmgr.no_repo_problem(config)
    assert pkgmgr.no_repo_problem(write_config(tmp_path, "file:///srv/repo")) is None
