"""Confinement: nothing done inside a rootfs may reach the host, whatever links the rootfs holds."""

import os
from pathlib import Path, PurePosixPath

import pytest

from mkimage import mounts
from mkimage.fsutil import (
    ConfinementError, MountPointError, glob_in_root, remove_tree, resolve_in_root, walk_tree, write_file_in_root,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A rootfs with EL-style usr-merge links and hostile links pointing out of it."""
    root = tmp_path / "root"
    for directory in ("usr/bin", "usr/lib64/gconv", "usr/share/doc/a", "etc", "var/cache/dnf/x"):
        (root / directory).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib64").symlink_to("/usr/lib64")               # absolute: must stay inside
    (root / "escape").symlink_to("../../../../../../../../")
    (root / "etc/hostile").symlink_to("/etc")                # /etc of the image, never the host's
    (root / "usr/bin/bash").write_text("#!")
    (root / "usr/lib64/gconv/a.so").write_text("x" * 10)
    (root / "usr/share/doc/a/README").write_text("doc")
    (root / "var/cache/dnf/x/f").write_text("cache")
    (root / "var/cache/dnf/.hidden").write_text("h")
    return root


def test_resolve_keeps_links_inside(root: Path) -> None:
    assert resolve_in_root(root, "/bin/bash") == PurePosixPath("/usr/bin/bash")
    assert resolve_in_root(root, "/lib64/gconv") == PurePosixPath("/usr/lib64/gconv")
    assert resolve_in_root(root, "/escape/etc/passwd") == PurePosixPath("/etc/passwd")
    assert resolve_in_root(root, "/etc/hostile/shadow") == PurePosixPath("/etc/shadow")
    assert resolve_in_root(root, "/bin", follow_last=False) == PurePosixPath("/bin")


def test_link_loops_are_refused(root: Path) -> None:
    (root / "loop").symlink_to("loop")
    with pytest.raises(ConfinementError):
        resolve_in_root(root, "/loop/x")


def test_glob(root: Path) -> None:
    assert glob_in_root(root, "/var/cache/dnf/*") == [PurePosixPath("/var/cache/dnf/x")]  # not .hidden
    assert glob_in_root(root, "/lib64/gc*") == [PurePosixPath("/usr/lib64/gconv")]
    assert glob_in_root(root, "/usr/**/README") == [PurePosixPath("/usr/share/doc/a/README")]
    assert glob_in_root(root, "/escape/*") == glob_in_root(root, "/*")


def test_remove_through_hostile_links_never_touches_the_host(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (root / "etc/victim").symlink_to(outside)
    for pattern in ("/escape/*", "/etc/hostile", "/etc/victim"):
        for path in glob_in_root(root, pattern):
            if path != PurePosixPath("/escape") and not str(path).startswith("/usr"):
                remove_tree(root / str(path).lstrip("/"))
    assert outside.read_text() == "precious"
    assert not os.path.lexists(root / "etc/victim")  # the link itself went


def test_remove_tree_counts_and_keeps(root: Path) -> None:
    keep = frozenset({root / "usr/share/doc/a/README"})
    stats = remove_tree(root / "usr/share", keep=keep)
    assert (root / "usr/share/doc/a/README").exists()
    assert stats.entries == 0
    stats = remove_tree(root / "var/cache")
    assert not (root / "var/cache").exists()
    assert stats.bytes == len("cache") + len("h") and stats.entries == 5


def test_remove_tree_refuses_to_cross_a_mount(as_root: None, root: Path) -> None:
    target = root / "var/mnt"
    target.mkdir(parents=True)
    mounts.mount("test", target, "tmpfs")
    try:
        (target / "data").write_text("on another file system")
        with pytest.raises(MountPointError):
            remove_tree(root / "var")
        assert (target / "data").exists()
    finally:
        mounts.unmount(target)


def test_write_file_replaces_a_link_instead_of_writing_through_it(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-motd"
    outside.write_text("host")
    (root / "etc/motd").symlink_to(outside)
    write_file_in_root(root, "/etc/motd", b"image", 0o640)
    assert outside.read_text() == "host"
    assert (root / "etc/motd").read_text() == "image" and not (root / "etc/motd").is_symlink()
    assert oct((root / "etc/motd").stat().st_mode & 0o7777) == oct(0o640)
    write_file_in_root(root, "/etc/hostile/new/file", b"x", 0o600)   # /etc/hostile -> /etc (of the image)
    assert (root / "etc/new/file").read_text() == "x"


def test_walk_tree_does_not_follow_links(root: Path) -> None:
    names = {str(p.relative_to(root)) for p, _ in walk_tree(root)}
    assert "escape" in names and not any(n.startswith("escape/") for n in names)
    assert "usr/bin/bash" in names and "bin/bash" not in names
