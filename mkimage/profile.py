"""Profiles: what a build adds, removes, hardens and sets, as TOML data checked against a schema.

A profile is validated whole before any work; every error names the file and the key.  Profiles
``extends`` others (built-in by name, or by a path relative to the file), merged in order, later wins:
lists are appended (duplicates dropped), tables merged key by key, single values replaced.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on EL hosts with older Pythons
    import tomli as tomllib

DEFAULT_PROFILE = "minimal"
CHROOT_TIMEOUT = 600
"""Seconds a profile chroot command may run (chroot.timeout overrides)."""
SMOKE_TIMEOUT = 300
"""Seconds a smoke command may run (smoke.timeout overrides)."""
TIMEOUT_MAX = 86400
NO_PROFILE = "none"
WORLD_WRITABLE_ACTIONS = ("ignore", "fix", "fail")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?$")
PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")
MODE_RE = re.compile(r"^(?:0o)?[0-7]{3,4}$")


class ProfileProblems(Exception):
    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# ---------------------------------------------------------------------------------------------- schema
# A checker takes (value, where, problems) and returns the normalised value (or None when invalid).
Checker = Callable[[Any, str, list], Any]


def _text(value: Any, where: str, problems: list) -> Any:
    """Any string, several lines allowed (file content, descriptions)."""
    if not isinstance(value, str):
        problems.append(f"{where}: expected a string, got {_type_name(value)}")
        return None
    return value


def _str(value: Any, where: str, problems: list) -> Any:
    """A one-line string: it ends up in an argv, a path or a Dockerfile instruction."""
    text = _text(value, where, problems)
    if text is not None and "\n" in text:
        problems.append(f"{where}: must be a single line")
        return None
    return text


def _bool(value: Any, where: str, problems: list) -> Any:
    if not isinstance(value, bool):
        problems.append(f"{where}: expected true or false, got {_type_name(value)}")
        return None
    return value


def _list_of(item: Checker) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {_type_name(value)}")
            return None
        checked = [item(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return None if any(c is None for c in checked) else checked
    return check


def _nonempty_str(value: Any, where: str, problems: list) -> Any:
    text = _str(value, where, problems)
    if text is not None and not text.strip():
        problems.append(f"{where}: must not be empty")
        return None
    return text


def _image_path(allow_glob: bool) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        text = _str(value, where, problems)
        if text is None:
            return None
        problem = image_path_problem(text, allow_glob=allow_glob)
        if problem:
            problems.append(f"{where}: {problem}")
            return None
        return str(PurePosixPath(text))
    return check


def image_path_problem(path: str, *, allow_glob: bool) -> str | None:
    if not path.startswith("/"):
        return f"{path!r} must be an absolute path inside the image"
    if "\0" in path:
        return f"{path!r} holds a NUL byte"
    if ".." in path.split("/"):
        return f"{path!r} uses '..', which could leave the rootfs"
    if PurePosixPath(path) == PurePosixPath("/"):
        return "'/' is the whole image"
    if not allow_glob and any(ch in path for ch in "*?["):
        return f"{path!r}: wildcards are not allowed here"
    if path.rstrip("/").endswith("/**"):
        return f"{path!r}: '**' must be followed by a name pattern (to remove a whole tree, name its directory)"
    return None


def _argv(value: Any, where: str, problems: list) -> Any:
    checked = _list_of(_nonempty_str)(value, where, problems)
    if checked is not None and not checked:
        problems.append(f"{where}: a command needs at least the program")
        return None
    return checked


def _seconds(value: Any, where: str, problems: list) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= TIMEOUT_MAX:
        problems.append(f"{where}: expected a number of seconds above 0, at most {TIMEOUT_MAX}, got {value!r}")
        return None
    return value


def _mode(value: Any, where: str, problems: list) -> Any:
    if not isinstance(value, str) or not MODE_RE.match(value):
        problems.append(f"{where}: expected an octal string such as \"0644\", got {value!r}")
        return None
    return value


def _owner(value: Any, where: str, problems: list) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(f"{where}: expected a name or a numeric id, got {_type_name(value)}")
        return None
    if isinstance(value, int) and value < 0:
        problems.append(f"{where}: ids are not negative")
        return None
    if isinstance(value, str) and not USER_RE.match(value):
        problems.append(f"{where}: {value!r} is not a user or group name")
        return None
    return value


def _matching(regex: re.Pattern, what: str) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        text = _str(value, where, problems)
        if text is not None and not regex.match(text):
            problems.append(f"{where}: {text!r} is not {what}")
            return None
        return text
    return check


def _port(value: Any, where: str, problems: list) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _str(value, where, problems)
    match = PORT_RE.match(text) if text is not None else None
    if text is not None and (match is None or not 1 <= int(match.group(1)) <= 65535):
        problems.append(f"{where}: {text!r} is not a port such as 8080 or \"53/udp\"")
        return None
    return text


def _choice(*choices: str) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        if value not in choices:
            problems.append(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
            return None
        return value
    return check


def _str_map(key_re: re.Pattern, what: str) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a table, got {_type_name(value)}")
            return None
        result = {}
        for key, item in value.items():
            if not key_re.match(key):
                problems.append(f"{where}.{key}: {key!r} is not {what}")
                continue
            result[key] = _str(item, f"{where}.{key}", problems)
        return None if None in result.values() or len(result) != len(value) else result
    return check


def _table(schema: Mapping[str, Checker], required: Sequence[str] = ()) -> Checker:
    def check(value: Any, where: str, problems: list) -> Any:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a table, got {_type_name(value)}")
            return None
        return _check_table(value, schema, where, problems, required)
    return check


def _check_table(value: Mapping[str, Any], schema: Mapping[str, Any], where: str, problems: list,
                 required: Sequence[str] = ()) -> dict | None:
    result: dict[str, Any] = {}
    start = len(problems)
    prefix = f"{where}." if where else ""
    for key, item in value.items():
        spec = schema.get(key)
        if spec is None:
            problems.append(f"{prefix}{key}: unknown key (known here: {', '.join(schema)})")
        elif isinstance(spec, dict):
            if not isinstance(item, dict):
                problems.append(f"{prefix}{key}: expected a table, got {_type_name(item)}")
            else:
                result[key] = _check_table(item, spec, f"{prefix}{key}", problems)
        else:
            result[key] = spec(item, f"{prefix}{key}", problems)
    for key in required:
        if key not in value:
            problems.append(f"{prefix}{key}: required")
    return result if len(problems) == start else None


WRITE_SCHEMA = {"path": _image_path(False), "content": _text, "mode": _mode, "owner": _owner, "group": _owner}
SET_SCHEMA = {"path": _image_path(False), "mode": _mode, "owner": _owner, "group": _owner}

SCHEMA: dict[str, Any] = {
    "description": _text,
    "extends": _list_of(_nonempty_str),
    "packages": {
        "groups": _list_of(_nonempty_str),
        "install": _list_of(_nonempty_str),
        "exclude": _list_of(_nonempty_str),
        "rebuild_rpmdb": _bool,
    },
    "files": {
        "remove": _list_of(_image_path(True)),
        "remove_package_cache": _bool,
        "keep": _list_of(_image_path(True)),
        "write": _list_of(_table(WRITE_SCHEMA, required=("path", "content"))),
        "set": _list_of(_table(SET_SCHEMA, required=("path",))),
    },
    "chroot": {"commands": _list_of(_argv), "network": _bool, "timeout": _seconds},
    "hardening": {
        "strip_setuid": _bool,
        "setuid_allow": _list_of(_image_path(False)),
        "lock_root": _bool,
        "remove_shared_secrets": _bool,
        "empty_machine_id": _bool,
        "remove_pkg_logs": _bool,
        "world_writable": _choice(*WORLD_WRITABLE_ACTIONS),
    },
    "image": {
        "cmd": _argv,
        "default_cmd": _argv,
        "entrypoint": _argv,
        "env": _str_map(ENV_NAME_RE, "an environment variable name"),
        "labels": _str_map(LABEL_KEY_RE, "a label key"),
        "user": _matching(USER_RE, "a user or user:group"),
        "workdir": _image_path(False),
        "expose": _list_of(_port),
    },
    "smoke": {"commands": _list_of(_argv), "timeout": _seconds},
}


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------------------------- merge
def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Later wins: lists appended without duplicates, tables merged, single values replaced."""
    result = dict(base)
    for key, value in overlay.items():
        old = result.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            result[key] = merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            result[key] = old + [item for item in value if item not in old]
        else:
            result[key] = value
    return result


# -------------------------------------------------------------------------------------------- loading
def builtin_dir() -> Path:
    """profiles/ in a source checkout, mkimage/profiles in an installed wheel."""
    import mkimage.profiles as package
    return Path(package.__file__).parent


def builtin_profiles() -> dict[str, Path]:
    return {path.stem: path for path in sorted(builtin_dir().glob("*.toml"))}


def is_path_reference(ref: str) -> bool:
    return "/" in ref or ref.endswith(".toml")


@dataclass
class _Loader:
    problems: list[str] = field(default_factory=list)
    applied: list[Path] = field(default_factory=list)
    _stack: list[Path] = field(default_factory=list)

    def locate(self, ref: str, relative_to: Path | None, where: str) -> Path | None:
        if not is_path_reference(ref):
            found = builtin_profiles().get(ref)
            if found is None:
                known = ", ".join(builtin_profiles())
                self.problems.append(f"{where}: no built-in profile {ref!r} (built-in: {known}; "
                                     "give a path for your own)")
            return found
        path = Path(ref).expanduser()
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            found = "not found" if not path.exists() else "is not a regular file"
            self.problems.append(f"{where}: profile file {str(path)!r} {found}")
            return None
        return path.resolve()

    def load(self, path: Path) -> dict[str, Any]:
        """The profile at path merged over its parents; {} when it is invalid (problems recorded)."""
        if path in self._stack:
            chain = " -> ".join(str(p) for p in [*self._stack[self._stack.index(path):], path])
            self.problems.append(f"{path}: extends: cycle {chain}")
            return {}
        if path in self.applied:
            return {}
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            self.problems.append(f"{path}: cannot read: {err}")
            return {}
        except tomllib.TOMLDecodeError as err:
            self.problems.append(f"{path}: invalid TOML: {err}")
            return {}
        own_problems: list[str] = []
        checked = _check_table(raw, SCHEMA, "", own_problems)
        self.problems += [f"{path}: {problem}" for problem in own_problems]
        merged: dict[str, Any] = {}
        self._stack.append(path)
        for parent_ref in raw.get("extends", []) if isinstance(raw.get("extends"), list) else []:
            if not isinstance(parent_ref, str):
                continue
            parent = self.locate(parent_ref, path.parent, f"{path}: extends")
            if parent is not None:
                merged = merge(merged, self.load(parent))
        self._stack.pop()
        if checked is None:
            return {}
        self.applied.append(path)
        own = {key: value for key, value in checked.items() if key not in ("extends", "description")}
        return merge(merged, own)


@dataclass(frozen=True)
class FileWrite:
    path: str
    content: str
    mode: int = 0o644
    owner: str | int | None = None
    group: str | int | None = None


@dataclass(frozen=True)
class FileSet:
    path: str
    mode: int | None = None
    owner: str | int | None = None
    group: str | int | None = None


@dataclass(frozen=True)
class Hardening:
    strip_setuid: bool = False
    setuid_allow: tuple[str, ...] = ()
    lock_root: bool = False
    remove_shared_secrets: bool = False
    empty_machine_id: bool = False
    remove_pkg_logs: bool = False
    world_writable: str = "ignore"


@dataclass(frozen=True)
class ImageSettings:
    cmd: tuple[str, ...] | None = None
    default_cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    workdir: str | None = None
    expose: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """The merged result of every profile of a build."""

    applied: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rebuild_rpmdb: bool = False
    remove: tuple[str, ...] = ()
    remove_package_cache: bool = False
    """[files] remove_package_cache = true: empty the config's cachedir, wherever the package manager put it."""
    keep: tuple[str, ...] = ()
    write: tuple[FileWrite, ...] = ()
    set: tuple[FileSet, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    chroot_network: bool = False
    """[chroot] network = true: the chroot commands share the host's network (default: none)."""
    chroot_timeout: float = CHROOT_TIMEOUT
    """[chroot] timeout: seconds each chroot command may run before it is stopped and the build fails."""
    hardening: Hardening = Hardening()
    image: ImageSettings = ImageSettings()
    smoke: tuple[tuple[str, ...], ...] = ()
    smoke_timeout: float = SMOKE_TIMEOUT
    """[smoke] timeout: seconds each smoke command (the default echo too) may run."""

    @property
    def hardens(self) -> bool:
        return self.hardening != Hardening()


def _mode_int(mode: str | None) -> int | None:
    return None if mode is None else int(mode.removeprefix("0o"), 8)


def _tuple_argv(argv: list[str] | None) -> tuple[str, ...] | None:
    return None if argv is None else tuple(argv)


def profile_from_data(data: Mapping[str, Any], applied: Sequence[str]) -> Profile:
    packages = data.get("packages", {})
    files = data.get("files", {})
    image = data.get("image", {})
    hardening = data.get("hardening", {})
    return Profile(
        applied=tuple(applied),
        groups=tuple(packages.get("groups", ())),
        packages=tuple(packages.get("install", ())),
        exclude=tuple(packages.get("exclude", ())),
        rebuild_rpmdb=packages.get("rebuild_rpmdb", False),
        remove=tuple(files.get("remove", ())),
        remove_package_cache=files.get("remove_package_cache", False),
        keep=tuple(files.get("keep", ())),
        write=tuple(FileWrite(w["path"], w["content"], int(w.get("mode", "0644").removeprefix("0o"), 8),
                              w.get("owner"), w.get("group")) for w in files.get("write", ())),
        set=tuple(FileSet(s["path"], _mode_int(s.get("mode")), s.get("owner"), s.get("group"))
                  for s in files.get("set", ())),
        commands=tuple(tuple(argv) for argv in data.get("chroot", {}).get("commands", ())),
        chroot_network=data.get("chroot", {}).get("network", False),
        chroot_timeout=data.get("chroot", {}).get("timeout", CHROOT_TIMEOUT),
        hardening=Hardening(
            strip_setuid=hardening.get("strip_setuid", False),
            setuid_allow=tuple(hardening.get("setuid_allow", ())),
            lock_root=hardening.get("lock_root", False),
            remove_shared_secrets=hardening.get("remove_shared_secrets", False),
            empty_machine_id=hardening.get("empty_machine_id", False),
            remove_pkg_logs=hardening.get("remove_pkg_logs", False),
            world_writable=hardening.get("world_writable", "ignore"),
        ),
        image=ImageSettings(
            cmd=_tuple_argv(image.get("cmd")),
            default_cmd=_tuple_argv(image.get("default_cmd")),
            entrypoint=_tuple_argv(image.get("entrypoint")),
            env=tuple(image.get("env", {}).items()),
            labels=tuple(image.get("labels", {}).items()),
            user=image.get("user"),
            workdir=image.get("workdir"),
            expose=tuple(image.get("expose", ())),
        ),
        smoke=tuple(tuple(argv) for argv in data.get("smoke", {}).get("commands", ())),
        smoke_timeout=data.get("smoke", {}).get("timeout", SMOKE_TIMEOUT),
    )


def effective_refs(requested: Sequence[str]) -> list[str]:
    """The default profile first, unless 'none' was asked for."""
    if NO_PROFILE in requested:
        return [ref for ref in requested if ref != NO_PROFILE] or [NO_PROFILE]
    return [DEFAULT_PROFILE, *requested]


def resolve(requested: Sequence[str], overrides: Mapping[str, Any] | None = None) -> tuple[Profile, dict[str, Any]]:
    """Load, validate and merge the profiles of a build, then the command line's overrides.

    Returns the Profile and the merged data (for --show-profile).  Raises ProfileProblems with every
    problem found in every file.
    """
    loader = _Loader()
    merged: dict[str, Any] = {}
    for ref in effective_refs(requested):
        path = loader.locate(ref, Path.cwd(), f"--profile {ref}")
        if path is not None:
            merged = merge(merged, loader.load(path))
    if loader.problems:
        raise ProfileProblems(list(dict.fromkeys(loader.problems)))
    merged = merge(merged, dict(overrides or {}))
    applied = [_display_name(path) for path in loader.applied]
    return profile_from_data(merged, applied), {"applied": applied, **merged}


def _display_name(path: Path) -> str:
    builtin = builtin_dir().resolve()
    return path.stem if path.parent == builtin else str(path)


def describe_builtin() -> list[tuple[str, str]]:
    """(name, description) of every built-in profile."""
    described = []
    for name, path in builtin_profiles().items():
        try:
            description = tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
        except (OSError, tomllib.TOMLDecodeError):
            description = "(unreadable)"
        described.append((name, " ".join(str(description).split())))
    return described
