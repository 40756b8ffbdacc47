"""Profile steps on a small fake rootfs: the edge cases the image builds don't reach."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mkimage.customize import _real_dir, _world_writable, empty_machine_id, lock_root, scan_permissions, set_files
from mkimage.errors import ProfileError
from mkimage.profile import FileSet, Hardening
from mkimage.result import ProfileOutcome


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    return root


def shadow(root: Path, root_field: str) -> None:
    (root / "etc/shadow").write_text(f"root:{root_field}:19000:0:99999:7:::\nbin:*:19000::::::\n")
    (root / "etc/shadow").chmod(0)


@pytest.mark.parametrize("before, after", [
    ("$6$salt$hash", "!$6$salt$hash"),
    ("", "!"),
    ("!!", "!!"),
    ("*", "*"),
    ("!$6$x", "!$6$x"),
])
def test_lock_root(rootfs: Path, before: str, after: str) -> None:
    shadow(rootfs, before)
    assert lock_root(rootfs)
    lines = (rootfs / "etc/shadow").read_text().splitlines()
    assert lines[0] == f"root:{after}:19000:0:99999:7:::" and lines[1] == "bin:*:19000::::::"
    assert stat.S_IMODE(os.stat(rootfs / "etc/shadow").st_mode) == 0


def test_lock_root_without_shadow_is_a_profile_error(rootfs: Path) -> None:
    with pytest.raises(ProfileError, match="has no /etc/shadow"):
        lock_root(rootfs)


def test_machine_id_emptied_but_a_link_left_alone(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (rootfs / "etc/machine-id").chmod(0o444)
    (rootfs / "var/lib/dbus").mkdir(parents=True)
    host_id = tmp_path / "host-machine-id"
    host_id.write_text("host\n")
    (rootfs / "var/lib/dbus/machine-id").symlink_to(host_id)
    assert empty_machine_id(rootfs)
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert stat.S_IMODE(os.stat(rootfs / "etc/machine-id").st_mode) == 0o444
    assert host_id.read_text() == "host\n"


@pytest.mark.parametrize("mode, expected", [
    (stat.S_IFDIR | 0o777, True), (stat.S_IFDIR | 0o1777, False), (stat.S_IFREG | 0o666, True),
    (stat.S_IFREG | 0o644, False), (stat.S_IFLNK | 0o777, False), (stat.S_IFCHR | 0o666, False),
])
def test_world_writable(mode: int, expected: bool) -> None:
    assert _world_writable(mode) is expected


def test_scan_permissions_in_one_walk(rootfs: Path) -> None:
    (rootfs / "usr/bin").mkdir(parents=True)
    for name, mode in (("su", 0o4755), ("mount", 0o4755), ("wall", 0o2755), ("ls", 0o755)):
        (rootfs / "usr/bin" / name).write_text("#!/bin/sh\n")
        (rootfs / "usr/bin" / name).chmod(mode)
    (rootfs / "bin").symlink_to("usr/bin")
    (rootfs / "open").mkdir()
    (rootfs / "open").chmod(0o777)
    outcome = ProfileOutcome()
    scan_permissions(rootfs, Hardening(strip_setuid=True, setuid_allow=("/bin/su",), world_writable="fix"), outcome)
    assert outcome.setuid_stripped == ["/usr/bin/mount", "/usr/bin/wall"]
    assert stat.S_IMODE(os.stat(rootfs / "usr/bin/su").st_mode) == 0o4755, "allowed through the /bin link"
    assert stat.S_IMODE(os.stat(rootfs / "usr/bin/mount").st_mode) == 0o755
    assert outcome.world_writable_fixed == ["/open"] and stat.S_IMODE(os.stat(rootfs / "open").st_mode) == 0o775


def test_proc_planted_as_a_link_to_the_host_is_refused(rootfs: Path) -> None:
    (rootfs / "proc").symlink_to("/proc")
    with pytest.raises(ProfileError, match="refusing to mount over it"):
        _real_dir(rootfs, "proc", 0o555)


def test_set_on_a_missing_file_is_a_profile_error(rootfs: Path) -> None:
    with pytest.raises(ProfileError, match="/etc/nope does not exist"):
        set_files(rootfs, (FileSet("/etc/nope", mode=0o600),), ProfileOutcome())
