"""The rootfs in a private tmpfs, and a persistent package cache for nightly rebuilds."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Builder, Repo, host_mounts_mentioning, image_layer
from test_build import assert_nothing_left

pytestmark = pytest.mark.integration


def test_rootfs_in_memory_by_default_and_on_disk_on_request(build: Builder, tmp_path: Path) -> None:
    for choice, in_memory in (("auto", True), ("never", False), ("always", True)):
        report_path = tmp_path / f"{choice}.json"
        run = build("--rootfs-in-memory", choice, "--report", str(report_path), name="mkimage-test/memory")
        assert run.returncode == 0, run.stderr
        report = json.loads(report_path.read_text())
        assert report["rootfs_in_memory"] is in_memory, choice
        assert build.leftovers() == []
    assert host_mounts_mentioning("mkimage-rootfs") == [], "the tmpfs lives in mkimage's own mount namespace"


def test_full_tmpfs_says_what_to_do(build: Builder, tmp_path: Path) -> None:
    fits = build("--rootfs-in-memory", "always", name="mkimage-test/full")
    assert fits.returncode == 0, fits.stderr
    report_path = tmp_path / "full.json"
    run = build("--report", str(report_path), name="mkimage-test/full", env={"MKIMAGE_TMPFS_SIZE": "1m"})
    assert run.returncode == 3, run.stderr
    assert "the rootfs is full: try --rootfs-in-memory never" in run.stderr
    assert_nothing_left(build, json.loads(report_path.read_text()))


def test_bad_tmpfs_size_is_bad_input(build: Builder) -> None:
    run = build(name="mkimage-test/badsize", env={"MKIMAGE_TMPFS_SIZE": "lots"})
    assert run.returncode == 2
    assert run.stderr.strip() == "Error: MKIMAGE_TMPFS_SIZE='lots' is not a size such as 8G or 512m"


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        self.server.requested.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def http_repo(repo: Repo, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """The test repository served over HTTP on loopback; yields its config and the paths requested."""
    handler = functools.partial(RecordingHandler, directory=str(repo.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "http.conf"
    port = server.server_address[1]
    config.write_text(repo.config.read_text().replace(f"file://{repo.root}", f"http://127.0.0.1:{port}"))
    try:
        yield config, server.requested  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_cache_dir_downloads_each_package_once(build: Builder, http_repo, tmp_path: Path) -> None:
    config, requested = http_repo
    cache = tmp_path / "cache"
    first = build("--cache-dir", str(cache), name="mkimage-test/cached", config=config)
    assert first.returncode == 0, first.stderr
    downloaded = [path for path in requested if path.endswith(".rpm")]
    assert len(downloaded) == 9, downloaded
    assert len(list(cache.rglob("*.rpm"))) == 9, "packages kept in the cache"
    requested.clear()
    second = build("--cache-dir", str(cache), name="mkimage-test/cached", config=config)
    assert second.returncode == 0, second.stderr
    assert [path for path in requested if path.endswith(".rpm")] == [], "nothing downloaded twice"
    layer = image_layer("mkimage-test/cached:1.4.2")
    assert not any(name.endswith(".rpm") for name in layer.members), "the cache stays out of the image"
    assert build.leftovers() == []
