"""Multi-architecture builds for real: this host's architecture and a foreign one (qemu-user through binfmt_misc)
from one command, one index; pushed to a TLS registry with htpasswd auth on loopback and pulled back by
architecture; the engine's per-architecture tags; a failure or an interrupt in one architecture; a missing
binfmt registration."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, Builder, Repo, docker_out, labelled_images, mkimage
from mkimage.arch import KNOWN, binfmt_problem, host, runs_natively
from registry import Ca, Registry, htpasswd_registry, make_ca, serving, write_authfile
from test_build import processes_rooted_under
from test_engines import podman, podman_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
PASSWORD = "multi-Arch-s3cret"
HOST = host().name


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return make_ca(tmp_path_factory.mktemp("multiarch-ca"))


@pytest.fixture(scope="module")
def registry(ca: Ca, tmp_path_factory: pytest.TempPathFactory, docker_daemon: None) -> Iterator[Registry]:
    with serving(htpasswd_registry(tmp_path_factory.mktemp("multiarch-registry"), ca, {"ci": PASSWORD})) as reg:
        yield reg


def report_of(build: Builder, index: int = -1) -> dict:
    return json.loads(build.report_paths[index].read_text())


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300)


def in_image(reference: str, platform: str, *command: str) -> str:
    proc = run("docker", "run", "--rm", "--network", "none", "--platform", platform, reference, *command)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(registry: Registry, authfile: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run("skopeo", *args, f"--cert-dir={registry.ca.cert_dir}", f"--authfile={authfile}")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_two_architectures_run_push_and_pull_back(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                                   registry: Registry, ca: Ca, tmp_path: Path) -> None:
    authfile = write_authfile(tmp_path / "auth.json", registry.host, "ci", PASSWORD)
    name = f"{registry.host}/base/multi"
    foreign = KNOWN[foreign_arch]
    archive, sbom = tmp_path / "multi.oci.tar", tmp_path / "sbom.spdx.json"
    result = build("--arch", f"{HOST},{foreign_arch}", "-p", "demo-machine", "--push", "--authfile", str(authfile),
                   "--registry-cert-dir", str(ca.cert_dir), "--output", f"oci-archive:{archive}",
                   "--sbom", str(sbom), name=name, config=multiarch_repo.config)
    assert result.returncode == 0, result.stderr
    report = report_of(build)
    index_digest, manifests = report["archive"]["index_digest"], report["archive"]["manifests"]
    assert list(manifests) == [HOST, foreign_arch]
    assert result.stdout == f"{name}:1.4.2@{index_digest}\n"
    arches = report["architectures"]
    assert [arches[a]["platform"] for a in (HOST, foreign_arch)] == [KNOWN[HOST].platform, foreign.platform]
    assert report["smoke_tested"] and all(arches[a]["smoke_tested"] for a in arches)
    assert build.leftovers() == []

    # the engine: NAME:TAG is this host's image, NAME:TAG-ARCH each architecture's, and each runs as itself
    tags = {f"{name}:1.4.2": HOST, f"{name}:1.4.2-{HOST}": HOST, f"{name}:1.4.2-{foreign_arch}": foreign_arch}
    assert report["engine_tags"] == tags and report["tags"] == list(tags)
    for reference, arch in tags.items():
        platform = KNOWN[arch].engine_platform
        assert in_image(reference, platform, "uname", "-m") == arch
        assert in_image(reference, platform, "cat", "/var/lib/demo-machine/uname") == arch, "the %post ran as it"
        assert docker_out("image", "inspect", "--format", "{{.Architecture}}", reference).strip() == KNOWN[arch].goarch
    assert in_image(f"{name}:1.4.2-{foreign_arch}", foreign.engine_platform, "bash", "-c", "echo $BASH_VERSION")
    labelled = docker_out("image", "ls", "-q", "--no-trunc", "--filter",
                          f"label=mkimage.build-id={arches[foreign_arch]['build_id']}").split()
    assert labelled == [arches[foreign_arch]["image_id"]], "the imported amd64-labelled image is gone"

    # the registry: the index and each manifest as built
    raw_index = skopeo(registry, authfile, "inspect", "--raw", f"docker://{name}:1.4.2").stdout
    assert sha256(raw_index.encode()) == index_digest
    listed = {m["platform"]["architecture"]: m["digest"] for m in json.loads(raw_index)["manifests"]}
    assert listed == {KNOWN[HOST].goarch: manifests[HOST], foreign.goarch: manifests[foreign_arch]}
    inspected = json.loads(skopeo(registry, authfile, "inspect", "--override-arch", foreign.goarch,
                                  f"docker://{name}:1.4.2").stdout)
    assert inspected["Architecture"] == foreign.goarch
    raw_config = skopeo(registry, authfile, "inspect", "--override-arch", foreign.goarch, "--config", "--raw",
                        f"docker://{name}:1.4.2").stdout
    foreign_image = arches[foreign_arch]["archive"]["image_id"]
    assert sha256(raw_config.encode()) == foreign_image
    for arch, digest in manifests.items():
        assert sha256(skopeo(registry, authfile, "inspect", "--raw", f"docker://{name}@{digest}").stdout.encode()) \
            == digest

    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    login = subprocess.run(["docker", "--config", str(docker_config), "login", "-u", "ci", "--password-stdin",
                            registry.host], input=PASSWORD, capture_output=True, text=True)
    assert login.returncode == 0, login.stderr
    pulled = f"{name}@{index_digest}"
    try:
        pull = run("docker", "--config", str(docker_config), "pull", "--platform", foreign.engine_platform, pulled)
        assert pull.returncode == 0, pull.stderr
        assert docker_out("image", "inspect", "--format", "{{.Id}}", pulled).strip() == foreign_image
        assert in_image(pulled, foreign.engine_platform, "uname", "-m") == foreign_arch
    finally:
        subprocess.run(["docker", "image", "rm", pulled], capture_output=True)

    # the outputs: one index, one SBOM per architecture
    with tarfile.open(archive) as tar:
        layout = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert [m["digest"] for m in layout["manifests"]] == [index_digest]
    from_archive = json.loads(run("skopeo", "inspect", "--override-arch", foreign.goarch,
                                  f"oci-archive:{archive}").stdout)
    assert from_archive["Architecture"] == foreign.goarch
    written = [str(tmp_path / f"sbom.{arch}.spdx.json") for arch in (HOST, foreign_arch)]
    assert report["sboms"] == written and report["published"] and report["not_published"] == []
    assert all(Path(path).is_file() for path in written) and not sbom.exists()
    foreign_sbom = json.loads(Path(written[1]).read_text())
    bash = next(p for p in foreign_sbom["packages"] if p["name"] == "bash")
    assert f"arch={foreign_arch}" in bash["externalRefs"][0]["referenceLocator"]

    # mkimage diff, per architecture: the same index against itself, and the report's packages
    same = mkimage("diff", "--arch", foreign_arch, str(archive), str(archive))
    assert same.returncode == 0, same.stderr
    by_report = mkimage("diff", "--arch", foreign_arch, str(build.report_paths[-1]), written[1])
    assert by_report.returncode == 0, by_report.stdout + by_report.stderr


def test_a_missing_binfmt_registration_stops_before_any_work(build: Builder, multiarch_repo: Repo) -> None:
    missing = [name for name in ("riscv64", "s390x", "ppc64le", "armv7hl")
               if not runs_natively(KNOWN[name]) and binfmt_problem(KNOWN[name]) is not None]
    if not missing:
        pytest.skip("every architecture mkimage knows is registered here")
    result = build("--arch", f"{HOST},{missing[0]}", name="mkimage-test/no-binfmt", config=multiarch_repo.config)
    assert result.returncode == 2, result.stderr
    assert f"--arch {missing[0]}: building for {missing[0]}" in result.stderr
    assert "apt-get install qemu-user-static" in result.stderr and "dnf install qemu-user-static" in result.stderr
    assert build.leftovers() == []


def test_one_architecture_failing_stops_the_build(build: Builder, multiarch_repo: Repo, foreign_arch: str) -> None:
    """demo-rpm is this host's rpm: there is none for the foreign architecture, whose install fails."""
    result = build("--arch", f"{HOST},{foreign_arch}", "-p", "demo-rpm", name="mkimage-test/one-fails",
                   config=multiarch_repo.config)
    assert result.returncode == 3, result.stderr
    assert result.error_line.startswith(f"Error: {foreign_arch}: dnf install failed"), result.stderr
    report = report_of(build)
    assert report["status"] == "failed" and report["tags"] == []
    assert docker_out("image", "ls", "-q", "mkimage-test/one-fails").split() == []
    assert not [i for i in labelled_images() for b in report["architectures"].values()
                if b["build_id"] in docker_out("image", "inspect", "--format", "{{json .Config.Labels}}", i)]
    assert build.leftovers() == []


def test_reproducible_index_and_skip_unchanged(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                               tmp_path: Path) -> None:
    arches, env = f"{HOST},{foreign_arch}", {"SOURCE_DATE_EPOCH": "1700000000"}
    first, second = tmp_path / "one.tar", tmp_path / "two.tar"
    for archive in (first, second):
        result = build("--arch", arches, "--engine", "none", "--output", f"oci-archive:{archive}", "-t", "r",
                       name="mkimage-test/repro-multi", env=env, config=multiarch_repo.config)
        assert result.returncode == 0, result.stderr
    assert first.read_bytes() == second.read_bytes(), "byte-identical index archives"
    assert report_of(build, -1)["archive"] == report_of(build, -2)["archive"]

    name = "mkimage-test/unchanged-multi"
    built = build("--arch", arches, "-t", "7", name=name, config=multiarch_repo.config)
    assert built.returncode == 0, built.stderr
    again = build("--arch", arches, "--skip-unchanged", name=name, config=multiarch_repo.config)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{name}:7\n" and report_of(build)["status"] == "unchanged"
    assert "install" not in report_of(build)["architectures"][foreign_arch]["stages"]


def test_interrupted_while_both_architectures_install(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                                      tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "-y", str(multiarch_repo.config), "--tmpdir",
                             str(build.tmpdir), "--arch", f"{HOST},{foreign_arch}", "-p", "demo-slow", "--report",
                             str(report_path), "mkimage-test/interrupted-multi"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    seen = Path(f"/proc/{proc.pid}/root") / str(build.tmpdir).lstrip("/")
    deadline = time.monotonic() + 120
    while len(list(seen.glob("mkimage-*/rootfs/var/lib/demo-slow/started"))) < 2:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the slow %post never started in both"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stdout == "" and "Error: interrupted by SIGTERM; the build was cleaned up" in stderr
    report = json.loads(report_path.read_text())
    assert report["status"] == "interrupted"
    assert processes_rooted_under(build.tmpdir) == []
    assert [p.name for p in build.tmpdir.iterdir() if not p.name.endswith(".log")] == []


def test_each_architecture_has_its_own_package_cache(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                                     tmp_path: Path) -> None:
    """--cache-dir DIR: DIR/ARCH for each, so that the architectures install side by side, each holding its own
    cache's lock (one lock for both would have one architecture wait for the other's install forever)."""
    cache = tmp_path / "cache"
    result = build("--arch", f"{HOST},{foreign_arch}", "--cache-dir", str(cache), "-t", "c",
                   name="mkimage-test/cache-multi", config=multiarch_repo.config, timeout=180)
    assert result.returncode == 0, result.stderr
    metadata = {arch: sorted((cache / arch).glob("mkimage-demo-*/repodata/repomd.xml")) for arch in (HOST, foreign_arch)}
    assert all(len(found) == 1 for found in metadata.values()), metadata
    assert metadata[HOST][0].parent.parent.name != metadata[foreign_arch][0].parent.parent.name, "repo-$basearch"
    assert (cache / foreign_arch / ".mkimage.lock").exists() and not (cache / ".mkimage.lock").exists()


def test_podman_imports_each_architecture_as_itself(build: Builder, multiarch_repo: Repo, foreign_arch: str,
                                                    podman_env: dict[str, str]) -> None:
    """podman's import takes --arch: no load needed; NAME:TAG and NAME:TAG-ARCH as with docker."""
    name = "mkimage-test/podman-multi"
    tags = {f"{name}:p": HOST, f"{name}:p-{HOST}": HOST, f"{name}:p-{foreign_arch}": foreign_arch}
    try:
        result = build("--engine", "podman", "--arch", f"{HOST},{foreign_arch}", "-p", "demo-machine", "-t", "p",
                       name=name, config=multiarch_repo.config, env={"CONTAINERS_CONF": podman_env["CONTAINERS_CONF"]})
        assert result.returncode == 0, result.stderr
        assert report_of(build)["engine_tags"] == tags
        for reference, arch in tags.items():
            local = f"localhost/{reference}"
            inspected = podman(podman_env, "image", "inspect", "--format", "{{.Architecture}}", local)
            assert inspected.stdout.strip() == KNOWN[arch].goarch
            ran = podman(podman_env, "run", "--rm", "--network", "none", local, "/bin/sh", "-c",
                         "uname -m; cat /var/lib/demo-machine/uname")
            assert ran.stdout.split() == [arch, arch], ran.stderr
    finally:
        podman(podman_env, "image", "rm", "--force", *[f"localhost/{t}" for t in tags], check=False)


def test_a_smoke_test_failing_on_one_architecture_publishes_nothing(build: Builder, multiarch_repo: Repo,
                                                                     foreign_arch: str, tmp_path: Path) -> None:
    """Every architecture's products are staged, and move into place only when all of them passed."""
    out = tmp_path / "out"
    out.mkdir()
    name = "mkimage-test/smoke-multi"
    result = build("--arch", f"{HOST},{foreign_arch}", "-t", "s", "--smoke-cmd", f"/bin/sh -c 'test $(uname -m) = {HOST}'",
                   "--output", f"oci-archive:{out / 'image.tar'}", "--sbom", str(out / "sbom.json"), name=name,
                   config=multiarch_repo.config)
    assert result.returncode == 6, result.stderr
    assert result.error_line.startswith(f"Error: {foreign_arch}: smoke test"), result.stderr
    report = report_of(build)
    assert report["tags"] == [] and report["outputs"] == [] and report["sboms"] == []
    assert sorted(report["not_published"]) == sorted([
        f"output oci-archive:{out / 'image.tar'}", f"sbom {out / f'sbom.{HOST}.json'}",
        f"sbom {out / f'sbom.{foreign_arch}.json'}", f"tag {name}:s", f"tag {name}:s-{HOST}",
        f"tag {name}:s-{foreign_arch}"])
    assert list(out.iterdir()) == [], "nothing moved into place, nothing staged left"
    assert docker_out("image", "ls", "-q", name).split() == []
    assert build.leftovers() == []
