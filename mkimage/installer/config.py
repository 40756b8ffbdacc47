"""How the package manager reads its config, asked of the package manager itself.

mkimage does not parse yum/dnf configs: `query_config.py` runs under the package manager's own interpreter (the
one its `#!` line names) and answers with dnf's (or yum's) own reading — every option parsed as dnf parses it
(`enabled=False`, `0/1`, `yes/no`, `on/off`), every variable substituted as dnf substitutes it (the host's yum and
dnf vars, `DNF_VAR_*`, `$releasever`, `$basearch`, `$arch`), the cache directory as dnf will use it.  The answer is
asked once, in preflight, and used wherever a repository or the cache matters: what the sandbox makes visible,
the inputs digest, --cache-dir, the reproducible epoch, the GPG explanations.

Hand-written reading is left in two places only, where no package manager answers: `dnf5_only_problems` (dnf 4
merely logs an option it does not know; which of those belong to dnf5 is a table here), and `host_dbpath`
(rpm's own `--eval`, not a parser).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from .. import sandbox
from ..run import run_captured
from . import PackageManager
from .rpm import HOST_DBPATH_ARGV

QUERY_SCRIPT = Path(__file__).with_name("query_config.py")
SANDBOX_ATTEMPTS = 3
"""The read-only sandbox binds the whole root (the config may name any path): where mounts come and go meanwhile
(a docker daemon's overlays), bwrap can fail to remount one that just vanished; it is made again."""
RELEASEVER = "$releasever"

# Options of dnf5 that dnf 4 does not know, and what dnf 4 would do with a config that relies on them (it logs
# them at debug level and goes on).  From dnf5's "changes from dnf4" and dnf5.conf(5).
DNF5_ONLY_OPTIONS = {
    "pkg_gpgcheck": "dnf 4 ignores it, so packages would be installed unchecked: use gpgcheck",
    "use_host_config": "dnf 4 ignores it and always reads the host's config",
    "skip_unavailable": "dnf 4 ignores it: use skip_if_unavailable in each repository",
    "allow_downgrade": "dnf 4 ignores it",
}
# Mount points the sandbox makes itself: a repo option naming a path below them (reposdir=/dev/null, as mock's
# templates have it) is never bound over them.
SANDBOX_OWN_DIRS = ("/dev", "/proc", "/sys")


@dataclass(frozen=True)
class Repo:
    id: str
    enabled: bool
    baseurl: tuple[str, ...] = ()
    mirrorlist: str = ""
    metalink: str = ""
    gpgcheck: bool = False
    gpgkey: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    """sslcacert, sslclientcert, sslclientkey."""
    file: str = ""

    @property
    def urls(self) -> list[str]:
        return [*self.baseurl, *filter(None, (self.mirrorlist, self.metalink))]


@dataclass(frozen=True)
class ConfigAnswer:
    """The package manager's reading of one config, variables substituted."""

    config: Path
    package_manager: str
    releasever: str | None
    """The release version dnf uses: the one given, or the one it detects on this host (None: none)."""
    basearch: str
    cachedir: str
    """The cache inside the installroot, as the package manager will use it."""
    reposdir: tuple[str, ...] = ()
    varsdir: tuple[str, ...] = ()
    repos: tuple[Repo, ...] = ()
    unknown_options: tuple[str, ...] = ()
    """'name = value in FILE', as dnf logs an option it does not know."""
    invalid_values: tuple[str, ...] = ()

    @property
    def enabled_repos(self) -> list[Repo]:
        return [repo for repo in self.repos if repo.enabled]

    @property
    def enabled_ids(self) -> set[str]:
        return {repo.id for repo in self.enabled_repos}

    @property
    def gpgkey_urls(self) -> list[str]:
        return [url for repo in self.enabled_repos for url in repo.gpgkey]

    @property
    def local_repo_dirs(self) -> list[Path]:
        """The directories of local (file://) repositories, which the package manager reads in place."""
        return [Path(path) for repo in self.enabled_repos for url in repo.baseurl
                if (path := local_path(url)) is not None]

    @property
    def uses_unset_releasever(self) -> bool:
        """A repository URL still has $releasever in it: nothing gave or detected a release version."""
        return any(RELEASEVER in url for repo in self.enabled_repos for url in repo.urls)

    def cache_in(self, root: Path) -> Path:
        return root / self.cachedir.lstrip("/")

    def host_paths(self) -> list[str]:
        """Every host file or directory the package manager opens for this config: the config, its reposdir and
        varsdir, and the local paths its enabled repositories name (file:// repos, keys, certificates) — never
        one below the sandbox's own /dev, /proc or /sys."""
        paths = [str(self.config), *self.reposdir, *self.varsdir]
        for repo in self.enabled_repos:
            for value in (*repo.urls, *repo.gpgkey, *repo.paths):
                path = local_path(value)
                if path is not None:
                    paths.append(path)
        kept = [path for path in paths if path != "/" and not under_any(path, SANDBOX_OWN_DIRS)]
        return list(dict.fromkeys(kept))


def under_any(path: str, directories: Sequence[str]) -> bool:
    return any(path == directory or path.startswith(directory + "/") for directory in directories)


def local_path(value: str) -> str | None:
    """The host path a repo option names: file:///x or /x; None for http(s) and friends."""
    if value.startswith("file:"):
        path = unquote(urlsplit(value).path)
    elif value.startswith("/"):
        path = value
    else:
        return None
    return os.path.normpath(path) if path.startswith("/") else None


# ------------------------------------------------------------------------------------------ asking
def interpreter(binary: str) -> list[str] | None:
    """The interpreter the package manager's `#!` line names (it is the one with the dnf or yum module):
    ['/usr/bin/python3'], ['/usr/libexec/platform-python', '-s'], or None when it has none."""
    try:
        with open(os.path.realpath(binary), "rb") as script:
            first = script.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = shlex.split(first[2:].decode("utf-8", errors="replace"))
    if words[:1] and os.path.basename(words[0]) == "env" and len(words) > 1:
        found = shutil.which(words[1])
        return [found, *words[2:]] if found else None
    return words or None


def query_argv(manager: PackageManager, config: Path, releasever: str, host_db: str,
               forcearch: str = "") -> list[str] | None:
    """argv that asks the package manager's own module about config (run with no installroot yet: what the
    first call of a build sees); forcearch: a foreign architecture, as `dnf --forcearch` sets it."""
    python = interpreter(manager.binary)
    if python is None:
        return None
    return [*python, "-I", str(QUERY_SCRIPT), manager.name, str(config), releasever, "/nonexistent-installroot",
            host_db, *([forcearch] if forcearch else [])]


def host_dbpath() -> str:
    """Where this host's rpm keeps its database (asked, never opened here); '' without rpm."""
    if shutil.which("rpm") is None:
        return ""
    result = run_captured(list(HOST_DBPATH_ARGV), timeout=30)
    return result.stdout.strip() if result.ok else ""


def ask(manager: PackageManager, config: Path, releasever: str, *, sandboxed: bool = True,
        forcearch: str = "") -> ConfigAnswer | str:
    """The package manager's own reading of config (in a read-only sandbox unless sandboxed is False), or the
    problem in one line; forcearch: read for a foreign architecture ($basearch, $arch), as --forcearch does."""
    config = Path(os.path.abspath(config))
    argv = query_argv(manager, config, releasever, host_dbpath(), forcearch)
    if argv is None:
        return f"cannot ask {manager.binary} how it reads {config}: it has no #! line naming its Python"
    if sandboxed:
        argv = sandbox.read_only_argv(argv)
    for _ in range(SANDBOX_ATTEMPTS):
        result = run_captured(argv, env=sandbox.sandbox_env(os.environ), timeout=120)
        if not (sandboxed and sandbox.is_setup_failure(result.returncode, result.tail)):
            break
    if not result.ok:
        said = f": {result.tail[-1]}" if result.tail else ""
        return f"could not ask {manager.name} how it reads {config} (exit {result.returncode}){said}"
    return parse_answer(config, result.stdout)


def parse_answer(config: Path, stdout: str) -> ConfigAnswer | str:
    """The answer, or the package manager's own sentence for a config it cannot read."""
    try:
        document: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"could not ask the package manager about {config}: it printed no answer"
    if "error" in document:
        return f"the package manager cannot read {config}: {document['error']}"
    repos = tuple(Repo(id=item["id"], enabled=item["enabled"], baseurl=tuple(item["baseurl"]),
                       mirrorlist=item["mirrorlist"], metalink=item["metalink"], gpgcheck=item["gpgcheck"],
                       gpgkey=tuple(item["gpgkey"]), paths=tuple(item["paths"]), file=item["file"])
                  for item in document["repos"])
    return ConfigAnswer(
        config=config, package_manager=document["package_manager"], releasever=document["releasever"],
        basearch=document["basearch"] or "", cachedir=document["cachedir"], reposdir=tuple(document["reposdir"]),
        varsdir=tuple(document["varsdir"]), repos=repos, unknown_options=tuple(document["unknown_options"]),
        invalid_values=tuple(document["invalid_values"]),
    )


# ------------------------------------------------------------------------------------------ judging
def option_name(unknown: str) -> str:
    return unknown.split(" = ", 1)[0].strip()


def option_file(unknown: str) -> str:
    return unknown.rsplit(" in ", 1)[-1] if " in " in unknown else ""


def dnf5_only_problems(answer: ConfigAnswer) -> list[str]:
    problems = []
    for unknown in answer.unknown_options:
        name = option_name(unknown)
        if name in DNF5_ONLY_OPTIONS:
            where = option_file(unknown) or str(answer.config)
            problems.append(f"{where}: option {name} is dnf5's, and mkimage builds with dnf 4 "
                            f"({DNF5_ONLY_OPTIONS[name]})")
    return problems


def problems(answer: ConfigAnswer) -> list[str]:
    """What makes the config unusable for a build, each in one line."""
    found = dnf5_only_problems(answer)
    found += [f"invalid value in the config: {value}" for value in answer.invalid_values]
    if not answer.enabled_repos:
        found.append(f"no enabled repository in {answer.config} or its reposdir "
                     f"({', '.join(answer.reposdir) or 'none'}): give a config with one using -y "
                     "(scripts/demo builds a local demo repository and its config)")
    elif answer.uses_unset_releasever:
        users = sorted(repo.id for repo in answer.enabled_repos if any(RELEASEVER in url for url in repo.urls))
        found.append(f"repository {', '.join(users)} uses $releasever, but this host has no release package to "
                     "detect it from (--releasever=/): pass --releasever, e.g. --releasever 9")
    return found


def ignored_options(answer: ConfigAnswer) -> list[str]:
    """Options the package manager does not know and ignores (yum 3's distroverpkg read by dnf 4, say)."""
    return [option_name(unknown) for unknown in answer.unknown_options
            if option_name(unknown) not in DNF5_ONLY_OPTIONS]
