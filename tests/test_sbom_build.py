"""--sbom on a real build: the documents describe the final image's packages and pass the real validators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Builder
from test_sbom import cyclonedx_errors, spdx_errors

pytestmark = pytest.mark.integration


def test_sbom_of_a_built_image_in_both_formats(build: Builder, tmp_path: Path) -> None:
    spdx_path, cdx_path, report_path = tmp_path / "image.spdx.json", tmp_path / "image.cdx.json", tmp_path / "r.json"
    run = build("-p", "demo-rpm-sysimage", "--profile", "hardened", "--sbom", str(spdx_path),
                "--sbom", f"cyclonedx:{cdx_path}", "--report", str(report_path), name="mkimage-test/sbom")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    spdx, cdx = json.loads(spdx_path.read_text()), json.loads(cdx_path.read_text())
    assert spdx_errors(spdx, tmp_path) == []
    assert cyclonedx_errors(cdx) is None
    assert report["sboms"] == [str(spdx_path), str(cdx_path)]

    described = spdx["documentDescribes"][0]
    image = next(p for p in spdx["packages"] if p["SPDXID"] == described)
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": report["image_id"].split(":")[1]}]
    listed = sorted(f"{p['name']}-{p['versionInfo']}" for p in spdx["packages"] if p["SPDXID"] != described)
    assert listed == sorted(p.rsplit(".", 1)[0] for p in report["packages"]), "exactly the image's packages"
    assert sorted(c["name"] for c in cdx["components"]) == sorted(p.rsplit("-", 2)[0] for p in report["packages"])
    assert spdx["creationInfo"]["created"] == report["labels"]["org.opencontainers.image.created"]


def test_sbom_path_problems_are_bad_input(build: Builder, tmp_path: Path) -> None:
    run = build("--sbom", str(tmp_path / "no-such-dir" / "x.json"), name="mkimage-test/sbom-bad")
    assert run.returncode == 2 and "--sbom's directory" in run.stderr and "Traceback" not in run.stderr
