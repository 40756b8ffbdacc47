"""Configs as the distributions ship them (issue 13): mkimage builds from the yum/dnf configs users are given.

tests/configs/ holds real configs, each opening with a comment that names its source: CentOS 7's stock
/etc/yum.conf and CentOS-Base.repo, and the dnf.conf that mock's public templates carry for EL 7 to 10 (CentOS,
CentOS Stream), Rocky, Alma, Fedora and Amazon Linux 2 and 2023. Only their repository URLs differ from what is
shipped: each points at 127.0.0.1, where this test serves the demo repository (signed with a key made here, which
every gpgkey= then names) at the first enabled repository's path, variables substituted, and a valid empty
repository at every other enabled one. The stock CentOS config has no reposdir=, so dnf reads /etc/yum.repos.d: it
is built as `mkimage -y /etc/yum.conf` in a private mount namespace whose /etc is an overlay of the host's holding
the two files; the host's /etc is never written.

Proven for each config, with --releasever as a user on a non-EL host must pass it:
- the build succeeds (exit 0), its stdout is the image's NAME:TAG, and the image runs /bin/sh -c 'echo ok';
- the report's packages are exactly those of the image's rpm database, and exactly the Core group's mandatory
  packages (plus the gpg-pubkey of the test's key where the repository checks signatures);
- every enabled repository's metadata was fetched, and nothing the server does not have was asked for;
- nothing is left behind: no temp dir, and the host's rpm, dnf and yum state (/var/lib/rpm, ~/.rpmdb, /etc/yum,
  /etc/dnf, /var/cache/dnf, /var/cache/yum, ...: test_fresh_host's list) and /etc/yum.conf, /etc/yum.repos.d are
  as they were, file for file and byte for byte.
And a real config given an option that only dnf5 knows is refused before any work: exit 2, one Error: line that
names the option, no temp dir, no image, not one request to its repositories.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import pytest

from conftest import (
    CORE_MANDATORY, DEMO_VERSION, ROOT, Builder, Repo, docker_out, image_id, image_rpm_qa, require, run_in_image,
)
from httpserver import Served, serving
from signing import SIGNING_TOOLS, copy_packages, export_key, gnupg_home, index, make_key, sign
from test_fresh_host import HOST_STATE, snapshot

CONFIGS = ROOT / "tests" / "configs"
HOSTVIEW = ROOT / "tests" / "hostview.py"
PORT = "@PORT@"
"""Where a data file's URLs name the port of the test's server."""
HOST_STATE_AND_CONFIG = (*HOST_STATE, Path("/etc/yum.conf"), Path("/etc/yum.repos.d"))
"""This host's rpm, dnf and yum state (test_fresh_host's list), and where a stock config would be installed."""
RUN_ID = os.getpid()
"""Part of every image name: the docker daemon is shared with other test runs."""


# ------------------------------------------------------------------------------------------------ the configs
@dataclass(frozen=True)
class RealConfig:
    name: str
    releasever: str
    """What a user on a non-EL host passes as --releasever for this config."""
    source: Path
    """A config file, or an etc/ tree (a stock config without reposdir=) installed as the build's /etc."""

    @property
    def is_etc_tree(self) -> bool:
        return self.source.is_dir()

    def files(self) -> dict[str, str]:
        """Path (relative to /etc for an etc tree) -> text, the main config first."""
        if not self.is_etc_tree:
            return {self.source.name: self.source.read_text()}
        paths = sorted(self.source.rglob("*"), key=lambda path: (path.name != "yum.conf", str(path)))
        return {str(path.relative_to(self.source)): path.read_text() for path in paths if path.is_file()}


def mock_config(name: str, releasever: str) -> RealConfig:
    return RealConfig(f"mock-{name}", releasever, CONFIGS / "mock" / f"{name}.conf")


REAL_CONFIGS = (
    RealConfig("centos-7-stock", "7", CONFIGS / "centos-7" / "etc"),
    mock_config("centos-7", "7"),
    mock_config("centos-stream-8", "8"),
    mock_config("rocky-8", "8"),
    mock_config("centos-stream-9", "9"),
    mock_config("rocky-9", "9"),
    mock_config("almalinux-9", "9"),
    mock_config("centos-stream-10", "10"),
    mock_config("fedora-41", "41"),
    mock_config("amazonlinux-2", "2"),
    mock_config("amazonlinux-2023", "2023"),
)
FEDORA_41 = REAL_CONFIGS[8]

# Options of dnf5's [main] that dnf 4 does not have (this host's dnf 4.14 knows none of them: checked with its
# Python API): allow_downgrade is the first option dnf5.conf(5) documents; use_host_config, skip_unavailable and
# pkg_gpgcheck (dnf5's name for gpgcheck, which it keeps as an alias) are bound in libdnf5's ConfigMain.
# (optional_metadata_types is no such option: later dnf 4 releases have it too.)
DNF5_ONLY_OPTIONS = ("use_host_config=True", "allow_downgrade=False", "skip_unavailable=True", "pkg_gpgcheck=1")

GPGKEY_LINE = re.compile(r"^gpgkey\s*=")
URL_LINE = re.compile(r"^(baseurl|mirrorlist|metalink)\s*=\s*(.*)$")
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def render(text: str, port: int, key: Path) -> str:
    """A data file made usable: the server's port in its URLs, the test's key in every gpgkey=."""
    lines: list[str] = []
    in_gpgkey = False
    for line in text.replace(PORT, str(port)).splitlines(keepends=True):
        if in_gpgkey and line[:1] in (" ", "\t") and line.strip():
            continue  # a further key of the replaced gpgkey= value
        in_gpgkey = GPGKEY_LINE.match(line) is not None
        lines.append(f"gpgkey={key.as_uri()}\n" if in_gpgkey else line)
    return "".join(lines)


def dnf_bool(value: str) -> bool:
    """A boolean as dnf reads one."""
    word = value.strip().lower()
    if word in ("1", "yes", "true", "on"):
        return True
    if word in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"not a boolean for dnf: {value!r}")


@dataclass(frozen=True)
class EnabledRepo:
    id: str
    baseurl: str
    gpgcheck: bool
    """Whether dnf checks its packages' signatures: its own gpgcheck=, else [main]'s, else dnf's default (no)."""


def enabled_repos(texts: Sequence[str]) -> list[EnabledRepo]:
    """The enabled repositories of a config (texts: the main config first, then its repo files), in order."""
    parsers = []
    for text in texts:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(text)
        parsers.append(parser)
    main_gpgcheck = parsers[0].get("main", "gpgcheck", fallback="0")
    return [EnabledRepo(section, parser[section]["baseurl"], dnf_bool(parser[section].get("gpgcheck", main_gpgcheck)))
            for parser in parsers for section in parser.sections()
            if section != "main" and dnf_bool(parser[section].get("enabled", "1"))]


def substitute(text: str, variables: dict[str, str]) -> str:
    """dnf's $name and ${name}, for the variables given; others stay."""
    return VARIABLE.sub(lambda match: variables.get(match.group(1) or match.group(2), match.group(0)), text)


# ------------------------------------------------------------------------------------------- what is served
@dataclass(frozen=True)
class SignedDemo:
    """The demo repository's packages, all signed with one key made here, indexed with its comps (group Core)."""

    packages: Path
    key: Path
    key_id: str


@pytest.fixture(scope="module")
def signed_demo(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> SignedDemo:
    missing = [tool for tool in SIGNING_TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing tools: {', '.join(missing)}")
    root = tmp_path_factory.mktemp("real-configs-repo")
    with gnupg_home(root / "gnupg") as gnupg:
        key_id = make_key(gnupg, "mkimage-real-configs")
        sign(gnupg, "mkimage-real-configs", copy_packages(repo.root, root / "packages"))
        index(root / "packages", repo.root / "comps.xml", gnupg)
        key = export_key(gnupg, "mkimage-real-configs", root / "KEY.asc")
    return SignedDemo(root / "packages", key, key_id)


@pytest.fixture(scope="module")
def empty_repo(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid repository with no package (createrepo_c of an empty directory)."""
    path = tmp_path_factory.mktemp("empty-repo")
    subprocess.run(["createrepo_c", "--quiet", "--no-database", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def basearch(tools: None) -> str:
    """$basearch as this host's dnf substitutes it (asked of dnf's own Python, named by dnf's #! line)."""
    with open(shutil.which("dnf") or "dnf") as dnf:
        python = dnf.readline().removeprefix("#!").split()
    code = "import dnf.conf; print(dnf.conf.Conf().substitutions['basearch'])"  # dnf.Base() would open ~/.rpmdb
    return subprocess.run([*python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def publish(www: Path, repos: Sequence[EnabledRepo], variables: dict[str, str], demo: Path, empty: Path) -> list[str]:
    """The demo repository at the first repository's path, the empty one at the others'; the paths."""
    paths = [urlsplit(substitute(repo.baseurl, variables)).path for repo in repos]
    assert len(set(paths)) == len(paths), f"two enabled repositories share a path: {paths}"
    for path, target in zip(paths, [demo] + [empty] * (len(paths) - 1)):
        assert "$" not in path, f"a variable dnf would not substitute here: {path}"
        link = www / path.strip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return paths


# ---------------------------------------------------------------------------------------------- the build
@dataclass(frozen=True)
class Installed:
    """Where the build finds its config, and the command it runs under (none, or tests/hostview.py's)."""

    config: Path
    wrapper: tuple[str, ...] = ()


def install(config: RealConfig, texts: dict[str, str], where: Path) -> Installed:
    """A file config goes anywhere; an etc tree goes into /etc, an overlay of the host's in the private mount
    namespace (tests/hostview.py) that mkimage then runs in, reading /etc/yum.conf as on the distribution."""
    if not config.is_etc_tree:
        (path,), (text,) = texts.keys(), texts.values()
        (where / path).write_text(text)
        return Installed(where / path)
    scratch = where / "scratch"
    scratch.mkdir()
    wrapper = [sys.executable, str(HOSTVIEW), "--scratch", str(scratch), "--writable", "/etc"]
    for path, text in texts.items():
        wrapper.append(f"--write=/etc/{path}={text}")
    return Installed(Path("/etc/yum.conf"), (*wrapper, "--"))


def images_of(report: Path) -> list[str]:
    """The images a build made, by its report's build id (none without a report)."""
    build_id = json.loads(report.read_text()).get("build_id") if report.exists() else None
    if not build_id:
        return []
    return docker_out("image", "ls", "-q", "--filter", f"label=mkimage.build-id={build_id}").split()


def package_name(nevra: str) -> str:
    return nevra.rsplit("-", 2)[0]


def assert_fetched_only_what_is_served(served: Served, paths: Sequence[str]) -> None:
    assert dict(served.errors) == {}, "asked for what the config does not name"
    unread = [path for path in paths if not served.requests[path.rstrip("/") + "/repodata/repomd.xml"]]
    assert unread == [], f"enabled repositories never read: {unread}"


# ------------------------------------------------------------------------------------- the data, no build
def test_every_config_file_is_built() -> None:
    shipped = {path for path in CONFIGS.rglob("*") if path.is_file() and path.name != "README.md"}
    built = {config.source / name if config.is_etc_tree else config.source
             for config in REAL_CONFIGS for name in config.files()}
    assert shipped == built


@pytest.mark.parametrize("config", REAL_CONFIGS, ids=lambda config: config.name)
def test_a_config_names_its_source_and_reaches_only_the_test_server(config: RealConfig) -> None:
    texts = config.files()
    assert [path for path, text in texts.items() if not text.startswith("# mkimage test data: ")] == []
    urls = [match.groups() for text in texts.values() for line in text.splitlines() if (match := URL_LINE.match(line))]
    assert urls, "no repository"
    assert [key for key, _ in urls if key != "baseurl"] == [], "a mirrorlist or metalink is left"
    assert [url for _, url in urls if not url.startswith(f"http://127.0.0.1:{PORT}/")] == []


# ---------------------------------------------------------------------------------------- real builds
@pytest.mark.integration
@pytest.mark.parametrize("config", REAL_CONFIGS, ids=lambda config: config.name)
def test_a_real_config_builds_runs_and_reports_its_packages(config: RealConfig, build: Builder, as_root: None,
                                                           signed_demo: SignedDemo, empty_repo: Path,
                                                           basearch: str, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    name = f"mkimage-test/real-config-{config.name}-{RUN_ID}"
    host_before = snapshot(HOST_STATE_AND_CONFIG)
    with serving(www) as served:
        texts = {path: render(text, served.port, signed_demo.key) for path, text in config.files().items()}
        repos = enabled_repos(list(texts.values()))
        variables = {"releasever": config.releasever, "basearch": basearch}
        paths = publish(www, repos, variables, signed_demo.packages, empty_repo)
        installed = install(config, texts, tmp_path)
        run = build("--releasever", config.releasever, name=name, config=installed.config, wrapper=installed.wrapper)
    assert run.returncode == 0, run.stderr
    assert snapshot(HOST_STATE_AND_CONFIG) == host_before, "the build changed this host's rpm, dnf or yum state"
    assert build.leftovers() == []
    assert_fetched_only_what_is_served(served, paths)

    reference = f"{name}:{DEMO_VERSION}"
    assert run.stdout == f"{reference}\n"
    ran = run_in_image(reference, "/bin/sh", "-c", "echo ok")
    assert (ran.returncode, ran.stdout) == (0, "ok\n"), ran.stderr
    report = json.loads(build.report_paths[-1].read_text())
    in_image = image_rpm_qa(reference, tmp_path / "rpmdb", report["rpmdb"]["path"])
    assert report["packages"] == in_image
    checked = repos[0].gpgcheck
    assert {package_name(nevra) for nevra in in_image} == {*CORE_MANDATORY, *(["gpg-pubkey"] if checked else [])}
    assert len(in_image) == len(CORE_MANDATORY) + checked
    if checked:
        assert any(nevra.startswith(f"gpg-pubkey-{signed_demo.key_id}-") for nevra in in_image), in_image


@pytest.mark.integration
@pytest.mark.parametrize("option", DNF5_ONLY_OPTIONS, ids=lambda option: option.split("=")[0])
def test_a_dnf5_only_option_is_refused_before_any_work(option: str, build: Builder, as_root: None,
                                                       signed_demo: SignedDemo, empty_repo: Path, basearch: str,
                                                       tmp_path: Path) -> None:
    """Fedora 41's config (the release where dnf5 became Fedora's dnf) with one [main] option only dnf5 has."""
    www = tmp_path / "www"
    www.mkdir()
    option_name = option.split("=")[0]
    name = f"mkimage-test/real-config-dnf5-{RUN_ID}"
    with serving(www) as served:
        (text,) = FEDORA_41.files().values()
        text = render(text, served.port, signed_demo.key).replace("[main]\n", f"[main]\n{option}\n", 1)
        variables = {"releasever": FEDORA_41.releasever, "basearch": basearch}
        publish(www, enabled_repos([text]), variables, signed_demo.packages, empty_repo)
        config = tmp_path / "dnf5.conf"
        config.write_text(text)
        run = build("--releasever", FEDORA_41.releasever, name=name, config=config)
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option_name in errors[0], run.stderr
    assert build.leftovers() == [], "a temp dir was made"
    assert image_id(f"{name}:{DEMO_VERSION}") is None and images_of(build.report_paths[-1]) == []
    assert dict(served.requests) == {}, "its repositories were read"
