"""Architectures: names, platforms, the binfmt check, dnf's --forcearch, per-architecture names and the index."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mkimage import arch as archs
from mkimage import oci
from mkimage.arch import KNOWN, Arch
from mkimage.installer import InstallRequest
from mkimage.installer.dnf import Dnf
from mkimage.reference import arch_reference

if TYPE_CHECKING:
    from mkimage.context import BuildContext

HOST = archs.host()
FOREIGN = KNOWN["aarch64"] if HOST.name != "aarch64" else KNOWN["x86_64"]


def test_host_and_platforms() -> None:
    assert archs.host("x86_64") == KNOWN["x86_64"]
    assert archs.host("armv7l").name == "armv7hl"
    assert KNOWN["aarch64"].platform == "linux/arm64/v8"
    assert KNOWN["aarch64"].engine_platform == "linux/arm64"
    assert KNOWN["x86_64"].platform == "linux/amd64"


@pytest.mark.parametrize("values, names, problems", [
    ((), [HOST.name], []),
    (("x86_64,aarch64",), ["x86_64", "aarch64"], []),
    (("aarch64", "x86_64", "aarch64"), ["aarch64", "x86_64"], []),
    (("arm64",), [HOST.name], ["--arch arm64: give rpm's name, aarch64"]),
    (("sparc",), [HOST.name], ["--arch sparc: unknown architecture (known: x86_64, aarch64, ppc64le, s390x, "
                               "riscv64, i686, armv7hl)"]),
])
def test_parse(values: tuple[str, ...], names: list[str], problems: list[str]) -> None:
    parsed, found = archs.parse(values)
    assert [arch.name for arch in parsed] == names
    assert found == problems



@pytest.mark.parametrize("text, says", [
    (None, "is missing): apt-get install qemu-user-static (Debian/Ubuntu) or dnf install qemu-user-static"),
    ("disabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: PF\n", "is disabled: update-binfmts --enable"),
    ("enabled\ninterpreter /usr/bin/qemu-x\nflags: \n", "registered with the F flag"),
    ("enabled\ninterpreter /usr/bin/qemu-x\nflags: OC\n", "has flags 'OC'"),
    ("enabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: PF\n", None),
])
def test_binfmt_problem(tmp_path: Path, text: str | None, says: str | None) -> None:
    (tmp_path / "status").write_text("enabled\n")
    if text is not None:
        (tmp_path / FOREIGN.binfmt_entry.name).write_text(text)
    problem = archs.binfmt_problem(FOREIGN, tmp_path)
    assert (problem is None) == (says is None), problem
    if says is not None:
        assert problem is not None and says in problem and f"--arch {FOREIGN}" in problem


def test_binfmt_not_mounted_and_the_host_needs_none(tmp_path: Path) -> None:
    problem = archs.binfmt_problem(FOREIGN, tmp_path)
    assert problem is not None and "binfmt_misc is not mounted: mount -t binfmt_misc" in problem
    assert archs.binfmt_problem(HOST, tmp_path) is None


def test_every_dnf_call_for_a_foreign_root_forces_its_arch(tmp_path: Path) -> None:
    flags = archs.package_manager_flags(FOREIGN)
    assert flags == (f"--forcearch={FOREIGN}",)
    assert archs.package_manager_flags(HOST) == ()
    request = InstallRequest(config=Path("/c"), root=tmp_path, releasever="/", groups=("Core",), packages=(),
                             arch_flags=flags)
    dnf = Dnf("dnf")
    for argv in (dnf.install_argv(request), dnf.makecache_argv(request), dnf.clean_argv(request)):
        assert argv[:5] == ["dnf", "-c", "/c", f"--installroot={tmp_path}", "--releasever=/"]
        assert argv[5] == f"--forcearch={FOREIGN}"


def test_yum_3_cannot_build_another_architecture() -> None:
    assert "has no --forcearch" in (archs.package_manager_problem(FOREIGN, "yum") or "")
    assert archs.package_manager_problem(FOREIGN, "dnf") is None
    assert archs.package_manager_problem(HOST, "yum") is None


@pytest.mark.parametrize("name, expected", [
    ("sbom.json", "sbom.aarch64.json"), ("out/sbom.spdx.json", "out/sbom.aarch64.spdx.json"),
    ("bom.cdx.json", "bom.aarch64.cdx.json"), ("sbom", "sbom.aarch64"), ("my.image.json", "my.image.aarch64.json"),
])
def test_arch_path(name: str, expected: str) -> None:
    assert archs.arch_path(Path(name), KNOWN["aarch64"]) == Path(expected)


def test_arch_reference() -> None:
    assert arch_reference("reg:5000/base/el9:9.4", "aarch64") == "reg:5000/base/el9:9.4-aarch64"
    assert arch_reference("base", "x86_64") == "base:latest-x86_64"


def image_for(arch: Arch, tmp_path: Path) -> oci.Image:
    with oci.LayerWriter(tmp_path, "gzip", gzip_argv=None) as writer:
        writer.write(arch.name.encode() * 1000)
        layer = writer.close()
    meta = oci.ImageMeta(created=1700000000, created_by="test", architecture=arch.goarch, variant=arch.variant)
    return oci.build_image(layer, meta)


def test_an_index_of_two_platforms(tmp_path: Path) -> None:
    amd, arm = image_for(KNOWN["x86_64"], tmp_path), image_for(KNOWN["aarch64"], tmp_path)
    index = oci.build_index([oci.ArchImage("x86_64", amd), oci.ArchImage("aarch64", arm)], primary=0)
    document = json.loads(index.index)
    assert document["mediaType"] == oci.MEDIA_INDEX
    assert [m["platform"] for m in document["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    assert [m["digest"] for m in document["manifests"]] == [amd.manifest_digest, arm.manifest_digest]
    layout = oci.oci_index(index, ["base/el9:9"])
    assert layout["manifests"][0]["mediaType"] == oci.MEDIA_INDEX and layout["manifests"][0]["digest"] == index.digest
    assert [entry["RepoTags"] for entry in oci.docker_manifest(index, ["base/el9:9"])] == [
        ["base/el9:9", "base/el9:9-x86_64"], ["base/el9:9-aarch64"]]
    assert {digest for digest, _ in index.blobs()} == {index.digest, *(d for d, _ in amd.blobs()),
                                                       *(d for d, _ in arm.blobs())}


def contexts(tmp_path: Path, *names: str) -> BuildContext:
    from mkimage.context import ArchTarget, BuildContext, BuildSpec
    from mkimage.installer.config import ConfigAnswer
    from mkimage.profile import Profile
    from mkimage.result import BuildResult
    from mkimage.run import BuildLog
    from mkimage.ui import Reporter

    def answer(name: str) -> ConfigAnswer:
        return ConfigAnswer(config=tmp_path / "c", package_manager="dnf", releasever=None, basearch=name,
                            cachedir="/var/cache/dnf")

    targets = tuple(ArchTarget(KNOWN[name], answer(name)) for name in names)
    spec = BuildSpec(name="base", explicit_tag=None, config=tmp_path / "c", package_manager=Dnf("dnf"),
                     releasever="/", config_answer=targets[0].config_answer, profile=Profile(), tmpdir=tmp_path,
                     sboms=(), arch=targets[0].arch, targets=targets)
    ctx = BuildContext(spec=spec, ui=Reporter(stream=io.StringIO()), log=BuildLog(tmp_path / "log"),
                       result=BuildResult(name="base"))
    from mkimage import multiarch
    multiarch.split(ctx)
    return ctx


def test_each_architecture_has_its_own_context_and_they_must_agree_on_the_version(tmp_path: Path) -> None:
    from mkimage import multiarch
    from mkimage.errors import InstallError

    ctx = contexts(tmp_path, "x86_64", "aarch64")
    assert [each.spec.arch.name for each in ctx.per_arch] == ["x86_64", "aarch64"]
    assert [each.spec.config_answer.basearch for each in ctx.per_arch] == ["x86_64", "aarch64"]
    assert [each.result.build_id for each in ctx.per_arch] == [f"{ctx.build_id}-x86_64", f"{ctx.build_id}-aarch64"]
    assert list(ctx.result.architectures) == ["x86_64", "aarch64"] and ctx.result.arch is None
    for each, version in zip(ctx.per_arch, ("9.4", "9.5")):
        each.result.tag, each.image_id = version, f"sha256:{each.spec.arch.name}"
    with pytest.raises(InstallError, match=r"different versions \(x86_64 9.4, aarch64 9.5\)"):
        multiarch.agree(ctx)
    ctx.per_arch[1].result.tag = "9.4"
    multiarch.agree(ctx)
    primary = "sha256:" + HOST.name if HOST.name in ("x86_64", "aarch64") else "sha256:x86_64"
    assert ctx.result.tag == "9.4" and ctx.image_id == primary
    assert [(ref, each.spec.arch.name) for ref, each in multiarch.engine_tags(ctx)] == [
        ("base:9.4", primary.split(":")[1]), ("base:9.4-x86_64", "x86_64"), ("base:9.4-aarch64", "aarch64")]


def test_one_architecture_is_its_own_context(tmp_path: Path) -> None:
    ctx = contexts(tmp_path, HOST.name)
    assert ctx.per_arch == [ctx] and ctx.result.arch == HOST.name and ctx.result.architectures == {}
