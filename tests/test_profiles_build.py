"""Every built-in profile, and a user profile using every key, built for real and checked inside the image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (
    Builder, host_mounts_mentioning, image_config, image_id, image_layer, run_in_image,
)
from test_build import assert_nothing_left, failed

pytestmark = pytest.mark.integration


def built(build: Builder, tmp_path: Path, name: str, *args: str) -> dict:
    report = tmp_path / f"{name.replace('/', '_')}.json"
    run = build("--report", str(report), *args, name=name)
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    data["stderr"] = run.stderr
    return data


def test_none_keeps_everything_but_docs(build: Builder, tmp_path: Path) -> None:
    report = built(build, tmp_path, "mkimage-test/none", "--profile", "none")
    layer = image_layer(report["reference"])
    assert "usr/share/doc/demo-docs/README" in layer and "usr/share/locale/de/LC_MESSAGES/demo.mo" in layer
    assert "usr/share/doc/demo-docs/NOTES-nodocs" not in layer, "tsflags=nodocs"
    assert "etc/sysconfig/network" not in layer
    assert any("dnf" in p for p in layer.under("var/log")), "dnf's logs stay unless a profile removes them"
    assert report["profile"]["applied"] == ["none"] and report["profile"]["removed_entries"] == 0
    assert image_config(report["reference"])["Cmd"] is None


def test_hardened(build: Builder, tmp_path: Path) -> None:
    report = built(build, tmp_path, "mkimage-test/hardened", "--profile", "hardened", "-v",
                   "-p", "demo-secrets", "-p", "demo-worldwritable")
    reference = report["reference"]
    layer = image_layer(reference, read=["etc/shadow", "etc/machine-id"])
    mode = lambda path: layer[path].mode & 0o7777  # noqa: E731
    assert mode("usr/bin/su") == 0o4755, "on the allow-list"
    assert mode("usr/bin/demo-mount") == 0o755 and mode("usr/bin/demo-write") == 0o755
    assert sorted(report["profile"]["setuid_stripped"]) == ["/usr/bin/demo-mount", "/usr/bin/demo-write"]
    root_hash = next(line for line in layer.text("etc/shadow").splitlines() if line.startswith("root:")).split(":")[1]
    assert root_hash.startswith("!$6$"), "root locked, hash kept behind the '!'"
    assert layer.text("etc/machine-id") == "" and mode("etc/machine-id") == 0o444
    for secret in ("etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub", "etc/ssh/ssh_host_ed25519_key",
                   "var/lib/systemd/random-seed", "etc/pki/tls/private/localhost.key"):
        assert secret not in layer, secret
    assert not any("dnf" in p or "hawkey" in p for p in layer.under("var/log"))
    assert not any("history" in p for p in layer.under("var/lib/dnf"))
    assert mode("var/lib/demo-ww/open-dir") == 0o775 and mode("var/lib/demo-ww/open-file") == 0o664
    assert mode("var/lib/demo-ww/sticky-dir") == 0o1777 and mode("tmp") == 0o1777
    assert "stripped setuid/setgid bits: /usr/bin/demo-mount" in report["stderr"]
    assert "removed /usr/share/locale" in report["stderr"], "-v lists every removed path"
    assert "  |   Installing       : demo-secrets" in report["stderr"], "-v streams dnf's output"
    assert "removed per-host secret: /etc/ssh/ssh_host_rsa_key" in report["stderr"]
    assert "summary setuid/setgid stripped: /usr/bin/demo-mount, /usr/bin/demo-write" in report["stderr"]
    assert run_in_image(reference, "echo", "still runs").stdout == "still runs\n"


def test_slim_is_smaller_and_keeps_c_utf8(build: Builder, tmp_path: Path) -> None:
    minimal = built(build, tmp_path, "mkimage-test/minimal-cmp")
    slim = built(build, tmp_path, "mkimage-test/slim", "--profile", "slim")
    assert slim["image_size"] < minimal["image_size"]
    locale_check = ("env", "LC_ALL=C.UTF-8", "bash", "-c", "echo ok")
    in_minimal = run_in_image(minimal["reference"], *locale_check)
    in_slim = run_in_image(slim["reference"], *locale_check)
    assert "setlocale" in in_minimal.stderr, "minimal removes every locale, as the script did"
    assert in_slim.stdout == "ok\n" and in_slim.stderr == "", "slim keeps C.UTF-8"
    layer = image_layer(slim["reference"])
    assert "etc/passwd-" not in layer and "etc/shadow-" not in layer
    assert layer.under("var/cache") == []
    outcome = slim["profile"]
    assert outcome["rpmdb_bytes_before"] > 0 and outcome["rpmdb_bytes_after"] > 0
    assert "summary rpmdb:" in slim["stderr"]
    assert run_in_image(slim["reference"], "echo", "success").stdout == "success\n"


USER_PROFILE = """
description = "uses every key"
extends = ["hardened"]

[packages]
groups = ["extras"]
install = ["demo-hello"]
exclude = ["demo-setuid"]
rebuild_rpmdb = true

[files]
remove = ["/usr/share/demo-extra", "/etc/*-"]
keep = ["/etc/shadow-"]
write = [
    { path = "/etc/motd", content = "hardened by security\\n", mode = "0640", owner = "nobody", group = 0 },
    { path = "/opt/acme/policy.txt", content = "no root\\n" },
]
set = [{ path = "/usr/bin/hello", mode = "0750", group = "nobody" }]

[chroot]
commands = [
    ["/bin/sh", "-c", "echo from-chroot > /etc/chroot-ran"],
    ["/bin/sh", "-c", "test -c /dev/null && test -r /proc/self/status && echo yes > /etc/mounts-seen"],
]

[hardening]
strip_setuid = true
setuid_allow = []
world_writable = "fix"

[image]
cmd = ["hello from the cmd"]
entrypoint = ["/usr/bin/printf", "%s\\\\n"]
env = { GREETING = "hi there $USER", TZ = "UTC" }
labels = { "org.example.owner" = "security team" }
user = "nobody"
workdir = "/opt/acme"
expose = ["8080", "53/udp"]

[smoke]
commands = [["/usr/bin/id", "-u"], ["/bin/sh", "-c", "test -s /etc/motd"]]
"""


def test_user_profile_with_every_key(build: Builder, tmp_path: Path) -> None:
    profile = tmp_path / "team.toml"
    profile.write_text(USER_PROFILE)
    report = built(build, tmp_path, "mkimage-test/team", "--profile", str(profile))
    reference = report["reference"]
    assert report["profile"]["applied"] == ["minimal", "hardened", str(profile)]
    names = {p.rsplit("-", 2)[0] for p in report["packages"]}
    assert {"demo-extra", "demo-hello"} <= names and "demo-setuid" not in names
    layer = image_layer(reference, read=["etc/motd", "etc/chroot-ran", "etc/mounts-seen", "opt/acme/policy.txt"])
    assert layer.text("etc/motd") == "hardened by security\n"
    assert layer["etc/motd"].mode & 0o7777 == 0o640 and (layer["etc/motd"].uid, layer["etc/motd"].gid) == (65534, 0)
    assert layer.text("opt/acme/policy.txt") == "no root\n" and layer["opt/acme/policy.txt"].mode & 0o777 == 0o644
    assert layer["usr/bin/hello"].mode & 0o7777 == 0o750 and layer["usr/bin/hello"].gid == 65534
    assert layer.text("etc/chroot-ran") == "from-chroot\n"
    assert layer.text("etc/mounts-seen") == "yes\n", "/proc and /dev were mounted for the commands"
    assert layer.under("proc") == [] and set(layer.under("dev")) == {f"dev/{n}" for n in (
        "console", "initctl", "full", "null", "ptmx", "random", "tty", "tty0", "urandom", "zero")}
    assert "usr/share/demo-extra/marker" not in layer
    assert "etc/shadow-" in layer and "etc/passwd-" not in layer, "keep wins over remove"
    assert report["profile"]["commands_run"] == [["/bin/sh", "-c", "echo from-chroot > /etc/chroot-ran"],
                                                 ["/bin/sh", "-c", "test -c /dev/null && test -r /proc/self/status "
                                                  "&& echo yes > /etc/mounts-seen"]]
    config = image_config(reference)
    assert config["Cmd"] == ["hello from the cmd"] and config["Entrypoint"] == ["/usr/bin/printf", "%s\\n"]
    assert "GREETING=hi there $USER" in config["Env"] and "TZ=UTC" in config["Env"]
    assert config["Labels"]["org.example.owner"] == "security team"
    assert config["User"] == "nobody" and config["WorkingDir"] == "/opt/acme"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert report["smoke_commands"] == [["echo", "success"], ["/usr/bin/id", "-u"],
                                        ["/bin/sh", "-c", "test -s /etc/motd"]]
    assert run_in_image(reference).stdout == "hello from the cmd\n", "ENTRYPOINT printf + CMD, as nobody"
    assert host_mounts_mentioning("mkimage") == []


def test_failing_profile_smoke_command_keeps_the_old_image(build: Builder, tmp_path: Path) -> None:
    good = build(name="mkimage-test/smokeprofile")
    assert good.returncode == 0, good.stderr
    good_id = image_id("mkimage-test/smokeprofile:1.4.2")
    profile = tmp_path / "smoke.toml"
    profile.write_text('[smoke]\ncommands = [["/bin/sh", "-c", "echo checking >&2; exit 3"]]\n')
    run, report = failed(build, tmp_path, "--profile", str(profile), name="mkimage-test/smokeprofile")
    assert run.returncode == 6, run.stderr
    assert "smoke test '/bin/sh -c echo checking >&2; exit 3' failed (exit code 3)" in run.stderr
    assert "checking" in run.stderr
    assert image_id("mkimage-test/smokeprofile:1.4.2") == good_id
    assert_nothing_left(build, report)


@pytest.mark.parametrize("profile_text, args, fragments", [
    pytest.param('[chroot]\ncommands = [["/bin/sh", "-c", "echo about to fail; exit 7"]]\n',
                 ["--rootfs-in-memory", "never"],  # on disk: a /proc or /dev left mounted would block removal
                 ["Error: chroot command '/bin/sh -c echo about to fail; exit 7' failed with exit code 7",
                  "about to fail"], id="chroot-command"),
    pytest.param('[hardening]\nworld_writable = "fail"\n', ["-p", "demo-worldwritable"],
                 ["Error: 2 world-writable entries without the sticky bit", "/var/lib/demo-ww/open-dir",
                  "/var/lib/demo-ww/open-file"], id="world-writable-fail"),
])
def test_failing_profile_step_cleans_up(build: Builder, tmp_path: Path, profile_text: str, args: list,
                                        fragments: list) -> None:
    """A profile step that fails exits 4, says why, and leaves nothing (no mount, dir, image, container)."""
    profile = tmp_path / "step.toml"
    profile.write_text(profile_text)
    run, report = failed(build, tmp_path, "--profile", str(profile), *args)
    assert run.returncode == 4, run.stderr
    for fragment in fragments:
        assert fragment in run.stderr
    assert_nothing_left(build, report)


def test_profile_cannot_escape_the_rootfs(build: Builder, tmp_path: Path) -> None:
    """A profile's commands may plant links to the host; removals and writes must stay inside."""
    victim, other = tmp_path / "host-file", tmp_path / "other"
    victim.write_text("precious\n")
    other.write_text("also precious\n")
    profile = tmp_path / "escape.toml"
    profile.write_text(f"""
[chroot]
commands = [
    ["busybox", "ln", "-s", "{victim}", "/etc/evil-abs"],
    ["busybox", "ln", "-s", "../../../../../../..{tmp_path}", "/etc/evil-rel"],
    ["busybox", "ln", "-s", "{tmp_path}", "/etc/evil-dir"],
]
[files]
write = [{{ path = "/etc/evil-rel/host-file", content = "pwned\\n" }}]
remove = ["/etc/evil-abs", "/etc/evil-dir/other"]
""")
    report = built(build, tmp_path, "mkimage-test/escape", "--profile", str(profile))
    assert victim.read_text() == "precious\n" and other.read_text() == "also precious\n"
    layer = image_layer(report["reference"], read=[f"{tmp_path}/host-file"])
    assert "etc/evil-abs" not in layer and "etc/evil-rel" in layer
    assert layer.text(f"{tmp_path}/host-file") == "pwned\n", "written inside the image, where the link leads there"
