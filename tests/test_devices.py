import os
import stat
from pathlib import Path

from mkimage.devices import DEVICE_NODES, make_device_nodes

EXPECTED = {  # the table of mkimage-yum.sh
    "console": ("c", 5, 1, 0o600), "initctl": ("p", 0, 0, 0o600),
    "full": ("c", 1, 7, 0o666), "null": ("c", 1, 3, 0o666), "ptmx": ("c", 5, 2, 0o666),
    "random": ("c", 1, 8, 0o666), "tty": ("c", 5, 0, 0o666), "tty0": ("c", 4, 0, 0o666),
    "urandom": ("c", 1, 9, 0o666), "zero": ("c", 1, 5, 0o666),
}


def test_table_matches_the_script() -> None:
    table = {n.name: ("c" if n.kind == stat.S_IFCHR else "p", n.major, n.minor, n.mode) for n in DEVICE_NODES}
    assert table == EXPECTED


def test_nodes_have_exact_modes_whatever_the_umask(as_root: None, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        make_device_nodes(tmp_path / "dev")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "dev").st_mode) == 0o755
    for name, (kind, major, minor, mode) in EXPECTED.items():
        st = os.lstat(tmp_path / "dev" / name)
        assert stat.S_IMODE(st.st_mode) == mode, name
        if kind == "c":
            assert stat.S_ISCHR(st.st_mode), name
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor), name
        else:
            assert stat.S_ISFIFO(st.st_mode), name
