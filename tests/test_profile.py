from pathlib import Path

import pytest

from mkimage import profile as profiles
from mkimage.profile import ProfileProblems, resolve

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_REMOVALS = [
    "/usr/lib/locale", "/usr/share/locale", "/usr/lib/gconv", "/usr/lib64/gconv", "/usr/bin/localedef",
    "/usr/sbin/build-locale-archive", "/usr/share/man", "/usr/share/doc", "/usr/share/info",
    "/usr/share/gnome/help", "/usr/share/cracklib", "/usr/share/i18n", "/var/cache/yum/*", "/var/cache/dnf/*",
    "/sbin/sln", "/etc/ld.so.cache", "/var/cache/ldconfig/*",
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(*refs: str) -> list[str]:
    with pytest.raises(ProfileProblems) as caught:
        resolve(list(refs))
    return caught.value.problems


def test_builtins_are_listed_and_valid() -> None:
    names = [name for name, _ in profiles.describe_builtin()]
    assert names == ["hardened", "minimal", "none", "slim"]
    for name in names:
        resolve([name])
    resolve([str(ROOT / "profiles/examples/security-team.toml")])


def test_minimal_is_the_script_exactly() -> None:
    profile, _ = resolve([])
    assert profile.applied == ("minimal",)
    assert list(profile.remove) == SCRIPT_REMOVALS
    assert [(w.path, w.content, w.mode) for w in profile.write] == [
        ("/etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n", 0o644)]
    assert profile.image.default_cmd == ("/bin/bash",) and profile.image.cmd is None


def test_none_starts_from_nothing() -> None:
    profile, _ = resolve(["none"])
    assert profile.remove == () and profile.write == () and profile.applied == ("none",)


def test_hardened_extends_minimal_once() -> None:
    profile, _ = resolve(["hardened"])
    assert profile.applied == ("minimal", "hardened")
    assert list(profile.remove) == SCRIPT_REMOVALS
    assert profile.hardening.strip_setuid and profile.hardening.lock_root
    assert profile.hardening.world_writable == "fix"


def test_merge_order_later_wins(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", 'extends = ["hardened"]\n[packages]\ninstall = ["a", "b"]\n'
                                 '[image]\nuser = "one"\nenv = { A = "1", B = "1" }\n')
    top = write(tmp_path, "top.toml", 'extends = ["base.toml"]\n[packages]\ninstall = ["b", "c"]\n'
                                      '[hardening]\nworld_writable = "fail"\n'
                                      '[image]\nuser = "two"\nenv = { B = "2" }\n')
    profile, merged = resolve([str(top)], {"packages": {"install": ["d"], "groups": ["Core"]}})
    assert profile.packages == ("a", "b", "c", "d")
    assert profile.groups == ("Core",)
    assert profile.hardening.world_writable == "fail" and profile.hardening.strip_setuid
    assert profile.image.user == "two" and dict(profile.image.env) == {"A": "1", "B": "2"}
    assert merged["applied"] == ["minimal", "hardened", str(tmp_path / "base.toml"), str(top)]


def test_every_error_is_listed_at_once_with_file_and_key(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.toml", """
colour = "blue"
[packages]
install = "vim"
[files]
remove = ["relative/path", "/usr/../etc/shadow", "/", "/usr/**"]
write = [{ path = "/etc/x", content = "x", mode = "rw-r--r--" }, { content = "no path" }]
[hardening]
world_writable = "maybe"
strip_setuid = "yes"
[image]
user = "two\\nlines"
env = { "BAD NAME" = "x" }
expose = ["99999"]
cmd = []
""")
    found = problems_of(str(bad))
    expected = [
        "colour: unknown key",
        "packages.install: expected a list, got a string",
        "files.remove[0]: 'relative/path' must be an absolute path",
        "files.remove[1]: '/usr/../etc/shadow' uses '..'",
        "files.remove[2]: '/' is the whole image",
        "files.remove[3]: '/usr/**': '**' must be followed by a name pattern",
        "files.write[0].mode: expected an octal string such as \"0644\"",
        "files.write[1].path: required",
        "hardening.world_writable: expected one of ignore, fix, fail, got 'maybe'",
        "hardening.strip_setuid: expected true or false",
        "image.user: must be a single line",
        "image.env.BAD NAME: 'BAD NAME' is not an environment variable name",
        "image.expose[0]: '99999' is not a port",
        "image.cmd: a command needs at least the program",
    ]
    for fragment in expected:
        assert any(p.startswith(f"{bad}: ") and fragment in p for p in found), (fragment, found)
    assert len(found) == len(expected)


def test_missing_parent_and_cycles(tmp_path: Path) -> None:
    a = write(tmp_path, "a.toml", 'extends = ["b.toml"]\n')
    write(tmp_path, "b.toml", 'extends = ["a.toml", "nonexistent-builtin", "gone.toml"]\n')
    found = problems_of(str(a))
    assert any("extends: cycle" in p for p in found)
    assert any("no built-in profile 'nonexistent-builtin'" in p for p in found)
    assert any("profile file" in p and "gone.toml" in p and "not found" in p for p in found)


def test_invalid_toml_and_unknown_profile(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.toml", "description = \n")
    found = problems_of(str(broken), "does-not-exist")
    assert any(p.startswith(f"{broken}: invalid TOML") for p in found)
    assert any("--profile does-not-exist: no built-in profile" in p for p in found)


def test_write_mode_must_be_a_string_not_a_decimal_number(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", '[files]\nwrite = [{ path = "/x", content = "", mode = 644 }]\n')
    assert any("files.write[0].mode" in p for p in problems_of(str(path)))


def test_command_timeouts_default_and_are_settable(tmp_path: Path) -> None:
    profile, _ = resolve([])
    assert (profile.chroot_timeout, profile.smoke_timeout) == (profiles.CHROOT_TIMEOUT, profiles.SMOKE_TIMEOUT)
    custom = write(tmp_path, "t.toml", "[chroot]\ntimeout = 30\n[smoke]\ntimeout = 2.5\n")
    profile, _ = resolve([str(custom)])
    assert (profile.chroot_timeout, profile.smoke_timeout) == (30, 2.5)


@pytest.mark.parametrize("value", ["0", "-1", "true", '"60"', "100000"])
def test_bad_timeouts_are_named(tmp_path: Path, value: str) -> None:
    bad = write(tmp_path, "t.toml", f"[chroot]\ntimeout = {value}\n")
    assert problems_of(str(bad)) == [f"{bad}: chroot.timeout: expected a number of seconds above 0, at most "
                                     f"{profiles.TIMEOUT_MAX}, got {profiles.tomllib.loads(f'v = {value}')['v']!r}"]
