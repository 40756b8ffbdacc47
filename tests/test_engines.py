"""--engine podman end to end (real podman), --engine auto, --extra-tag, and the removal of the images a
rebuild replaced (issue #7) with real docker and podman."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    DEMO_VERSION, ROOT, Builder, Repo, Run, docker_out, host_mounts_mentioning, image_id, mkimage, require,
)
from test_build import processes_rooted_under, wait_for_slow_post

pytestmark = pytest.mark.integration

PODMAN_PROFILE = """[image]
env = { GREETING = 'say "hi" to $USER', EDGE = '"quoted" ' }
labels = { "org.example.team" = "platform & security", "org.example.odd" = 'a\\b "c"' }
"""


@pytest.fixture(scope="session")
def podman_env(podman_config: dict[str, str]) -> dict[str, str]:
    """podman as conftest's podman_config sets it up (this VM's work-arounds, the session's own storage)."""
    env = {**os.environ, **podman_config}
    try:
        info = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True,
                              text=True, env=env)
    except FileNotFoundError:
        require(False, "podman is not installed")
    require(info.returncode == 0, f"podman does not work: {info.stderr.strip()}")
    return env


def podman(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, check=check)


def podman_image_id(env: dict[str, str], reference: str) -> str | None:
    proc = podman(env, "image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return f"sha256:{proc.stdout.strip()}" if proc.returncode == 0 else None


@dataclass
class PodmanBuilder:
    """Builder with --engine podman; afterwards removes every podman image its builds made."""

    build: Builder
    env: dict[str, str]

    def __call__(self, *args: str, name: str | None = None) -> Run:
        settings = {name: self.env[name] for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}
        return self.build("--engine", "podman", *args, name=name, env=settings)

    def report(self, index: int = -1) -> dict:
        return json.loads(self.build.report_paths[index].read_text())

    def remove_images(self) -> None:
        for path in self.build.report_paths:
            if path.exists():
                build_id = json.loads(path.read_text()).get("build_id")
                ids = podman(self.env, "image", "ls", "-q", "--filter", f"label=mkimage.build-id={build_id}").stdout
                if ids.split():
                    podman(self.env, "image", "rm", "--force", *set(ids.split()), check=False)

    def labelled(self, build_id: str) -> list[str]:
        return podman(self.env, "image", "ls", "-q", "--filter", f"label=mkimage.build-id={build_id}").stdout.split()

    def smoke_containers(self, build_id: str = "") -> list[str]:
        return podman(self.env, "ps", "--all", "--quiet", "--filter", f"name=mkimage-smoke-{build_id}").stdout.split()


@pytest.fixture
def pbuild(build: Builder, podman_env: dict[str, str]) -> Iterator[PodmanBuilder]:
    builder = PodmanBuilder(build, podman_env)
    yield builder
    builder.remove_images()


def assert_nothing_left_in_podman(pbuild: PodmanBuilder, report: dict) -> None:
    assert pbuild.build.leftovers() == [], "no rootfs or temp dir left"
    assert pbuild.labelled(report["build_id"]) == [], "no image of the failed build left"
    assert pbuild.smoke_containers(report["build_id"]) == []
    assert host_mounts_mentioning(str(pbuild.build.tmpdir)) == []


# ------------------------------------------------------------------------------------------ podman
def test_podman_builds_tests_and_tags(pbuild: PodmanBuilder, tmp_path: Path) -> None:
    profile = tmp_path / "values.toml"
    profile.write_text(PODMAN_PROFILE)
    name = "mkimage-test/podman"
    run = pbuild("--profile", str(profile), "-p", "demo-hello", "--extra-tag", "latest",
                 "--extra-tag", "nightly-20261122", name=name)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{name}:{DEMO_VERSION}\n"
    report = pbuild.report()
    references = [f"{name}:{DEMO_VERSION}", f"{name}:latest", f"{name}:nightly-20261122"]
    assert report["engine"] == "podman" and report["tags"] == references
    assert "summary engine: podman" in run.stderr and f"summary also tagged: {name}:latest" in run.stderr
    for reference in references:
        assert podman_image_id(pbuild.env, reference) == report["image_id"], reference
    assert image_id(references[0]) is None, "nothing went to docker"
    config = json.loads(podman(pbuild.env, "image", "inspect", "--format", "{{json .Config}}", references[0]).stdout)
    assert config["Cmd"] == ["/bin/bash"]
    assert 'GREETING=say "hi" to $USER' in config["Env"] and 'EDGE="quoted" ' in config["Env"]
    assert config["Labels"]["org.example.team"] == "platform & security"
    assert config["Labels"]["org.example.odd"] == 'a\\b "c"'
    assert config["Labels"]["mkimage.build-id"] == report["build_id"]
    ran = podman(pbuild.env, "run", "--rm", "--network", "none", references[0], "hello")
    assert ran.stdout == "hello from demo\n"
    assert report["smoke_commands"] == [["echo", "success"]]
    assert pbuild.smoke_containers(report["build_id"]) == []
    assert list(pbuild.build.tmpdir.iterdir()) == []


def test_podman_rebuild_removes_the_replaced_image_but_a_failed_one_does_not(pbuild: PodmanBuilder) -> None:
    name = "mkimage-test/podman-rebuilt"
    assert pbuild(name=name).returncode == 0
    first = pbuild.report()["image_id"]
    run = pbuild(name=name)
    assert run.returncode == 0, run.stderr
    second = pbuild.report()
    assert second["replaced_images_removed"] == [first]
    assert f"summary removed replaced image: {first}" in run.stderr
    assert podman(pbuild.env, "image", "exists", first, check=False).returncode == 1, "the old image is gone"
    assert podman_image_id(pbuild.env, f"{name}:{DEMO_VERSION}") == second["image_id"]

    run = pbuild("--smoke-cmd", "false", name=name)
    assert run.returncode == 6, run.stderr
    failed = pbuild.report()
    assert podman_image_id(pbuild.env, f"{name}:{DEMO_VERSION}") == second["image_id"], "the good image stays"
    assert failed["replaced_images_removed"] == [] and failed["tags"] == []
    assert_nothing_left_in_podman(pbuild, failed)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_podman_interrupted_in_the_middle_of_an_install(pbuild: PodmanBuilder, tmp_path: Path, signum,
                                                        code) -> None:
    build = pbuild.build
    report_path = tmp_path / "r.json"
    callers_tmp = tmp_path / "callers-tmp"
    callers_tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "--engine", "podman", "-y", str(build.repo.config),
                             "--tmpdir", str(build.tmpdir), "-p", "demo-slow", "--report", str(report_path),
                             "mkimage-test/podman-interrupted"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT, env={**pbuild.env, "TMPDIR": str(callers_tmp)})
    build.report_paths.append(report_path)
    wait_for_slow_post(proc, build.tmpdir)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stdout == ""
    report = json.loads(report_path.read_text())
    assert report["status"] == "interrupted" and report["engine"] == "podman"
    assert processes_rooted_under(build.tmpdir) == []
    assert_nothing_left_in_podman(pbuild, report)
    assert list(callers_tmp.iterdir()) == []


def test_podman_interrupted_during_the_smoke_test(pbuild: PodmanBuilder, tmp_path: Path) -> None:
    """A killed `podman run --rm` client leaves its container running: cleanup removes it, and the image."""
    build = pbuild.build
    report_path = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "--engine", "podman", "-y", str(build.repo.config),
                             "--tmpdir", str(build.tmpdir), "--smoke-cmd", "sleep 600", "--report",
                             str(report_path), "mkimage-test/podman-smokeint"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT, env=pbuild.env)
    build.report_paths.append(report_path)
    deadline = time.monotonic() + 120
    while not pbuild.smoke_containers():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the smoke container never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert podman_image_id(pbuild.env, f"mkimage-test/podman-smokeint:{DEMO_VERSION}") is None
    assert_nothing_left_in_podman(pbuild, json.loads(report_path.read_text()))


# ------------------------------------------------------------------------------------ engine choice
def test_auto_picks_docker_when_its_daemon_answers(build: Builder, podman_env: dict[str, str]) -> None:
    run = build(name="mkimage-test/auto", env={"CONTAINERS_CONF": podman_env["CONTAINERS_CONF"]})
    assert run.returncode == 0, run.stderr
    report = json.loads(build.report_paths[-1].read_text())
    assert report["engine"] == "docker"
    assert image_id(f"mkimage-test/auto:{DEMO_VERSION}") == report["image_id"]
    assert podman_image_id(podman_env, f"mkimage-test/auto:{DEMO_VERSION}") is None


def test_missing_podman_is_caught_in_preflight(repo: Repo, tmp_path: Path) -> None:
    """PATH has every tool but podman."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dnf", "rpm", "tar", "docker", "chroot", "bwrap"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = mkimage("--engine", "podman", "-y", str(repo.config), "--tmpdir", str(tmpdir), "mkimage-test/nopodman",
                  env={**os.environ, "PATH": str(bin_dir)})
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == ("Error: podman not found on PATH; it is needed to import and test the image "
                                  "(--engine podman)")
    assert run.stdout == "" and list(tmpdir.iterdir()) == []


# ---------------------------------------------------------------------------- replaced, with docker
def image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def test_replaced_images_go_only_when_nothing_uses_them(build: Builder) -> None:
    """Five rebuilds of one NAME:TAG (docker); each step's old image is kept or removed for one reason."""
    name, other, container = "mkimage-test/replaced", "mkimage-test/replaced-other:keep", \
        f"mkimage-test-replaced-{os.getpid()}"
    reports: list[dict] = []

    def rebuild(*args: str) -> tuple[Run, dict]:
        run = build(*args, name=name)
        assert run.returncode == 0, run.stderr
        reports.append(json.loads(build.report_paths[-1].read_text()))
        return run, reports[-1]

    try:
        rebuild()
        docker_out("tag", reports[0]["image_id"], other)
        _, report = rebuild()
        assert report["replaced_images_removed"] == []
        assert report["replaced_images_kept"] == [{"image_id": reports[0]["image_id"],
                                                   "reason": f"still tagged {other}"}]
        assert image_id(other) == reports[0]["image_id"], "another tag keeps it"

        docker_out("create", "--name", container, reports[1]["image_id"], "true")
        run, report = rebuild()
        assert report["replaced_images_kept"] == [{"image_id": reports[1]["image_id"],
                                                   "reason": "a container uses it"}]
        assert image_exists(reports[1]["image_id"]), "a stopped container keeps it"
        assert "warning" not in run.stderr

        _, report = rebuild("--keep-replaced")
        assert report["replaced_images_removed"] == []
        assert report["replaced_images_kept"] == [{"image_id": reports[2]["image_id"], "reason": "--keep-replaced"}]
        assert image_exists(reports[2]["image_id"])

        run, report = rebuild("--extra-tag", "latest")
        assert report["replaced_images_removed"] == [reports[3]["image_id"]] and report["replaced_images_kept"] == []
        assert f"summary removed replaced image: {reports[3]['image_id']}" in run.stderr
        assert not image_exists(reports[3]["image_id"]), "nothing used it: removed"
        assert report["tags"] == [f"{name}:{DEMO_VERSION}", f"{name}:latest"]
        assert image_id(f"{name}:{DEMO_VERSION}") == image_id(f"{name}:latest") == report["image_id"]
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)
        subprocess.run(["docker", "image", "rm", other], capture_output=True)


def test_bad_extra_tag_is_caught_in_preflight(repo: Repo, tmp_path: Path) -> None:
    run = mkimage("-y", str(repo.config), "--tmpdir", str(tmp_path), "--extra-tag", "-bad", "--extra-tag", "ok",
                  "mkimage-test/badextra")
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().startswith("Error: --extra-tag: invalid tag '-bad'")
    assert list(tmp_path.iterdir()) == []
