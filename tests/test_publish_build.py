"""The last mile for real: --output without an engine, --push of a built image to a TLS registry with htpasswd
auth on loopback, and a reproducible build delivered to the engine by load."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Builder, docker_out
from registry import Ca, Registry, htpasswd_registry, make_ca, serving, write_authfile

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return make_ca(tmp_path_factory.mktemp("publish-ca"))


@pytest.fixture(scope="module")
def registry(ca: Ca, tmp_path_factory: pytest.TempPathFactory, docker_daemon: None) -> Iterator[Registry]:
    with serving(htpasswd_registry(tmp_path_factory.mktemp("publish-registry"), ca, {"ci": PASSWORD})) as reg:
        yield reg


def test_push_a_built_image_and_pull_it_back_by_digest(build: Builder, registry: Registry, ca: Ca,
                                                         tmp_path: Path) -> None:
    authfile = write_authfile(tmp_path / "auth.json", registry.host, "ci", PASSWORD)
    name = f"{registry.host}/base/demo"
    report_path = tmp_path / "r.json"
    run = build("-t", "1.4.2", "--extra-tag", "nightly", "--push", "--authfile", str(authfile),
                "--registry-cert-dir", str(ca.cert_dir), "--report", str(report_path), name=name)
    build.created.append(f"{name}:nightly")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    digest = report["archive"]["manifest_digest"]
    assert run.stdout.splitlines() == [f"{name}:1.4.2@{digest}", f"{name}:nightly@{digest}"]
    assert report["pushed"] == run.stdout.splitlines() and report["smoke_tested"] is True
    assert PASSWORD not in run.stderr and PASSWORD not in report_path.read_text()
    assert registry.digest(f"{name}:nightly", authfile) == digest

    pulled = tmp_path / "pulled"
    subprocess.run(["skopeo", "copy", "--authfile", str(authfile), "--src-cert-dir", str(ca.cert_dir),
                    f"docker://{name}@{digest}", f"oci:{pulled}:x"], check=True, capture_output=True)
    index = json.loads((pulled / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{pulled}:x"], check=True,
                                       capture_output=True, text=True).stdout)
    assert config["rootfs"]["diff_ids"] == [report["archive"]["layer"]["diff_id"]]
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    subprocess.run(["docker", "--config", str(docker_config), "login", "-u", "ci", "--password-stdin",
                    registry.host], input=PASSWORD, check=True, capture_output=True, text=True)
    try:
        subprocess.run(["docker", "--config", str(docker_config), "pull", f"{name}@{digest}"], check=True,
                       capture_output=True)
        ran = subprocess.run(["docker", "run", "--rm", "--network", "none", f"{name}@{digest}", "cat",
                              "/etc/demo-release"], capture_output=True, text=True)
        assert ran.returncode == 0 and "Demo Linux release 1.4.2" in ran.stdout, ran.stderr
    finally:
        subprocess.run(["docker", "image", "rm", f"{name}@{digest}"], capture_output=True)


def test_skip_unchanged_asks_the_registry(build: Builder, registry: Registry, ca: Ca, tmp_path: Path) -> None:
    authfile = write_authfile(tmp_path / "auth.json", registry.host, "ci", PASSWORD)
    name = f"{registry.host}/base/nightly"
    push = ("-t", "9", "--push", "--authfile", str(authfile), "--registry-cert-dir", str(ca.cert_dir))
    first = build(*push, name=name)
    assert first.returncode == 0, first.stderr
    pushed = registry.digest(f"{name}:9", authfile)
    report_path = tmp_path / "again.json"
    again = build(*push, "--skip-unchanged", "--report", str(report_path), name=name)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{name}:9\n"
    assert json.loads(report_path.read_text())["status"] == "unchanged"
    assert registry.digest(f"{name}:9", authfile) == pushed
    untagged = build("--push", "--skip-unchanged", "--authfile", str(authfile), name=name)
    assert untagged.returncode == 2 and "give the tag" in untagged.stderr


def test_a_failed_push_has_its_own_exit_code(build: Builder, registry: Registry, ca: Ca, tmp_path: Path) -> None:
    authfile = write_authfile(tmp_path / "auth.json", registry.host, "ci", "wrong-password")
    run = build("-t", "x", "--push", "--authfile", str(authfile), "--registry-cert-dir", str(ca.cert_dir),
                name=f"{registry.host}/base/denied")
    assert run.returncode == 7, run.stderr
    assert run.stdout == "" and "auth" in run.error_line


def shims(tmp_path: Path) -> tuple[Path, Path]:
    """docker and podman that only note they were called: engines that are there but must not be touched."""
    directory, called = tmp_path / "shims", tmp_path / "called"
    directory.mkdir()
    for tool in ("docker", "podman"):
        shim = directory / tool
        shim.write_text(f"#!/bin/sh\necho {tool} >> {called}\nexit 1\n")
        shim.chmod(0o755)
    return directory, called


def test_engine_none_writes_archives_that_real_readers_load(build: Builder, tmp_path: Path) -> None:
    directory, called = shims(tmp_path)
    archive, docker_archive, layout = tmp_path / "img.tar", tmp_path / "docker.tar", tmp_path / "layout"
    report_path = tmp_path / "r.json"
    run = build("--engine", "none", "--output", f"oci-archive:{archive}", "--output", f"docker-archive:{docker_archive}",
                "--output", f"oci:{layout}", "--report", str(report_path), name="mkimage-test/no-engine",
                env={"PATH": f"{directory}:{os.environ['PATH']}"})
    assert run.returncode == 0, run.stderr
    assert not called.exists(), "no engine was asked"
    assert "no smoke test ran" in run.stderr
    report = json.loads(report_path.read_text())
    assert report["smoke_tested"] is False and report["engine"] is None
    inspected = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], check=True,
                                          capture_output=True, text=True).stdout)
    assert inspected["layers"][0]["digest"] == report["archive"]["layer"]["digest"]
    loaded = docker_out("load", "-i", str(docker_archive))
    assert report["archive"]["image_id"] in loaded or "mkimage-test/no-engine:1.4.2" in loaded
    try:
        assert docker_out("image", "inspect", "--format", "{{.Id}}", "mkimage-test/no-engine:1.4.2").strip() == \
            report["archive"]["image_id"]
        ran = subprocess.run(["docker", "run", "--rm", "--network", "none", "mkimage-test/no-engine:1.4.2",
                              "cat", "/etc/demo-release"], capture_output=True, text=True)
        assert "Demo Linux release" in ran.stdout, ran.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "mkimage-test/no-engine:1.4.2"], capture_output=True)
    assert json.loads((layout / "index.json").read_text())["manifests"][0]["digest"] == \
        report["archive"]["manifest_digest"]


def test_reproducible_builds_give_the_same_image_id_and_manifest(build: Builder, tmp_path: Path) -> None:
    """Delivered to docker by load of mkimage's own archive: docker import would stamp the time."""
    reports = []
    for index in range(2):
        report_path = tmp_path / f"r{index}.json"
        run = build("-t", "repro", "--output", f"oci-archive:{tmp_path / f'{index}.tar'}", "--report",
                    str(report_path), name="mkimage-test/repro-load", env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert run.returncode == 0, run.stderr
        reports.append(json.loads(report_path.read_text()))
    first, second = reports
    assert first["image_id"] == second["image_id"] == first["archive"]["image_id"]
    assert first["archive"]["manifest_digest"] == second["archive"]["manifest_digest"]
    assert (tmp_path / "0.tar").read_bytes() == (tmp_path / "1.tar").read_bytes()
    assert docker_out("image", "inspect", "--format", "{{.Id}}", "mkimage-test/repro-load:repro").strip() == \
        first["image_id"]
    assert docker_out("image", "inspect", "--format", "{{.Created}}", "mkimage-test/repro-load:repro").strip() \
        .startswith("2023-11-14T22:13:20")
