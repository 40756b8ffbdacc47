"""`mkimage diff OLD NEW`: unit tests on reports and SBOMs written here, then real images built by mkimage from
the test repository, read through docker save, docker-archive and OCI archives (skopeo), OCI layouts, and
multi-layer images made with docker build."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    CORE_MANDATORY, ROOT, Repo, Run, docker_out, image_layer, mkimage, remove_image_refs, remove_images_of_builds, require,
)
from mkimage.diff import compare, render_text
from mkimage.image_reader import LayerTree, merge_layers, resolve_in_tree
from mkimage.inventory import (
    KIND_CYCLONEDX, KIND_REPORT, KIND_SPDX, FileEntry, Inventory, Package, document_kind, load_document,
    parse_nevra, parse_purl,
)
from mkimage.ui import human_bytes

PREFIX = "mkimage-test/hdiff"
OLD_IMAGE, NEW_IMAGE = f"{PREFIX}-old:1", f"{PREFIX}-new:1"


# ------------------------------------------------------------------------------------------ helpers
def diff(*args: str, tmpdir: Path) -> Run:
    """The real CLI in a child process, its temp files under tmpdir (which must stay empty)."""
    run = mkimage("diff", *args, env={**os.environ, "TMPDIR": str(tmpdir)})
    assert list(tmpdir.iterdir()) == [], "mkimage diff left temp files behind"
    assert "Traceback" not in run.stderr
    return run


def assert_trouble(run: Run, fragment: str) -> None:
    """diff(1)'s exit 2, one line on stderr, nothing on stdout."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    assert fragment in lines[0], run.stderr


@pytest.fixture
def tmpdir(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def report(packages: list[str], **extra: object) -> dict:
    return {"format": 1, "build_id": "0123456789ab", "status": "success", "packages": packages, **extra}


def spdx(packages: list[tuple[str, str, str]]) -> dict:
    """An SPDX 2.3 document as a scanner writes one for an image: the image is the described CONTAINER
    package, the rpms carry purls."""
    image = {"SPDXID": "SPDXRef-image", "name": "example/base", "versionInfo": "9", "downloadLocation": "NOASSERTION",
             "primaryPackagePurpose": "CONTAINER",
             "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                               "referenceLocator": "pkg:oci/base@sha256%3A0123?repository_url=example/base"}]}
    rpms = [{"SPDXID": f"SPDXRef-rpm-{name}-{arch}", "name": name, "versionInfo": evr,
             "downloadLocation": "NOASSERTION", "primaryPackagePurpose": "LIBRARY",
             "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                               "referenceLocator": purl(name, evr, arch)}]}
            for name, evr, arch in packages]
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "example/base",
        "documentNamespace": "https://example.com/spdx/base-9",
        "creationInfo": {"created": "2026-11-22T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [image, *rpms],
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                           "relatedSpdxElement": "SPDXRef-image"}]
        + [{"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": p["SPDXID"]}
           for p in rpms],
    }


def cyclonedx(packages: list[tuple[str, str, str]]) -> dict:
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": {"component": {"type": "container", "name": "example/base", "version": "9",
                                   "bom-ref": "image"}},
        "components": [{"type": "library", "bom-ref": f"{name}.{arch}", "name": name, "version": evr,
                        "purl": purl(name, evr, arch)} for name, evr, arch in packages],
    }


def purl(name: str, evr: str, arch: str) -> str:
    epoch, _, version_release = evr.rpartition(":")
    return f"pkg:rpm/demo/{name}@{version_release}?arch={arch}" + (f"&epoch={epoch}" if epoch else "")


BASE = [("bash", "5.1.8-6.el9", "x86_64"), ("glibc", "2.34-60.el9", "x86_64"), ("glibc", "2.34-60.el9", "i686"),
        ("shadow-utils", "2:4.9-6.el9", "x86_64"), ("vim-minimal", "2:8.2.2637-20.el9", "x86_64")]
UPDATED = [("bash", "5.1.8-9.el9", "x86_64"), ("glibc", "2.34-60.el9", "x86_64"), ("glibc", "2.34-83.el9", "i686"),
           ("shadow-utils", "2:4.9-6.el9", "x86_64"), ("tzdata", "2024a-1.el9", "noarch")]


# ------------------------------------------------------------------------------------------ parsing
def test_nevra_and_purl_parsing() -> None:
    assert parse_nevra("demo-hello-1.0-1.noarch") == Package("demo-hello", "noarch", None, "1.0", "1")
    assert parse_nevra("gpg-pubkey-3228467c-613798eb.(none)").version == "3228467c"
    with pytest.raises(ValueError):
        parse_nevra("bash.x86_64")
    parsed = parse_purl("pkg:rpm/redhat/vim-minimal@8.2-20.el9?arch=x86_64&epoch=2&distro=rhel-9")
    assert parsed is not None and (parsed.type, parsed.name, parsed.version) == ("rpm", "vim-minimal", "8.2-20.el9")
    assert parsed.qualifiers["arch"] == "x86_64" and parsed.qualifiers["epoch"] == "2"
    assert parse_purl("bash") is None
    assert Package("vim", "x86_64", "2", "8.2", "20").evr == "2:8.2-20"
    assert Package("vim", "x86_64", "0", "8.2", "20").evr == "8.2-20"


def test_report_prefers_package_details(tmp_path: Path) -> None:
    details = [{"name": "vim-minimal", "epoch": 2, "version": "8.2", "release": "20", "arch": "x86_64"}]
    data = report(["vim-minimal-8.2-20.x86_64"], package_details=details)
    assert document_kind(data) == KIND_REPORT
    inventory = load_document(tmp_path / "r.json", data)
    assert inventory.packages == [Package("vim-minimal", "x86_64", "2", "8.2", "20")]
    assert inventory.files is None
    fallback = load_document(tmp_path / "r.json", report(["vim-minimal-8.2-20.x86_64"]))
    assert fallback.packages == [Package("vim-minimal", "x86_64", None, "8.2", "20")]


def test_sboms_skip_the_image_itself(tmp_path: Path) -> None:
    for data, kind in ((spdx(BASE), KIND_SPDX), (cyclonedx(BASE), KIND_CYCLONEDX)):
        inventory = load_document(tmp_path / "sbom.json", data)
        assert inventory.kind == kind
        assert sorted((p.name, p.evr, p.arch) for p in inventory.packages) == sorted(BASE), kind


def test_unknown_epoch_matches_any() -> None:
    """A report's NEVRA strings carry no epoch: against an SBOM that has one, the version alone decides."""
    old = Inventory("r.json", KIND_REPORT, [parse_nevra("vim-minimal-8.2.2637-20.el9.x86_64")])
    new = Inventory("s.json", KIND_SPDX, [Package("vim-minimal", "x86_64", "2", "8.2.2637", "20.el9")])
    assert compare(old, new).same


def test_compare_multilib_and_installonly() -> None:
    old = Inventory("old", KIND_SPDX, [Package("kernel", "x86_64", "0", "5.14", "1"),
                                       Package("kernel", "x86_64", "0", "5.14", "2"),
                                       Package("glibc", "x86_64", "0", "2.34", "60"),
                                       Package("glibc", "i686", "0", "2.34", "60")])
    new = Inventory("new", KIND_SPDX, [Package("kernel", "x86_64", "0", "5.14", "2"),
                                       Package("kernel", "x86_64", "0", "5.14", "3"),
                                       Package("glibc", "x86_64", "0", "2.34", "60"),
                                       Package("glibc", "i686", "0", "2.34", "61")])
    result = compare(old, new)
    assert [(c.new.name, c.new.arch, c.old.evr, c.new.evr) for c in result.changed] == \
        [("glibc", "i686", "2.34-60", "2.34-61"), ("kernel", "x86_64", "5.14-1", "5.14-3")]
    assert not result.added and not result.removed


def test_merge_layers_applies_whiteouts_and_opaque_dirs() -> None:
    def entry(kind: str = "file", link: str = "") -> FileEntry:
        return FileEntry(kind=kind, mode=0o755 if kind == "dir" else 0o644, uid=0, gid=0, link=link)

    lower = LayerTree(entries={"etc": entry("dir"), "etc/app": entry("dir"), "etc/app/a.conf": entry(),
                               "etc/app/sub": entry("dir"), "etc/app/sub/b": entry(), "usr": entry("dir"),
                               "usr/bin": entry("dir"), "usr/bin/hello": entry(), "usr/bin/keep": entry(),
                               "var": entry("dir"), "var/lib": entry("dir"),
                               "var/lib/rpm": entry("symlink", "../../usr/lib/sysimage/rpm")},
                      rpmdb_copies={"var/lib/rpm/x": Path("/nowhere")})
    upper = LayerTree(entries={"etc/app": entry("dir"), "etc/app/c.conf": entry()},
                      whiteouts={"usr/bin/hello"}, opaque_dirs={"etc/app"})
    merged = merge_layers([lower, upper])
    assert sorted(merged.entries) == ["etc", "etc/app", "etc/app/c.conf", "usr", "usr/bin", "usr/bin/keep",
                                      "var", "var/lib", "var/lib/rpm"]
    assert resolve_in_tree(merged.entries, "var/lib/rpm") == "usr/lib/sysimage/rpm"
    assert resolve_in_tree(merged.entries, "/var/lib/rpm/../../../../etc") == "etc"


def test_text_for_a_change_mail(tmp_path: Path) -> None:
    old = load_document(tmp_path / "old.json", spdx(BASE))
    new = load_document(tmp_path / "new.json", cyclonedx(UPDATED))
    assert render_text(compare(old, new)).replace("→", "->") == (
        f"old: {tmp_path}/old.json (SPDX SBOM)\n"
        f"new: {tmp_path}/new.json (CycloneDX SBOM)\n"
        "packages: 1 added, 1 removed, 2 changed (5 -> 5)\n"
        "\n"
        "packages added (1):\n"
        "  tzdata 2024a-1.el9\n"
        "\n"
        "packages removed (1):\n"
        "  vim-minimal 2:8.2.2637-20.el9\n"
        "\n"
        "packages changed (2):\n"
        "  bash 5.1.8-6.el9 -> 5.1.8-9.el9\n"
        "  glibc.i686 2.34-60.el9 -> 2.34-83.el9\n"
    )


# ------------------------------------------------------------------------------------------ CLI on documents
def test_cli_on_sboms_and_reports(tmp_path: Path, tmpdir: Path) -> None:
    old = write_json(tmp_path / "old.spdx.json", spdx(BASE))
    new = write_json(tmp_path / "new.cdx.json", cyclonedx(UPDATED))
    different = diff(str(old), str(new), tmpdir=tmpdir)
    assert different.returncode == 1, different.stderr
    assert "packages: 1 added, 1 removed, 2 changed" in different.stdout and different.stderr == ""
    as_json = json.loads(diff("--json", str(old), str(new), tmpdir=tmpdir).stdout)
    assert as_json["same"] is False and as_json["files"] is None
    assert as_json["packages"]["added"] == [{"name": "tzdata", "arch": "noarch", "evr": "2024a-1.el9"}]
    assert as_json["packages"]["changed"] == [
        {"name": "bash", "arch": "x86_64", "old": "5.1.8-6.el9", "new": "5.1.8-9.el9"},
        {"name": "glibc", "arch": "i686", "old": "2.34-60.el9", "new": "2.34-83.el9"}]
    nevras = [f"{n}-{evr.rpartition(':')[2]}.{arch}" for n, evr, arch in BASE]
    same = diff(str(write_json(tmp_path / "r.json", report(nevras))), str(old), tmpdir=tmpdir)
    assert same.returncode == 0 and same.stdout.endswith("no differences\n"), same.stdout


def test_cli_trouble_is_one_line_and_exit_2(tmp_path: Path, tmpdir: Path) -> None:
    sbom = write_json(tmp_path / "s.json", spdx(BASE))
    assert_trouble(diff("--files", str(sbom), str(sbom), tmpdir=tmpdir),
                   "--files needs images or image archives, but OLD")
    assert_trouble(diff(str(tmp_path / "missing.json"), str(sbom), tmpdir=tmpdir), "missing.json: no such file")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_trouble(diff(str(tmp_path / "notes.txt"), str(sbom), tmpdir=tmpdir), "unknown format")
    write_json(tmp_path / "other.json", {"hello": 1})
    assert_trouble(diff(str(tmp_path / "other.json"), str(sbom), tmpdir=tmpdir), "not an mkimage report")
    (tmp_path / "broken.json").write_text('{"spdxVersion": ')
    assert_trouble(diff(str(tmp_path / "broken.json"), str(sbom), tmpdir=tmpdir), "not valid JSON")
    (tmp_path / "fake.tar").write_bytes(b"\x1f\x8b" + b"\0" * 100)
    assert_trouble(diff(str(tmp_path / "fake.tar"), str(sbom), tmpdir=tmpdir), "not a readable image archive")
    assert_trouble(diff(str(tmp_path), str(sbom), tmpdir=tmpdir), "not an OCI image layout")
    usage = diff(str(sbom), tmpdir=tmpdir)
    assert usage.returncode == 2 and "Missing argument 'NEW'" in usage.stderr


def test_help_and_an_image_named_diff(tmp_path: Path) -> None:
    helped = mkimage("diff", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: mkimage diff [OPTIONS] OLD NEW")
    assert "0 the same, 1 different, 2 trouble" in helped.stdout
    assert "mkimage -y CONF diff" in mkimage("--help").stdout
    config = tmp_path / "yum.conf"
    config.write_text("[main]\n[demo]\nbaseurl=file:///nonexistent\n")
    shown = mkimage("-y", str(config), "--show-profile", "diff")  # the build command, not `diff`
    assert shown.returncode == 0 and json.loads(shown.stdout)["applied"] == ["minimal"], shown.stderr


# ------------------------------------------------------------------------------------------ real images
@pytest.fixture(scope="module")
def images(repo: Repo, docker_daemon: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two images built by mkimage (the new one with demo-hello), and their reports."""
    work = tmp_path_factory.mktemp("diff-images")
    reports = {"old": work / "old.json", "new": work / "new.json"}
    try:
        for key, reference, extra in (("old", OLD_IMAGE, ()), ("new", NEW_IMAGE, ("-p", "demo-hello"))):
            name, tag = reference.split(":")
            run = mkimage("-q", "-y", str(repo.config), "--tmpdir", str(work), "--report", str(reports[key]),
                          "-t", tag, *extra, name)
            assert run.returncode == 0, run.stderr
        yield reports
    finally:
        for reference in (OLD_IMAGE, NEW_IMAGE):
            remove_image_refs(reference.split(":")[0])
        remove_images_of_builds([json.loads(path.read_text()).get("build_id") for path in reports.values()
                                 if path.exists()])


@pytest.fixture(scope="module")
def layered(images: dict[str, Path]) -> Iterator[dict[str, str]]:
    """Images with a second layer (docker build): the rpm database moved to /usr/lib/sysimage/rpm with a
    /var/lib/rpm symlink (Fedora), moved to /var/lib/rpm (EL), or removed; /usr/bin/hello deleted (a whiteout)
    and /etc/sysconfig replaced (an opaque dir)."""
    gather = ("src=$(for d in /usr/lib/sysimage/rpm /var/lib/rpm /root/.rpmdb; do [ -f $d/rpmdb.sqlite ] && echo $d"
              " && break; done) && busybox cp -a $src /db && rm -rf /usr/lib/sysimage/rpm /var/lib/rpm /root/.rpmdb")
    moves = {
        "sysimage": "mkdir -p /usr/lib/sysimage && busybox mv /db /usr/lib/sysimage/rpm"
                    " && busybox ln -s ../../usr/lib/sysimage/rpm /var/lib/rpm",
        "varlib": "busybox mv /db /var/lib/rpm",
        "nodb": "rm -rf /db",
    }
    built = {}
    try:
        for key, move in moves.items():
            reference = f"{PREFIX}-{key}:1"
            dockerfile = (f"FROM {NEW_IMAGE}\nRUN rm /usr/bin/hello && rm -rf /etc/sysconfig && mkdir /etc/sysconfig"
                          f" && echo x > /etc/sysconfig/new && {gather} && {move}\n")
            proc = subprocess.run(["docker", "build", "-q", "-t", reference, "-"], input=dockerfile, text=True,
                                  capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
            assert proc.returncode == 0, proc.stderr
            built[key] = reference
        yield built
    finally:
        for reference in built.values():
            remove_image_refs(reference.split(":")[0])


@pytest.mark.integration
def test_a_package_added(images: dict[str, Path], tmpdir: Path) -> None:
    run = diff(OLD_IMAGE, NEW_IMAGE, tmpdir=tmpdir)
    assert run.returncode == 1, run.stderr
    assert run.stdout.replace("→", "->") == (
        f"old: {OLD_IMAGE} (docker image)\nnew: {NEW_IMAGE} (docker image)\n"
        f"packages: 1 added, 0 removed, 0 changed ({len(CORE_MANDATORY)} -> {len(CORE_MANDATORY) + 1})\n"
        "\npackages added (1):\n  demo-hello 1.0-1\n")
    assert run.stderr == ""


@pytest.mark.integration
def test_same_image_twice(images: dict[str, Path], tmpdir: Path) -> None:
    run = diff("--files", NEW_IMAGE, NEW_IMAGE, tmpdir=tmpdir)
    assert run.returncode == 0, run.stderr
    assert re.search(r"\nfiles: 0 added, 0 removed, 0 changed \((\d+) → \1\)\nno differences\n$", run.stdout), \
        run.stdout


@pytest.mark.integration
def test_files_added_with_size_and_json(images: dict[str, Path], tmpdir: Path) -> None:
    hello = image_layer(NEW_IMAGE, read=["usr/bin/hello"])
    size = hello["usr/bin/hello"].size
    text = diff("--files", OLD_IMAGE, NEW_IMAGE, tmpdir=tmpdir)
    assert text.returncode == 1, text.stderr
    # (other helpers' tests may put a yum var on this host, which a build copies: more files may come)
    added_section = text.stdout.split("\nfiles added (")[1].split("\n\n")[0]
    assert f"\n  /usr/bin/hello  {human_bytes(size)}\n" in added_section + "\n"
    changed_section = text.stdout.split("\nfiles changed (")[1]
    assert "/rpmdb.sqlite  " in changed_section, "the rpm database changed (wherever this build put it)"
    data = json.loads(diff("--files", "--json", OLD_IMAGE, NEW_IMAGE, tmpdir=tmpdir).stdout)
    assert data["same"] is False
    assert data["packages"] == {"added": [{"name": "demo-hello", "arch": "noarch", "evr": "1.0-1"}],
                                "removed": [], "changed": []}
    assert {"path": "/usr/bin/hello", "type": "file", "size": size, "mode": "0755", "uid": 0, "gid": 0,
            "sha256": hashlib.sha256(hello.data["usr/bin/hello"]).hexdigest()} in data["files"]["added"]


@pytest.mark.integration
def test_reports_and_archives_as_input(images: dict[str, Path], tmp_path: Path, tmpdir: Path) -> None:
    require(shutil.which("skopeo") is not None, "skopeo is missing")
    docker_archive, oci_archive, layout = tmp_path / "old.docker.tar", tmp_path / "new.oci.tar", tmp_path / "layout"
    docker_out("save", "-o", str(docker_archive), OLD_IMAGE)
    for destination in (f"oci-archive:{oci_archive}", f"oci:{layout}"):
        subprocess.run(["skopeo", "copy", "-q", f"docker-daemon:{NEW_IMAGE}", destination], check=True)

    from_archives = diff(str(docker_archive), str(oci_archive), tmpdir=tmpdir)
    assert from_archives.returncode == 1 and "packages added (1):\n  demo-hello 1.0-1\n" in from_archives.stdout
    for same_as_new in (oci_archive, layout):  # the same image, another format: files and packages identical
        run = diff("--files", str(same_as_new), NEW_IMAGE, tmpdir=tmpdir)
        assert run.returncode == 0, (run.stdout, run.stderr)
    from_report = diff(str(images["old"]), NEW_IMAGE, tmpdir=tmpdir)
    assert from_report.returncode == 1 and "\n  demo-hello 1.0-1\n" in from_report.stdout
    assert "(mkimage report)" in from_report.stdout
    assert diff(str(images["new"]), str(docker_archive), tmpdir=tmpdir).stdout.endswith(
        "packages removed (1):\n  demo-hello 1.0-1\n")


@pytest.mark.integration
@pytest.mark.parametrize("location", ["sysimage", "varlib"])
def test_layered_images_and_rpmdb_locations(layered: dict[str, str], location: str, tmpdir: Path) -> None:
    run = diff("--files", "--json", NEW_IMAGE, layered[location], tmpdir=tmpdir)
    assert run.returncode == 1, run.stderr
    data = json.loads(run.stdout)
    # every other location was emptied: the same packages prove the database was found where it was moved
    assert data["packages"] == {"added": [], "removed": [], "changed": []}
    removed = {item["path"] for item in data["files"]["removed"]}
    added = {item["path"] for item in data["files"]["added"]}
    assert {"/usr/bin/hello", "/etc/sysconfig/network"} <= removed
    assert "/etc/sysconfig/new" in added
    against_old = diff(OLD_IMAGE, layered[location], tmpdir=tmpdir)
    assert "packages added (1):\n  demo-hello 1.0-1\n" in against_old.stdout


@pytest.mark.integration
def test_unknown_image_and_image_without_rpmdb(layered: dict[str, str], tmpdir: Path) -> None:
    assert_trouble(diff(f"{PREFIX}-missing:1", NEW_IMAGE, tmpdir=tmpdir),
                   f"{PREFIX}-missing:1: no such file, and no local image of that name in docker or podman")
    assert_trouble(diff(NEW_IMAGE, layered["nodb"], tmpdir=tmpdir), "no rpm database in the image")


@pytest.mark.integration
def test_sigterm_mid_read_cleans_up(images: dict[str, Path], tmp_path: Path, tmpdir: Path) -> None:
    """An archive from a pipe that stops half-way: SIGTERM then gives exit 143, one line, no temp files."""
    archive = tmp_path / "new.docker.tar"
    docker_out("save", "-o", str(archive), NEW_IMAGE)
    fifo = tmp_path / "slow.tar"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "diff", str(fifo), NEW_IMAGE], cwd=ROOT, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(tmpdir)})
    try:
        with open(fifo, "wb") as writer:  # returns once the reader opened it
            data = archive.read_bytes()
            writer.write(data[:len(data) // 2])  # more than a pipe holds: the reader is past its set-up
            writer.flush()
            assert list(tmpdir.iterdir()), "the reader has its temp dir while it reads"
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert stdout == "" and stderr == "Error: interrupted by SIGTERM\n"
    assert list(tmpdir.iterdir()) == []


@pytest.mark.integration
def test_an_image_only_podman_has(images: dict[str, Path], tmp_path: Path, tmpdir: Path) -> None:
    require(shutil.which("podman") is not None and shutil.which("skopeo") is not None, "podman or skopeo missing")
    archive, reference = tmp_path / "new.docker.tar", f"localhost/{PREFIX}-podman:1"
    docker_out("save", "-o", str(archive), NEW_IMAGE)
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"containers-storage:{reference}"],
                   check=True)
    try:
        run = diff("--files", reference, NEW_IMAGE, tmpdir=tmpdir)
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert run.stdout.startswith(f"old: {reference} (podman image)\n")
    finally:
        subprocess.run(["podman", "image", "rm", reference], capture_output=True)
