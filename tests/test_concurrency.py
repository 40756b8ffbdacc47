"""Builds side by side, as nightly pipelines run them: two builds of one tag, and a --cache-dir shared by
concurrent builds, with the repository served over HTTP on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, Builder, Repo, image_id
from httpserver import serving

pytestmark = pytest.mark.integration


@pytest.fixture
def http_repo(repo: Repo, tmp_path: Path) -> Iterator[tuple[Path, Counter[str]]]:
    """The test repository over HTTP on 127.0.0.1 (a free port), and a config that uses only it."""
    repos_d = tmp_path / "repos.d"
    repos_d.mkdir()
    config = tmp_path / "http.conf"
    with serving(repo.root / "repo") as served:
        config.write_text(f"[main]\ngpgcheck=0\nreposdir={repos_d}\n\n[mkimage-http]\nname=over http\n"
                          f"baseurl={served.url}/\nenabled=1\nmetadata_expire=never\n")
        yield config, served.requests


def start(build: Builder, config: Path, cache: Path, report: Path, name: str) -> subprocess.Popen:
    build.report_paths.append(report)
    return subprocess.Popen([sys.executable, "-m", "mkimage", "-y", str(config), "--tmpdir", str(build.tmpdir),
                             "--cache-dir", str(cache), "-p", "demo-hello", "--report", str(report), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT)


def test_two_builds_of_one_tag_and_a_shared_cache(build: Builder, http_repo, tmp_path: Path) -> None:
    config, requests = http_repo
    cache = tmp_path / "cache"
    name = "mkimage-test/side-by-side:nightly"
    build.created.append(name)
    procs = [start(build, config, cache, tmp_path / f"r{i}.json", name) for i in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr
        assert stdout == f"{name}\n"
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert image_id(name) in {report["image_id"] for report in reports}, "the tag is one of the two images"
    assert reports[0]["inputs"] == reports[1]["inputs"]
    assert build.leftovers() == []
    downloaded = sorted(path.name for path in cache.rglob("*.rpm"))
    assert "demo-hello-1.0-1.noarch.rpm" in downloaded and len(downloaded) == len(set(downloaded)) == 10
    fetched = {path: count for path, count in requests.items() if path.endswith(".rpm")}
    assert len(fetched) == 10 and set(fetched.values()) == {1}, "each package downloaded once for both builds"
