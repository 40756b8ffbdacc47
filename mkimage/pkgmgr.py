"""yum (EL7, yum 3) and dnf (EL8+, and dnf 4 anywhere) behind one small interface.

Both get the same request; the argv each accepts is built by pure functions, so every difference between
them lives here.  dnf5 is detected and refused: it reads its configuration and repositories from inside
the installroot unless told otherwise, which would build something other than what was asked.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

DEFAULT_REPOSDIRS = ("/etc/yum.repos.d", "/etc/yum/repos.d", "/etc/distro.repos.d")
HOST_VARS_DIRS = (Path("/etc/yum/vars"), Path("/etc/dnf/vars"))
RELEASEVER_RE = re.compile(r"\$(?:\{releasever\}|releasever\b)")


@dataclass(frozen=True)
class InstallRequest:
    config: Path
    root: Path
    releasever: str
    groups: tuple[str, ...]
    packages: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    keep_cache: bool = False
    """Keep downloaded packages (the cache dir is a persistent --cache-dir)."""


@dataclass(frozen=True)
class PackageManager:
    """dnf 4; Yum below overrides what yum 3 does differently."""

    binary: str
    name: str = "dnf"
    cache_subdir: str = "var/cache/dnf"

    def common_argv(self, request: InstallRequest) -> list[str]:
        return [
            self.binary, "-c", str(request.config), f"--installroot={request.root}",
            f"--releasever={request.releasever}",
            "--setopt=tsflags=nodocs", "--setopt=group_package_types=mandatory",
            *self.extra_setopts(), *(["--setopt=keepcache=True"] if request.keep_cache else []), "-y",
        ]

    def extra_setopts(self) -> list[str]:
        # No weak dependencies: a base image gets what the groups require, nothing they merely recommend.
        return ["--setopt=install_weak_deps=False"]

    def install_argv(self, request: InstallRequest) -> list[str]:
        """One transaction, one depsolve, for the groups and the packages together."""
        excludes = [f"--exclude={pattern}" for pattern in request.exclude]
        targets = [f"@{group}" for group in request.groups] + list(request.packages)
        return [*self.common_argv(request), *excludes, "install", *targets]

    def makecache_argv(self, request: InstallRequest) -> list[str]:
        """Fetch the repositories' metadata into the rootfs's cache (the install reuses it)."""
        return [*self.common_argv(request), "makecache"]

    def clean_argv(self, request: InstallRequest) -> list[str]:
        return [*self.common_argv(request), "clean", "all"]


@dataclass(frozen=True)
class Yum(PackageManager):
    name: str = "yum"
    cache_subdir: str = "var/cache/yum"

    def extra_setopts(self) -> list[str]:
        # yum 3 skips unknown names with exit 0 unless told not to.
        return ["--setopt=skip_missing_names_on_install=False"]


def _is_dnf5(path: str) -> bool:
    return os.path.basename(os.path.realpath(path)).startswith("dnf5")


def _is_dnf(path: str) -> bool:
    return os.path.basename(os.path.realpath(path)).startswith("dnf")


def detect(choice: str) -> tuple[PackageManager | None, str | None]:
    """The package manager for --pkg-manager auto|yum|dnf, or a sentence saying why there is none."""
    dnf = shutil.which("dnf")
    yum = shutil.which("yum")
    if choice in ("auto", "dnf") and dnf and not _is_dnf5(dnf):
        return PackageManager(dnf), None
    if choice in ("auto", "yum") and yum and not _is_dnf5(yum):
        return (PackageManager(yum, name="dnf") if _is_dnf(yum) else Yum(yum)), None
    if any(path and _is_dnf5(path) for path in (dnf, yum)) or shutil.which("dnf5"):
        return None, ("only dnf5 was found, which mkimage does not support yet (it reads its configuration "
                      "and repositories from inside the installroot unless given --use-host-config); "
                      "install dnf 4 (python3-dnf) or yum")
    wanted = {"auto": "dnf or yum", "dnf": "dnf", "yum": "yum"}[choice]
    return None, f"{wanted} not found on PATH: install it (Debian/Ubuntu: apt-get install dnf)"


def default_config(yum_conf: Path = Path("/etc/yum.conf"), dnf_conf: Path = Path("/etc/dnf/dnf.conf")) -> Path:
    """/etc/yum.conf as the script had it; /etc/dnf/dnf.conf where only that exists."""
    if not yum_conf.exists() and dnf_conf.exists():
        return dnf_conf
    return yum_conf


# ------------------------------------------------------------------------------------ config inspection
def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(path, encoding="utf-8")
    return parser


def config_problem(config: Path) -> str | None:
    """Why the yum/dnf config can't be used, or None."""
    try:
        mode = config.stat().st_mode
    except FileNotFoundError:
        return f"config file {config} does not exist (give one with -y/--yum-config)"
    except OSError as err:
        return f"config file {config} cannot be accessed: {err.strerror}"
    if not stat.S_ISREG(mode):
        return f"config file {config} is not a regular file"
    if not os.access(config, os.R_OK):
        return f"config file {config} is not readable"
    try:
        _read_ini(config)
    except (configparser.Error, UnicodeDecodeError) as err:
        return f"config file {config} cannot be parsed: {str(err).splitlines()[0]}"
    return None


def repo_urls(config: Path, keys: tuple[str, ...] = ("baseurl", "mirrorlist", "metalink")) -> list[tuple[str, str]]:
    """(repo id, url) for every baseurl/mirrorlist/metalink (or other URL keys) of an enabled repo in the config
    and its reposdir."""
    main = _read_ini(config)
    sources = [main]
    reposdir = main.get("main", "reposdir", fallback=None)
    dirs = re.split(r"[,\s]+", reposdir.strip()) if reposdir else list(DEFAULT_REPOSDIRS)
    for directory in filter(None, dirs):
        for repo_file in sorted(Path(directory).glob("*.repo")):
            try:
                sources.append(_read_ini(repo_file))
            except (configparser.Error, UnicodeDecodeError, OSError):
                continue
    urls = []
    for parser in sources:
        for section in parser.sections():
            if section == "main" or parser.get(section, "enabled", fallback="1").strip() in ("0", "false", "no"):
                continue
            for key in keys:
                value = parser.get(section, key, fallback="")
                urls += [(section, url) for url in value.split() if url]
    return urls


def no_repo_problem(config: Path) -> str | None:
    if repo_urls(config):
        return None
    return (f"no enabled repository in {config} or its reposdir: give a config with one using -y "
            "(scripts/demo builds a local demo repository and its config)")


def releasever_problem(config: Path, releasever: str, host_has_release: bool) -> str | None:
    """The classic failure: a repo URL with $releasever, and nothing to detect it from."""
    if releasever != "/" or host_has_release:
        return None
    if any((directory / "releasever").is_file() for directory in HOST_VARS_DIRS):
        return None
    users = sorted({repo for repo, url in repo_urls(config) if RELEASEVER_RE.search(url)})
    if not users:
        return None
    return (f"repository {', '.join(users)} uses $releasever, but this host has no release package to detect "
            "it from (--releasever=/): pass --releasever, e.g. --releasever 9")


# ---------------------------------------------------------------------------------- output inspection
SCRIPTLET_FAILURE_RES = (
    re.compile(r"%(?P<scriptlet>\w+)\((?P<package>[^)]+)\) scriptlet failed, exit status (?P<status>\d+)"),
    re.compile(r"Error in (?P<scriptlet>\w+) scriptlet in rpm package (?P<package>\S+)"),
    re.compile(r"Non-fatal (?P<scriptlet>\w+) scriptlet failure in rpm package (?P<package>\S+)"),
)
SCRIPTLET_NAMES = {"postin": "post", "prein": "pre", "postun": "postun", "preun": "preun", "posttrans": "posttrans",
                   "pretrans": "pretrans"}
NEVRA_RE = re.compile(r"^(?P<name>.+)-[^-]+-[^-]+$")

FAILURE_PATTERNS = (
    "no match for argument", "unable to find a match", "does not exist", "is not available", "no such group",
    "no package", "not found", "failed to download metadata", "cannot download", "curl error",
    "cannot retrieve repository metadata", "errors during downloading metadata", "cannot find a valid baseurl",
    "no space left", "disk requirements", "at least", "nothing provides", "conflicts with", "problem",
    "error:", "error ",
)

# (every one of these in the output, the hint); the first match is given.
RELEASEVER_HINT = "the repo URL needs $releasever, which dnf could not detect: pass --releasever"
HINTS = (
    (("no space left",), "the rootfs is full: try --rootfs-in-memory never, or free memory or disk"),
    (("disk requirements",), "the rootfs is full: try --rootfs-in-memory never, or free memory or disk"),
    (("no match for argument",), "a package name is unknown to the configured repos"),
    (("group", "is not available"), "a group is unknown to the configured repos (dnf group list shows them)"),
    (("group", "does not exist"), "a group is unknown to the configured repos (yum grouplist shows them)"),
    (("failed to download metadata",), "a repository cannot be reached"),
    (("cannot retrieve repository metadata",), "a repository cannot be reached"),
)


def scriptlet_failure(line: str) -> tuple[str, str] | None:
    """'warning: %post(demo-1.0-1.noarch) scriptlet failed, exit status 1' ->
    ('demo', '%post of demo-1.0-1.noarch'); the package name is the key (rpm and dnf both report one failure)."""
    for regex in SCRIPTLET_FAILURE_RES:
        match = regex.search(line)
        if match:
            scriptlet = match.group("scriptlet").lower()
            package = match.group("package")
            nevra = NEVRA_RE.match(package)
            name = nevra.group("name") if nevra and "." in package.rsplit("-", 1)[-1] else package
            return name, f"%{SCRIPTLET_NAMES.get(scriptlet, scriptlet)} of {package}"
    return None


def failure_hints(lines: Iterable[str], *, repos_use_releasever: bool = False) -> list[str]:
    """Hints for a failed install.  dnf warns that it cannot detect the release version on every host
    without a release package, so that warning only counts when a repo URL really uses $releasever."""
    text = "\n".join(lines).lower()
    hints = [hint for needles, hint in HINTS if all(needle in text for needle in needles)]
    if repos_use_releasever and "unable to detect release version" in text:
        hints.insert(0, RELEASEVER_HINT)
    return hints


def repos_use_releasever(config: Path) -> bool:
    return any(RELEASEVER_RE.search(url) for _, url in repo_urls(config))
