"""Provenance labels, the inputs digest, --skip-unchanged and reproducible layers, with real dnf, rpm and docker."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, Builder, Repo, docker_out, image_layer_bytes
from mkimage import provenance


# ------------------------------------------------------------------------------------------------- unit
def test_repo_metadata_of_enabled_repos_in_dnf_and_yum_caches(tmp_path: Path) -> None:
    dnf = tmp_path / "base-0123456789abcdef/repodata/repomd.xml"
    yum = tmp_path / "x86_64/7/updates/repomd.xml"
    other = tmp_path / "other-0123456789abcdef/repodata/repomd.xml"
    for path, text in ((dnf, "a"), (yum, "b"), (other, "c")):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    found = provenance.repo_metadata(tmp_path, {"base", "updates"})
    assert set(found) == {"base", "updates"}
    assert found["base"] == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"  # sha256("a")


def test_newest_build_time_from_primary_metadata(tmp_path: Path) -> None:
    repodata = tmp_path / "base-0123456789abcdef/repodata"
    repodata.mkdir(parents=True)
    (repodata / "repomd.xml").write_text(
        '<repomd><data type="primary"><location href="repodata/p-primary.xml.gz"/></data></repomd>')
    with gzip.open(repodata / "p-primary.xml.gz", "wt") as primary:
        primary.write('<package><time file="5" build="1700000000"/></package>\n'
                      '<package><time file="9" build="1700000500"/></package>\n')
    assert provenance.newest_build_time(tmp_path, {"base"}) == 1700000500
    (repodata / "repomd.xml").write_text(
        '<repomd><data type="primary"><location href="repodata/p-primary.xml.zst"/></data></repomd>')
    assert provenance.newest_build_time(tmp_path, {"base"}) is None, "zstd: SOURCE_DATE_EPOCH is needed"


def test_digest_is_canonical() -> None:
    assert provenance.digest({"b": 1, "a": [1, 2]}) == provenance.digest({"a": [1, 2], "b": 1})
    assert provenance.digest({"a": [1, 2]}) != provenance.digest({"a": [2, 1]})


def test_matching_reference() -> None:
    refs = ["reg:5000/base/el9:9.4", "reg:5000/base/el9:latest", "reg:5000/base/el9x:9.4"]
    assert provenance.matching_reference("reg:5000/base/el9", None, refs) == "reg:5000/base/el9:9.4"
    assert provenance.matching_reference("reg:5000/base/el9", "latest", refs) == "reg:5000/base/el9:latest"
    assert provenance.matching_reference("reg:5000/base/el9", "9.5", refs) is None


# -------------------------------------------------------------------------------------------- labels
def labels_of(reference: str) -> dict[str, str]:
    return json.loads(docker_out("image", "inspect", "--format", "{{json .Config.Labels}}", reference))


@pytest.mark.integration
def test_every_image_carries_provenance_labels(build: Builder, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    started = time.time()
    run = build("--report", str(report_path), name="mkimage-test/provenance")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    labels = labels_of(run.stdout.strip())
    assert labels["org.opencontainers.image.title"] == "mkimage-test/provenance"
    assert labels["org.opencontainers.image.version"] == "1.4.2"
    created = time.mktime(time.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(created - time.timezone - started) < 120
    assert labels["mkimage.inputs"].startswith("sha256:") and len(labels["mkimage.inputs"]) == 71
    assert {k: v for k, v in labels.items() if k != "mkimage.build-id"} == report["labels"]
    assert report["inputs"] == labels["mkimage.inputs"] and list(report["inputs_repositories"]) == ["mkimage-demo"]


# ---------------------------------------------------------------------------------- --skip-unchanged
def upgraded_repo(repo: Repo, tmp_path: Path) -> Path:
    """A copy of the test repository where demo-hello is upgraded to 1.1 (built here with rpmbuild)."""
    copy = tmp_path / "upgraded"
    shutil.copytree(repo.root / "repo", copy / "repo")
    top = tmp_path / "rpmbuild"
    spec = top / "demo-hello.spec"
    spec.parent.mkdir()
    spec.write_text(textwrap.dedent("""\
        Name: demo-hello
        Version: 1.1
        Release: 1
        Summary: Prints a greeting, upgraded
        License: MIT
        BuildArch: noarch
        Requires: bash
        %description
        Upgraded.
        %install
        mkdir -p %{buildroot}/usr/bin
        printf '#!/bin/sh\\necho hello 1.1\\n' > %{buildroot}/usr/bin/hello
        chmod 755 %{buildroot}/usr/bin/hello
        %files
        /usr/bin/hello
        """))
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", f"_rpmdir {copy / 'repo'}",
                    "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm", "-bb", str(spec)],
                   check=True, capture_output=True)
    subprocess.run(["createrepo_c", "--quiet", "--update", "--groupfile", str(repo.root / "comps.xml"),
                    str(copy / "repo")], check=True, capture_output=True)
    (copy / "yum.repos.d").mkdir()
    config = copy / "yum.conf"
    config.write_text(repo.config.read_text().replace(str(repo.root), str(copy)))
    return config


@pytest.mark.integration
def test_skip_unchanged_does_nothing_until_a_package_is_upgraded(build: Builder, repo: Repo, tmp_path: Path) -> None:
    name = "mkimage-test/nightly"
    first = build("-p", "demo-hello", "-t", "nightly", name=name)
    assert first.returncode == 0, first.stderr
    first_id = docker_out("image", "inspect", "--format", "{{.Id}}", f"{name}:nightly").strip()

    report_path = tmp_path / "unchanged.json"
    again = build("-p", "demo-hello", "-t", "nightly", "--skip-unchanged", "--report", str(report_path), name=name)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{name}:nightly\n"
    report = json.loads(report_path.read_text())
    assert report["status"] == "unchanged" and "install" not in report["stages"]
    assert report["inputs"] == labels_of(f"{name}:nightly")["mkimage.inputs"]
    assert build.leftovers() == []

    config = upgraded_repo(repo, tmp_path)
    changed = build("-p", "demo-hello", "-t", "nightly", "--skip-unchanged", "--report", str(report_path),
                    name=name, config=config)
    assert changed.returncode == 0, changed.stderr
    report = json.loads(report_path.read_text())
    assert report["status"] == "success" and "demo-hello-1.1-1.noarch" in report["packages"]
    assert docker_out("image", "inspect", "--format", "{{.Id}}", f"{name}:nightly").strip() != first_id


# ----------------------------------------------------------------------------------------- reproducible
def diff_id(reference: str) -> str:
    return json.loads(docker_out("image", "inspect", "--format", "{{json .RootFS.Layers}}", reference))[0]


def diffoscope(a: bytes, b: bytes, tmp_path: Path) -> str:
    (tmp_path / "a.tar").write_bytes(a)
    (tmp_path / "b.tar").write_bytes(b)
    result = subprocess.run(["diffoscope", "--max-report-size", "20000", str(tmp_path / "a.tar"),
                             str(tmp_path / "b.tar")], capture_output=True, text=True, timeout=300)
    return result.stdout[-20000:]


@pytest.mark.integration
def test_source_date_epoch_gives_a_byte_identical_layer(build: Builder, tmp_path: Path) -> None:
    """Two builds at different times, from different --tmpdir paths, under different umasks."""
    name = "mkimage-test/reproducible"
    references = []
    for index, umask in enumerate((0o022, 0o077)):
        tmpdir = tmp_path / f"tmp-{index}-{'x' * index}"
        tmpdir.mkdir()
        report = tmp_path / f"r{index}.json"
        proc = subprocess.run([sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir", str(tmpdir),
                               "-p", "demo-rpm-sysimage", "-p", "demo-post", "--report", str(report), "-t", f"r{index}",
                               name], capture_output=True, text=True, cwd=ROOT, preexec_fn=lambda: os.umask(umask),
                              env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
        build.created.append(f"{name}:r{index}")
        build.report_paths.append(report)
        assert proc.returncode == 0, proc.stderr
        references.append(proc.stdout.strip())
        time.sleep(1.1)
    first, second = references
    assert labels_of(first)["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    if diff_id(first) != diff_id(second):
        pytest.fail("the layers differ:\n" + diffoscope(image_layer_bytes(first), image_layer_bytes(second),
                                                          tmp_path))
    assert json.loads((tmp_path / "r0.json").read_text())["reproducible"] is True


@pytest.mark.integration
def test_reproducible_takes_the_newest_build_time(build: Builder, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    run = build("--reproducible", "--report", str(report_path), name="mkimage-test/reproducible-derived")
    assert run.returncode == 0, run.stderr
    # --dbpath of the test's own: rpm -qp opens a database for its keyring (Debian's rpm would make ~/.rpmdb)
    listed = subprocess.run(["rpm", "-qp", "--dbpath", str(tmp_path / "rpmdb"), "--qf", "%{BUILDTIME}\\n",
                             *map(str, (build.repo.root / "repo").glob("*.rpm"))],
                            capture_output=True, text=True, check=True)
    newest = max(int(value) for value in listed.stdout.split())
    report = json.loads(report_path.read_text())
    assert report["created"] == newest and report["reproducible"] is True
    assert labels_of(run.stdout.strip())["org.opencontainers.image.created"] == provenance.rfc3339(newest)
