import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require

from mkimage import installer
from mkimage.installer import InstallRequest, PackageManager, config
from mkimage.installer.dnf import Dnf
from mkimage.installer.output import failure_hints, scriptlet_failure
from mkimage.installer.yum import Yum

REQUEST = InstallRequest(config=Path("/etc/yum.conf"), root=Path("/tmp/r"), releasever="/",
                         groups=("Core", "Extras"), packages=("vim", "tmux"), exclude=("nano",))
COMMON = ["-c", "/etc/yum.conf", "--installroot=/tmp/r", "--releasever=/", "--setopt=tsflags=nodocs",
          "--setopt=group_package_types=mandatory"]


@pytest.mark.parametrize("manager, extra", [
    (Dnf("/usr/bin/dnf"), ["--setopt=install_weak_deps=False"]),
    (Yum("/usr/bin/yum"), ["--setopt=skip_missing_names_on_install=False"]),
])
def test_install_is_one_transaction(manager: PackageManager, extra: list) -> None:
    assert manager.install_argv(REQUEST) == [
        manager.binary, *COMMON, *extra, "-y", "--exclude=nano", "install", "@Core", "@Extras", "vim", "tmux",
    ]


@pytest.mark.parametrize("manager", [Dnf("/usr/bin/dnf"), Yum("/usr/bin/yum")])
def test_clean_all(manager: PackageManager) -> None:
    argv = manager.clean_argv(REQUEST)
    assert argv[:7] == [manager.binary, *COMMON] and argv[-2:] == ["clean", "all"]


def test_keep_cache_only_with_a_cache_dir() -> None:
    request = InstallRequest(Path("/c"), Path("/r"), "/", ("Core",), (), keep_cache=True)
    assert "--setopt=keepcache=True" in Dnf("dnf").install_argv(request)
    assert "--setopt=keepcache=True" not in Dnf("dnf").install_argv(REQUEST)


def test_releasever_passes_through() -> None:
    request = InstallRequest(Path("/c"), Path("/r"), "9", ("Core",), ())
    assert "--releasever=9" in Dnf("dnf").install_argv(request)


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
    manager, problem = installer.detect(choice)
    assert problem is None and manager is not None
    assert (manager.name, os.path.basename(manager.binary)) == expected


def test_dnf5_only_is_refused_clearly(tmp_path, monkeypatch) -> None:
    fake_path(tmp_path, monkeypatch, {"dnf": "dnf5", "dnf5": "dnf5"})
    manager, problem = installer.detect("auto")
    assert manager is None and "dnf5" in problem and "not support" in problem


def test_nothing_found(tmp_path, monkeypatch) -> None:
    fake_path(tmp_path, monkeypatch, {})
    assert installer.detect("yum") == (None, "yum not found on PATH: install it (Debian/Ubuntu: apt-get install dnf)")


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
    assert scriptlet_failure(line) == expected


def test_config_file_problems(tmp_path: Path) -> None:
    assert "does not exist" in installer.config_file_problem(tmp_path / "nope.conf")
    assert "not a regular file" in installer.config_file_problem(tmp_path)


UNDETECTED = "Unable to detect release version (use '--releasever' to specify release version)"


@pytest.mark.parametrize("output, uses_releasever, hint", [
    ([UNDETECTED, "Error: Failed to download metadata for repo 'base'"], True, "the repo URL needs $releasever"),
    ([UNDETECTED, "Error: Failed to download metadata for repo 'base'"], False, "a repository cannot be reached"),
    ([UNDETECTED, "Module or Group 'x' is not available.", "Error: Nothing to do."], False, "a group is unknown"),
    (["Error: Transaction test error:", "  installing package a needs 6MB more space on the / filesystem",
      "Disk Requirements:", "   At least 6MB more space needed on the / filesystem."], False, "the rootfs is full"),
])
def test_failure_hints(output: list, uses_releasever: bool, hint: str) -> None:
    assert failure_hints(output, repos_use_releasever=uses_releasever)[0].startswith(hint)


def test_default_config(tmp_path: Path) -> None:
    yum_conf, dnf_conf = tmp_path / "yum.conf", tmp_path / "dnf.conf"
    assert installer.default_config(yum_conf, dnf_conf) == yum_conf, "the script's default, even when missing"
    dnf_conf.write_text("[main]\n")
    assert installer.default_config(yum_conf, dnf_conf) == dnf_conf, "only dnf's exists"
    yum_conf.write_text("[main]\n")
    assert installer.default_config(yum_conf, dnf_conf) == yum_conf


def test_releasever_none_passes_no_flag() -> None:
    request = InstallRequest(Path("/c"), Path("/r"), None, ("Core",), ())
    assert not [arg for arg in Dnf("dnf").install_argv(request) if arg.startswith("--releasever")]


# ------------------------------------------------------------------ the package manager's own reading
@pytest.mark.parametrize("line, expected", [
    (b"#!/usr/bin/python3\n", ["/usr/bin/python3"]),
    (b"#!/usr/libexec/platform-python -s\n", ["/usr/libexec/platform-python", "-s"]),  # EL8's dnf
    (b"#! /usr/bin/python\n", ["/usr/bin/python"]),  # EL7's yum
    (b"\x7fELF\x02\x01", None),
])
def test_interpreter_is_the_one_the_package_manager_names(tmp_path: Path, line: bytes, expected) -> None:
    binary = tmp_path / "dnf-3"
    binary.write_bytes(line + b"import dnf\n")
    (tmp_path / "dnf").symlink_to("dnf-3")
    assert config.interpreter(str(tmp_path / "dnf")) == expected


def real_dnf() -> Dnf:
    found = shutil.which("dnf")
    require(found is not None, "dnf is not installed")
    return Dnf(found)


def answer_for(conf: Path, releasever: str = "9", host_db: Path | None = None,
               env: dict[str, str] | None = None) -> config.ConfigAnswer:
    """The real dnf's answer, asked as mkimage asks it; host_db: the host's rpm database as the query sees it
    (never this machine's, so the tests don't depend on what it holds)."""
    argv = config.query_argv(real_dnf(), conf, releasever, str(host_db or conf.parent / "no-rpmdb"))
    assert argv is not None
    result = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    answer = config.parse_answer(conf, result.stdout)
    assert isinstance(answer, config.ConfigAnswer), answer
    return answer


def write_conf(tmp_path: Path, main: str, repos: str) -> Path:
    reposdir = tmp_path / "repos.d"
    reposdir.mkdir(exist_ok=True)
    (reposdir / "test.repo").write_text(repos)
    conf = tmp_path / "yum.conf"
    conf.write_text(f"[main]\nreposdir={reposdir}\n{main}")
    return conf


@pytest.mark.parametrize("value, enabled", [
    ("1", True), ("0", False), ("False", False), ("false", False), ("True", True), ("no", False), ("YES", True),
    ("off", False), ("On", True),
])
def test_enabled_is_read_as_dnf_reads_it(tmp_path: Path, value: str, enabled: bool) -> None:
    conf = write_conf(tmp_path, "", f"[r]\nbaseurl=http://127.0.0.1/r\nenabled={value}\n"
                                    "[always]\nbaseurl=http://127.0.0.1/a\n")
    answer = answer_for(conf)
    assert answer.enabled_ids == ({"r", "always"} if enabled else {"always"})


def test_cachedir_comes_with_its_variables_substituted(tmp_path: Path) -> None:
    """CentOS 7's stock yum.conf: cachedir=/var/cache/yum/$basearch/$releasever."""
    conf = write_conf(tmp_path, "cachedir=/var/cache/yum/$basearch/$releasever\n",
                      "[base]\nbaseurl=http://127.0.0.1/centos/$releasever/os/$basearch/\n")
    answer = answer_for(conf, releasever="7")
    assert answer.cachedir == f"/var/cache/yum/{answer.basearch}/7"
    assert answer.cache_in(Path("/r")) == Path(f"/r/var/cache/yum/{answer.basearch}/7")
    assert answer.enabled_repos[0].baseurl == (f"http://127.0.0.1/centos/7/os/{answer.basearch}/",)


def test_variables_in_file_urls_are_substituted_before_binding(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "", "[local]\nbaseurl=file://$myrepo/el$releasever/$basearch/\n"
                                    "gpgkey=file://$myrepo/RPM-GPG-KEY-$releasever\n")
    answer = answer_for(conf, env={"DNF_VAR_myrepo": "/srv/mirror"})
    assert f"/srv/mirror/el9/{answer.basearch}" in answer.host_paths()
    assert "/srv/mirror/RPM-GPG-KEY-9" in answer.host_paths()


def test_paths_the_sandbox_provides_are_never_bound(tmp_path: Path) -> None:
    """mock's templates: reposdir=/dev/null (a bind over the sandbox's /dev/null breaks gpg in the sandbox)."""
    conf = tmp_path / "mock.conf"
    conf.write_text("[main]\nreposdir=/dev/null\n[r]\nbaseurl=file:///srv/r\n")
    answer = answer_for(conf)
    assert answer.reposdir == ("/dev/null",)
    assert answer.host_paths() == [str(conf), "/etc/yum/vars", "/etc/dnf/vars", "/srv/r"]


def test_a_dnf5_only_option_is_named(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "pkg_gpgcheck=1\ndistroverpkg=centos-release\n", "[r]\nbaseurl=http://127.0.0.1/r\n")
    answer = answer_for(conf)
    found = config.problems(answer)
    assert len(found) == 1 and "option pkg_gpgcheck is dnf5's" in found[0] and str(conf) in found[0]
    assert config.ignored_options(answer) == ["distroverpkg"], "yum 3's options dnf 4 ignores are no problem"


def test_no_enabled_repository_is_a_problem(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "", "[off]\nbaseurl=file:///x\nenabled=False\n")
    assert "no enabled repository in" in config.problems(answer_for(conf))[0]


def test_unset_releasever_is_a_problem_only_where_a_url_uses_it(tmp_path: Path) -> None:
    """--releasever=/ on a host with no database at all: like a host whose database has no release package."""
    uses = write_conf(tmp_path, "", "[base]\nmirrorlist=http://127.0.0.1/?release=$releasever&arch=$basearch\n")
    answer = answer_for(uses, releasever="/")
    assert answer.releasever is None
    assert "base uses $releasever" in config.problems(answer)[0]
    assert config.problems(answer_for(uses, releasever="7")) == []
    plain = write_conf(tmp_path, "", "[base]\nbaseurl=file:///srv/repo\n")
    assert config.problems(answer_for(plain, releasever="/")) == []


def test_a_config_dnf_cannot_parse_gets_dnfs_sentence(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("no section header\n")
    argv = config.query_argv(real_dnf(), conf, "9", str(tmp_path))
    assert argv is not None
    answer = config.parse_answer(conf, subprocess.run(argv, capture_output=True, text=True).stdout)
    assert isinstance(answer, str) and answer.startswith(f"the package manager cannot read {conf}")
