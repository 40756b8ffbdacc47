"""The image's rpm database: where the image's own rpm looks, in a backend it reads, without side files."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import Builder, image_rpm_qa, run_in_image
from mkimage import rpmdb

# --------------------------------------------------------------------------------------- macro files
FEDORA_MACROS = """\
%_usr			/usr
%_var			/var
#	The location of the rpm database file(s).
%_dbpath		%{_usr}/lib/sysimage/rpm
%_dbpath_rebuild	%{_dbpath}
%_db_backend	      sqlite
"""
EL8_MACROS = """\
%_var			/var
%_dbpath		%{_var}/lib/rpm
%_db_backend	      bdb
"""
EL7_MACROS = """\
%_var			/var
%_dbpath		%{_var}/lib/rpm
"""
DEBIAN_MACROS = """\
%_dbpath		%(bash -c 'echo ~/.rpmdb')
%_db_backend	      sqlite
"""


def write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


@pytest.mark.parametrize("macros, dbpath, backend", [
    (FEDORA_MACROS, "/usr/lib/sysimage/rpm", "sqlite"),
    (EL8_MACROS, "/var/lib/rpm", "bdb"),
    (EL7_MACROS, "/var/lib/rpm", "bdb"),  # rpm < 4.16 has no %_db_backend: Berkeley DB
    (DEBIAN_MACROS, "/var/lib/rpm", "sqlite"),  # a shell expansion cannot be known: the default place
])
def test_target_from_the_images_macros(tmp_path: Path, macros: str, dbpath: str, backend: str) -> None:
    write(tmp_path, "/usr/lib/rpm/macros", macros)
    write(tmp_path, "/usr/bin/rpm", "#!/bin/sh\n", 0o755)
    assert rpmdb.read_target(tmp_path) == rpmdb.TargetRpm(dbpath, backend, True)


def test_later_macro_files_win_and_a_tree_without_rpm_gets_var_lib_rpm(tmp_path: Path) -> None:
    assert rpmdb.read_target(tmp_path) == rpmdb.TargetRpm("/var/lib/rpm", None, False)
    write(tmp_path, "/usr/lib/rpm/macros", EL8_MACROS)
    write(tmp_path, "/usr/lib/rpm/macros.d/macros.db", "%_db_backend sqlite\n")
    write(tmp_path, "/etc/rpm/macros.dbpath", "%_dbpath /usr/lib/sysimage/rpm\n")
    assert rpmdb.read_target(tmp_path) == rpmdb.TargetRpm("/usr/lib/sysimage/rpm", "sqlite", False)


def test_macro_files_are_read_inside_the_rootfs(tmp_path: Path) -> None:
    """A link out of the tree is re-rooted, never followed; a link loop is skipped."""
    root = tmp_path / "root"
    write(tmp_path, "/outside.macros", "%_dbpath /outside\n")
    write(root, "/usr/lib/rpm/macros", EL8_MACROS)
    (root / "etc/rpm").mkdir(parents=True)
    os.symlink("../../../outside.macros", root / "etc/rpm/macros")
    os.symlink("macros.loop", root / "etc/rpm/macros.loop")
    assert rpmdb.read_target(root).dbpath == "/var/lib/rpm"


def test_expand() -> None:
    macros = {"_usr": "/usr", "a": "%{_usr}/x", "loop": "%{loop}"}
    assert rpmdb.expand("%{a}/y", macros) == "/usr/x/y"
    assert rpmdb.expand("%_usr/z", macros) == "/usr/z"
    assert rpmdb.expand("%{?nothing}/v%{?_usr:!}", macros) == "/v!"
    assert rpmdb.expand("%{undefined}", macros) is None
    assert rpmdb.expand("%{loop}", macros) is None
    assert rpmdb.expand("%(echo /x)", macros) is None


# ----------------------------------------------------------------------------------- the database dir
def test_relocate_leaves_the_fedora_link(tmp_path: Path) -> None:
    write(tmp_path, "/.mkimage-rpmdb/rpmdb.sqlite", "db")
    db_dir = rpmdb.relocate(tmp_path, "/usr/lib/sysimage/rpm")
    assert db_dir == tmp_path / "usr/lib/sysimage/rpm" and (db_dir / "rpmdb.sqlite").read_text() == "db"
    assert os.readlink(tmp_path / "var/lib/rpm") == "../../usr/lib/sysimage/rpm"
    assert not (tmp_path / ".mkimage-rpmdb").exists()


def test_relocate_follows_the_link_the_image_ships(tmp_path: Path) -> None:
    """A target whose rpm package owns /var/lib/rpm as a link to /usr/lib/sysimage/rpm (the install wrote
    elsewhere, so the package could put its link in place)."""
    write(tmp_path, "/.mkimage-rpmdb/rpmdb.sqlite", "db")
    (tmp_path / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (tmp_path / "var/lib").mkdir(parents=True)
    os.symlink("../../usr/lib/sysimage/rpm", tmp_path / "var/lib/rpm")
    db_dir = rpmdb.relocate(tmp_path, "/var/lib/rpm")
    assert db_dir == tmp_path / "usr/lib/sysimage/rpm" and (db_dir / "rpmdb.sqlite").read_text() == "db"
    assert os.readlink(tmp_path / "var/lib/rpm") == "../../usr/lib/sysimage/rpm"


def test_relocate_into_el_place(tmp_path: Path) -> None:
    write(tmp_path, "/.mkimage-rpmdb/Packages", "bdb")
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    db_dir = rpmdb.relocate(tmp_path, "/var/lib/rpm")
    assert db_dir == tmp_path / "var/lib/rpm" and (db_dir / "Packages").read_text() == "bdb"
    assert not (tmp_path / "var/lib/rpm").is_symlink()


def test_relocate_refuses_a_file_where_the_database_goes(tmp_path: Path) -> None:
    write(tmp_path, "/.mkimage-rpmdb/rpmdb.sqlite", "db")
    write(tmp_path, "/usr/lib/sysimage/rpm", "a file")
    with pytest.raises(Exception, match="not a directory"):
        rpmdb.relocate(tmp_path, "/usr/lib/sysimage/rpm")


def test_tidy_checkpoints_sqlite_and_removes_locks(tmp_path: Path) -> None:
    """The state a killed writer leaves: rows only in the -wal file, -shm beside it, rpm's locks."""
    live, db_dir = tmp_path / "live", tmp_path / "db"
    live.mkdir()
    writer = sqlite3.connect(live / "rpmdb.sqlite")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)")
    writer.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b"x" * 1000,)] * 50)
    writer.commit()
    shutil.copytree(live, db_dir)  # while the writer holds it: a crash copy
    writer.close()
    for name in (".rpm.lock", ".dbenv.lock", "__db.001"):
        (db_dir / name).write_text("")
    assert (db_dir / "rpmdb.sqlite-wal").stat().st_size > 50_000
    removed = rpmdb.tidy(db_dir)
    assert sorted(os.listdir(db_dir)) == ["rpmdb.sqlite"], removed
    database = db_dir / "rpmdb.sqlite"
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert reader.execute("SELECT count(*) FROM Packages").fetchone() == (50,)
    reader.close()


# ---------------------------------------------------------------------------- real builds, real rpm
def layer_members(reference: str) -> dict[str, tarfile.TarInfo]:
    saved = subprocess.run(["docker", "save", reference], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = archive.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(layer)) as members:
        return {member.name.removeprefix("./"): member for member in members.getmembers()}


def assert_no_side_files(members: dict[str, tarfile.TarInfo]) -> None:
    assert not [name for name in members if name == "root/.rpmdb" or name.startswith("root/.rpmdb/")]
    assert not [name for name in members if name.startswith(".mkimage-rpmdb")], "where the install wrote it"
    side = [name for name in members if name.startswith(("var/lib/rpm/", "usr/lib/sysimage/rpm/"))
            and (name.endswith(("-wal", "-shm", ".rpm.lock", ".dbenv.lock")) or "/__db." in name)]
    assert side == []


@pytest.mark.integration
@pytest.mark.parametrize("package, dbpath", [("demo-rpm", "/var/lib/rpm"),
                                             ("demo-rpm-sysimage", "/usr/lib/sysimage/rpm")])
def test_the_images_own_rpm_lists_the_reported_packages(build: Builder, tmp_path: Path, package: str,
                                                         dbpath: str) -> None:
    report_path = tmp_path / "r.json"
    name = f"mkimage-test/rpmdb-{package}"
    run = build("-p", package, "--report", str(report_path), name=name)
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    reference = run.stdout.strip()
    listed = run_in_image(reference, "rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == report["packages"] and any(p.startswith(package + "-1.0")
                                                                         for p in report["packages"])
    assert report["rpmdb"] | {"side_files_removed": []} == {
        "path": dbpath, "backend": "sqlite", "host_backend": "sqlite", "image_backend": "sqlite",
        "image_has_rpm": True, "converted": False, "readable_by_image_rpm": True, "side_files_removed": []}
    assert f"summary rpm database: {dbpath} (sqlite), readable by the image's rpm" in run.stderr
    members = layer_members(reference)
    assert f"{dbpath.lstrip('/')}/rpmdb.sqlite" in members
    if dbpath != "/var/lib/rpm":
        link = members["var/lib/rpm"]
        assert link.issym() and link.linkname == "../../usr/lib/sysimage/rpm", "the package's, as Fedora ships it"
    assert_no_side_files(members)
    verify = run_in_image(reference, "rpm", "-V", package)  # the files match the database
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.integration
def test_a_tree_without_rpm_gets_var_lib_rpm(build: Builder, tmp_path: Path) -> None:
    """What scanners read: /var/lib/rpm, listing exactly the reported packages (read here with the host's rpm
    from a copy of the database taken out of the image)."""
    report_path = tmp_path / "r.json"
    run = build("--report", str(report_path), name="mkimage-test/rpmdb-none")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert report["rpmdb"]["path"] == "/var/lib/rpm" and report["rpmdb"]["readable_by_image_rpm"] is None
    members = layer_members(run.stdout.strip())
    assert_no_side_files(members)
    assert image_rpm_qa(run.stdout.strip(), tmp_path / "db") == report["packages"] and len(report["packages"]) == 9


@pytest.mark.integration
def test_a_backend_the_image_cannot_read_fails_unless_accepted(build: Builder, tmp_path: Path) -> None:
    """demo-rpm-bdb asks for Berkeley DB, as EL8's rpm does; this host's rpm writes sqlite and cannot write
    Berkeley DB, so the image's own rpm (this host's, configured for bdb) cannot convert it either."""
    report_path = tmp_path / "r.json"
    run = build("-p", "demo-rpm-bdb", "--report", str(report_path), name="mkimage-test/rpmdb-bdb")
    assert run.returncode == 3, run.stderr
    error = run.stderr[run.stderr.index("Error: "):].splitlines()[0]
    assert "the image's rpm reads bdb databases, but this host's rpm (rpm 4.18" in error
    assert "wrote sqlite" in error and "--allow-rpmdb-mismatch" in error and "host whose rpm writes bdb" in error
    report = json.loads(report_path.read_text())
    assert report["rpmdb"]["readable_by_image_rpm"] is False and report["image_id"] is None
    assert build.leftovers() == []

    run = build("-p", "demo-rpm-bdb", "--allow-rpmdb-mismatch", "--report", str(report_path),
                name="mkimage-test/rpmdb-bdb")
    assert run.returncode == 0, run.stderr
    assert "accepted by --allow-rpmdb-mismatch" in run.stderr
    assert "summary rpm database: /var/lib/rpm (sqlite), NOT readable by the image's rpm" in run.stderr
    report = json.loads(report_path.read_text())
    assert report["rpmdb"]["readable_by_image_rpm"] is False and report["warnings"]
