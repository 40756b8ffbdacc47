"""Never hand over what failed: on every failure path the earlier outputs, tags, registry tags and SBOMs stay as
they were, cleanup finishes, and the exit code and the report say what was published.

"Full" is a real 1 MiB tmpfs, filled up, mounted in the test's own directory; device nodes and FIFOs are real
ones made there too."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import ROOT, Builder, Run, docker_out, image_id
from registry import Ca, Registry, htpasswd_registry, make_ca, serving, write_authfile
from test_build import assert_nothing_left

pytestmark = pytest.mark.integration
PASSWORD = "fail-Pa55word"


# ------------------------------------------------------------------------------------------------ fixtures
def fill(directory: Path) -> None:
    """Fill the file system of directory until it has no byte left."""
    for name, chunk in ((".filler", b"\0" * 65536), (".filler-tail", b"\0")):
        with open(directory / name, "wb", buffering=0) as filler:
            try:
                while filler.write(chunk):
                    pass
            except OSError:
                pass


@pytest.fixture
def full_fs(tmp_path: Path, as_root: None) -> Iterator[Path]:
    """A 1 MiB tmpfs in the test's own dir, filled up (a dir 'tmp' made in it before)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "mkimage-test-full", str(mount_point)],
                   check=True)
    try:
        (mount_point / "tmp").mkdir()
        fill(mount_point)
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def small_fs(tmp_path: Path, size: str) -> Path:
    mount_point = tmp_path / f"small-{size}"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "mkimage-test-small", str(mount_point)],
                   check=True)
    return mount_point


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return make_ca(tmp_path_factory.mktemp("failure-ca"))


@pytest.fixture(scope="module")
def registry(ca: Ca, tmp_path_factory: pytest.TempPathFactory, docker_daemon: None) -> Iterator[Registry]:
    with serving(htpasswd_registry(tmp_path_factory.mktemp("failure-registry"), ca, {"ci": PASSWORD})) as reg:
        yield reg


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under directory: (mode, a file's mtime_ns and the sha256 of its bytes)."""
    entries = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        if path.is_file():
            entries[str(path.relative_to(directory))] = (st.st_mode, st.st_mtime_ns,
                                                         hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            entries[str(path.relative_to(directory))] = (st.st_mode, 0, "")
    return entries


class Published:
    """What a NAME:TAG build has published: its outputs, SBOM, local tag and registry tag."""

    def __init__(self, build: Builder, registry: Registry, ca: Ca, tmp_path: Path, name: str) -> None:
        self.build, self.registry, self.name = build, registry, f"{registry.host}/{name}"
        self.authfile = write_authfile(tmp_path / "auth.json", registry.host, "ci", PASSWORD)
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.reference = f"{self.name}:1"
        self.args = ("-t", "1", "--push", "--authfile", str(self.authfile), "--registry-cert-dir", str(ca.cert_dir),
                     "--output", f"oci-archive:{self.out / 'good.tar'}",
                     "--output", f"docker-archive:{self.out / 'good-docker.tar'}",
                     "--output", f"oci:{self.out / 'layout'}", "--sbom", str(self.out / "good.spdx.json"))

    def first_build(self) -> None:
        run = self.build(*self.args, name=self.name)
        assert run.returncode == 0, run.stderr
        self.before = self.state()
        assert self.before["image"] is not None and self.before["registry"] is not None

    def state(self) -> dict:
        return {"files": snapshot(self.out), "image": image_id(self.reference),
                "registry": self.registry.digest(self.reference, self.authfile)}

    def assert_unchanged(self) -> None:
        after = self.state()
        assert after["files"] == self.before["files"], "every earlier output byte for byte as it was"
        assert after["image"] == self.before["image"], "the tag still on the earlier image"
        assert after["registry"] == self.before["registry"], "the registry's tag as it was"
        assert docker_out("image", "inspect", "--format", "{{.Id}}", self.before["image"]).strip() == \
            self.before["image"], "the earlier image was not removed"

    def failing_build(self, tmp_path: Path, *extra: str, report: Path | None = None) -> tuple[Run, dict | None]:
        report = report or tmp_path / "failed.json"
        run = self.build(*self.args, *extra, "--report", str(report), name=self.name)
        return run, json.loads(report.read_text()) if report.exists() else None


Publishing = Callable[[str], Published]


@pytest.fixture
def publishing(build: Builder, registry: Registry, ca: Ca, tmp_path: Path) -> Iterator[Publishing]:
    """Published(...) for a name in the test registry; its local tag removed afterwards (conftest's clean-up
    splits names at the first ':', which a registry's port defeats)."""
    made: list[Published] = []

    def make(name: str) -> Published:
        made.append(Published(build, registry, ca, tmp_path, name))
        return made[-1]

    yield make
    for published in made:
        subprocess.run(["docker", "image", "rm", published.reference], capture_output=True)


def assert_nothing_published(report: dict) -> None:
    assert report["outputs"] == [] and report["sboms"] == [] and report["tags"] == [] and report["pushed"] == []
    assert report["replaced_images_removed"] == []
    assert report["published"] is False
    assert any(item.startswith("output oci-archive:") for item in report["not_published"])
    assert any(item.startswith("tag ") for item in report["not_published"])
    assert any(item.startswith("sbom ") for item in report["not_published"])


# ---------------------------------------------------------------------- 1. a failed smoke test publishes nothing
def test_a_failed_smoke_test_leaves_outputs_tag_and_registry_as_they_were(build: Builder, publishing: Publishing,
                                                                          tmp_path: Path) -> None:
    published = publishing("fail/smoke")
    published.first_build()
    run, report = published.failing_build(tmp_path, "--smoke-cmd", "/bin/false")
    assert run.returncode == 6, run.stderr
    assert run.stdout == ""
    published.assert_unchanged()
    assert report is not None and report["status"] == "failed" and report["exit_code"] == 6
    assert_nothing_published(report)
    assert_nothing_left(build, report)


# --------------------------------------------------------------- 2. failures after tagging move nothing either
def test_an_sbom_on_a_full_file_system_moves_no_tag(build: Builder, publishing: Publishing, tmp_path: Path,
                                                     full_fs: Path) -> None:
    published = publishing("fail/sbom")
    published.first_build()
    run, report = published.failing_build(tmp_path, "--sbom", f"cyclonedx:{full_fs / 'image.cdx.json'}")
    assert run.returncode == 5, run.stderr
    assert f"cannot write the SBOM {full_fs / 'image.cdx.json'}" in run.error_line
    assert "No space left on device" in run.error_line
    published.assert_unchanged()
    assert report is not None and report["exit_code"] == 5
    assert_nothing_published(report)
    assert sorted(p.name for p in full_fs.iterdir()) == [".filler", ".filler-tail", "tmp"], "no temp file left"
    assert_nothing_left(build, report)


def test_a_report_on_a_full_file_system_moves_no_tag(build: Builder, publishing: Publishing, tmp_path: Path,
                                                      full_fs: Path) -> None:
    published = publishing("fail/report")
    published.first_build()
    report_path = full_fs / "report.json"
    run, report = published.failing_build(tmp_path, report=report_path)
    assert run.returncode == 5, run.stderr
    assert run.stdout == ""
    assert f"cannot write the report {report_path}" in run.error_line and "No space left" in run.error_line
    assert "internal error" not in run.stderr
    published.assert_unchanged()
    assert report is None
    assert sorted(p.name for p in full_fs.iterdir()) == [".filler", ".filler-tail", "tmp"], "no temp file left"
    assert build.leftovers() == []


def test_a_failed_push_puts_the_local_tag_and_the_outputs_back(build: Builder, registry: Registry,
                                                               publishing: Publishing, tmp_path: Path) -> None:
    published = publishing("fail/push")
    published.first_build()
    write_authfile(published.authfile, registry.host, "ci", "wrong-password")
    run, report = published.failing_build(tmp_path, "--extra-tag", "nightly", "--extra-tag", "weekly")
    write_authfile(published.authfile, registry.host, "ci", PASSWORD)
    assert run.returncode == 7, run.stderr
    published.assert_unchanged()
    assert image_id(f"{published.name}:nightly") is None and image_id(f"{published.name}:weekly") is None, \
        "tags the failed build added are gone again"
    assert report is not None and report["exit_code"] == 7 and report["error_kind"] == "push-failed"
    assert_nothing_published(report)
    assert_nothing_left(build, report)


def test_a_successful_build_reports_everything_published(build: Builder, publishing: Publishing,
                                                         tmp_path: Path) -> None:
    published = publishing("fail/none")
    published.first_build()
    report_path = tmp_path / "ok.json"
    run = build(*published.args, "--report", str(report_path), name=published.name)
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert report["published"] is True and report["not_published"] == []
    assert report["outputs"] == [f"oci-archive:{published.out / 'good.tar'}",
                                 f"docker-archive:{published.out / 'good-docker.tar'}",
                                 f"oci:{published.out / 'layout'}"]
    assert report["sboms"] == [str(published.out / "good.spdx.json")]
    assert report["tags"] == [published.reference] and len(report["pushed"]) == 1
    assert report["replaced_images_removed"] == [published.before["image"]]
    assert sorted(p.name for p in published.out.iterdir()) == ["good-docker.tar", "good.spdx.json", "good.tar",
                                                                 "layout"], "no temp or backup left"


# ------------------------------------------------------------------- 3. a full disk under the log or the tmpdir
def test_a_full_tmpdir_is_an_install_failure_and_cleanup_finishes(build: Builder, full_fs: Path) -> None:
    build.tmpdir = full_fs / "tmp"
    report = build.reports / "full-tmpdir.json"
    run = build("--report", str(report), name="mkimage-test/full-tmpdir")
    assert run.returncode == 3, run.stderr
    assert "internal error" not in run.stderr
    assert "No space left on device" in run.error_line and str(full_fs) in run.error_line
    assert [p for p in (full_fs / "tmp").iterdir() if not p.name.endswith(".log")] == [], "work dir removed"
    data = json.loads(report.read_text())
    assert data["exit_code"] == 3 and data["error_kind"] == "install-failed"
    assert_nothing_left(build, data)


def test_a_full_log_file_system_fails_the_build_and_cleanup_finishes(build: Builder, full_fs: Path) -> None:
    log = full_fs / "build.log"
    report = build.reports / "full-log.json"
    run = build("--log-file", str(log), "--report", str(report), name="mkimage-test/full-log")
    assert run.returncode == 5, run.stderr
    assert "internal error" not in run.stderr
    assert f"cannot write the log {log}" in run.error_line and "No space left on device" in run.error_line
    assert str(full_fs) in run.error_line
    assert list(build.tmpdir.iterdir()) == [], "work dir removed, no other log"
    data = json.loads(report.read_text())
    assert data["exit_code"] == 5 and data["tags"] == []
    assert image_id("mkimage-test/full-log:1.4.2") is None
    assert_nothing_left(build, data)


def test_a_rootfs_on_disk_that_fills_up_does_not_suggest_never(build: Builder, tmp_path: Path) -> None:
    small = small_fs(tmp_path, "3m")
    try:
        build.tmpdir = small / "tmp"
        build.tmpdir.mkdir()
        report = build.reports / "small.json"
        run = build("--rootfs-in-memory", "never", "--report", str(report), name="mkimage-test/small-disk")
        assert run.returncode == 3, run.stderr
        assert "--rootfs-in-memory never" not in run.stderr
        assert str(small) in run.stderr, "the full file system is named"
        assert_nothing_left(build, json.loads(report.read_text()))
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=False)


# ------------------------------------------------------------------------------------------------- 5. timeouts
def test_a_hanging_chroot_command_times_out(build: Builder, tmp_path: Path) -> None:
    profile = tmp_path / "hang.toml"
    profile.write_text('[chroot]\ncommands = [["/usr/bin/busybox", "sleep", "600"]]\ntimeout = 2\n')
    report = tmp_path / "hang.json"
    started = time.monotonic()
    run = build("--profile", str(profile), "--report", str(report), name="mkimage-test/hang")
    assert time.monotonic() - started < 120
    assert run.returncode == 4, run.stderr
    assert "chroot command '/usr/bin/busybox sleep 600' timed out after 2s" in run.error_line
    assert "chroot.timeout" in run.stderr
    data = json.loads(report.read_text())
    assert data["error_kind"] == "profile-command-timeout"
    assert_nothing_left(build, data)


def test_a_hanging_smoke_command_times_out(build: Builder, tmp_path: Path) -> None:
    profile = tmp_path / "hang-smoke.toml"
    profile.write_text('[smoke]\ncommands = [["/usr/bin/busybox", "sleep", "600"]]\ntimeout = 3\n')
    report = tmp_path / "hang-smoke.json"
    started = time.monotonic()
    run = build("--profile", str(profile), "--report", str(report), name="mkimage-test/hang-smoke")
    assert time.monotonic() - started < 120
    assert run.returncode == 6, run.stderr
    assert "smoke test '/usr/bin/busybox sleep 600' timed out after 3s" in run.error_line
    data = json.loads(report.read_text())
    assert data["error_kind"] == "smoke-test-timeout" and data["tags"] == []
    assert image_id("mkimage-test/hang-smoke:1.4.2") is None
    assert_nothing_left(build, data)


# ------------------------------------------------------------------------------------------ 6. capped error text
def test_a_megabyte_line_is_capped_on_stderr_and_kept_in_the_log(build: Builder, tmp_path: Path) -> None:
    profile = tmp_path / "loud.toml"
    profile.write_text('[chroot]\ncommands = [["/bin/bash", "-c", '
                       '"s=x; for ((i = 0; i < 20; i++)); do s=$s$s; done; echo $s; exit 3"]]\n')
    log = tmp_path / "loud.log"
    run = build("--profile", str(profile), "--log-file", str(log), name="mkimage-test/loud")
    assert run.returncode == 4, run.stderr
    assert len(run.stderr) < 20_000, f"stderr is {len(run.stderr)} characters"
    assert "more characters" in run.stderr and str(log) in run.stderr
    assert "x" * (1 << 20) in log.read_text(), "the log keeps every byte"


# ---------------------------------------------------------------------------------------- 7. relative paths
def test_relative_paths_are_the_callers(build: Builder, tmp_path: Path) -> None:
    """-y, --tmpdir, --report, --log-file, --sbom and --output relative to the caller's directory."""
    work = tmp_path / "work"
    (work / "tmp-rel").mkdir(parents=True)
    (work / "conf").symlink_to(build.repo.root)
    argv = [sys.executable, "-m", "mkimage", "-y", "conf/yum.conf", "--tmpdir", "tmp-rel", "--report", "r.json",
            "--log-file", "build.log", "--sbom", "image.spdx.json", "--output", "oci-archive:image.tar",
            "mkimage-test/relative"]
    build.created.append("mkimage-test/relative")
    build.report_paths.append(work / "r.json")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=work, timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    for name in ("r.json", "build.log", "image.spdx.json", "image.tar"):
        assert (work / name).is_file(), name
    assert list((work / "tmp-rel").iterdir()) == []
