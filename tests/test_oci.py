"""mkimage.oci: the layer blob, config and manifest, and each output format read back by the real readers
(skopeo, docker load / run, podman load / run) and checked against the OCI image-spec's required fields."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from mkimage import oci
from mkimage.errors import ExportError

from conftest import require

BUSYBOX = Path("/bin/busybox")
CREATED = 1700000000
CHUNK = 64 * 1024 + 7  # an odd size, so chunk borders fall anywhere
PODMAN_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n'
COMPRESSORS = {"igzip": ("gzip", oci.IGZIP_ARGV), "zlib": ("gzip", None), "none": ("none", None)}


def need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    require(not missing, f"missing tools: {', '.join(missing)}")


def run(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def unique(prefix: str = "h-oci-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def layer_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real root: the static busybox and two files, tarred as mkimage's export does."""
    need("tar")
    require(BUSYBOX.is_file(), "needs the static busybox (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("tree") / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "etc" / "greeting").write_text("hello from oci\n")
    (root / "etc" / "os-release").write_text("ID=test\n")
    return subprocess.run(["tar", "--numeric-owner", "--sort=name", "--mtime=@0", "-c", "-C", str(root), "."],
                          check=True, capture_output=True).stdout


def write_layer(directory: Path, data: bytes, compression: str = "gzip",
                gzip_argv: tuple[str, ...] | None | str = "auto") -> oci.LayerBlob:
    writer = oci.LayerWriter(directory, compression, gzip_argv=gzip_argv)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        writer.write(view[start:start + CHUNK])
    return writer.close()


META = oci.ImageMeta(
    created=CREATED, created_by="mkimage 0.1.0", comment="test image", cmd=("/bin/busybox", "sh"),
    env=(("PATH", "/bin"), ("GREETING", "a b=c")), labels=(("org.example.team", "base"), ("b", "")),
    user="0:0", workdir="/etc", exposed_ports=("8080", "53/udp"),
)


@pytest.fixture(scope="module")
def image(layer_tar: bytes, tmp_path_factory: pytest.TempPathFactory) -> oci.Image:
    return oci.build_image(write_layer(tmp_path_factory.mktemp("layer"), layer_tar), META)


@pytest.fixture(scope="module")
def outputs(image: oci.Image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("out")
    paths = {"oci-archive": out / "image.oci.tar", "docker-archive": out / "image.docker.tar", "oci": out / "layout"}
    oci.write_oci_archive(paths["oci-archive"], image, ["h-oci-test/base:1.0"])
    oci.write_docker_archive(paths["docker-archive"], image, ["h-oci-test/base:1.0"])
    oci.write_oci_dir(paths["oci"], image, ["h-oci-test/base:1.0"])
    return paths


@pytest.fixture
def docker() -> Iterator[list[str]]:
    """The docker daemon; removes every image reference the test appends to the list it yields."""
    need("docker")
    require(run("docker", "version", check=False).returncode == 0, "no docker daemon")
    refs: list[str] = []
    yield refs
    if refs:
        subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[tuple[dict, list[str]]]:
    """podman with this VM's work-arounds (runc, lowered ulimits: see the BRIEF), never mkimage's defaults;
    removes every image reference the test appends."""
    need("podman")
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    refs: list[str] = []
    yield env, refs
    if refs:
        subprocess.run(["podman", "rmi", "--force", *refs], capture_output=True, env=env)


def tar_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {member.name: member for member in tar.getmembers()}


def extract(path: Path, into: Path) -> Path:
    """Our own archives: only plain files and dirs with relative names (checked; Python 3.11.2 has no filter=)."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert all((m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in m.name.split("/")
                   for m in members)
        tar.extractall(into, members)
    return into


# ----------------------------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("name", COMPRESSORS)
def test_layer_blob_is_hashed_while_streaming(name: str, layer_tar: bytes, tmp_path: Path) -> None:
    compression, gzip_argv = COMPRESSORS[name]
    if gzip_argv:
        need(gzip_argv[0])
    blob = write_layer(tmp_path, layer_tar, compression, gzip_argv)
    stored = blob.path.read_bytes()
    assert blob.diff_id == "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    assert blob.digest == "sha256:" + hashlib.sha256(stored).hexdigest()
    assert blob.size == len(stored)
    assert blob.media_type == oci.MEDIA_LAYER[compression]
    if compression == "gzip":
        assert gzip.decompress(stored) == layer_tar
        assert stored[4:8] == b"\0\0\0\0" and not stored[3] & 0x08, "no mtime and no file name in the header"
        assert len(stored) < len(layer_tar) * 0.8
    else:
        assert stored == layer_tar
    again = write_layer(tmp_path, layer_tar, compression, gzip_argv)
    assert again.path != blob.path and again.path.read_bytes() == stored, "same input, same blob"


def test_layer_writer_reports_a_failed_compressor_and_leaves_nothing(layer_tar: bytes, tmp_path: Path) -> None:
    need("false")
    writer = oci.LayerWriter(tmp_path, gzip_argv=("false",))
    with pytest.raises(ExportError, match="false failed while compressing the layer"):
        for start in range(0, len(layer_tar), CHUNK):
            writer.write(layer_tar[start:start + CHUNK])
        writer.close()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a blob that does not fit fails for real with ENOSPC."""
    require(os.geteuid() == 0, "needs root to mount a tmpfs")
    need("mount", "umount")
    target = tmp_path / "tiny"
    target.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=64k", "h-oci-test-tiny", str(target))
    try:
        yield target
    finally:
        run("umount", "--lazy", str(target))  # never leave the mount, even if a test left a file open


@pytest.mark.parametrize("name", ["igzip", "zlib"])
def test_layer_writer_reports_a_full_disk_and_leaves_nothing(name: str, layer_tar: bytes, tiny_fs: Path) -> None:
    gzip_argv = COMPRESSORS[name][1]
    if gzip_argv:
        need(gzip_argv[0])
    with pytest.raises(ExportError, match="writing the layer blob failed: .*No space left on device"):
        write_layer(tiny_fs, layer_tar, "gzip", gzip_argv)
    assert list(tiny_fs.iterdir()) == []


def test_layer_writer_abort_removes_the_partial_blob(layer_tar: bytes, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with oci.LayerWriter(tmp_path) as writer:
            writer.write(layer_tar[:CHUNK])
            raise RuntimeError("the relay failed")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- config and manifest
def test_config_carries_the_profile_settings(image: oci.Image) -> None:
    config = json.loads(image.config)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert (config["architecture"], config["os"]) == (oci.host_platform()[0], "linux")
    assert config["rootfs"] == {"type": "layers", "diff_ids": [image.layer.diff_id]}
    assert config["history"] == [{"created": "2023-11-14T22:13:20Z", "created_by": "mkimage 0.1.0",
                                  "comment": "test image"}]
    assert config["config"] == {
        "Cmd": ["/bin/busybox", "sh"], "Env": ["PATH=/bin", "GREETING=a b=c"],
        "Labels": {"org.example.team": "base", "b": ""}, "User": "0:0", "WorkingDir": "/etc",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    }
    assert image.image_id == "sha256:" + hashlib.sha256(image.config).hexdigest()
    assert image.config == oci.canonical_json(config), "sorted keys, no spaces"


def test_manifest_describes_config_and_layer(image: oci.Image) -> None:
    manifest = json.loads(image.manifest)
    assert manifest == {
        "schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST,
        "config": {"mediaType": oci.MEDIA_CONFIG, "digest": image.config_digest, "size": len(image.config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": image.layer.digest,
                    "size": image.layer.size}],
    }
    assert image.manifest_digest == "sha256:" + hashlib.sha256(image.manifest).hexdigest()


def test_an_empty_profile_gives_an_empty_runtime_config(image: oci.Image) -> None:
    bare = oci.build_image(image.layer, oci.ImageMeta(created=0, created_by="mkimage"))
    config = json.loads(bare.config)
    assert config["config"] == {} and config["created"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("machine, expected", [
    ("x86_64", ("amd64", None)), ("aarch64", ("arm64", "v8")), ("armv7l", ("arm", "v7")),
    ("ppc64le", ("ppc64le", None)), ("s390x", ("s390x", None)), ("i686", ("386", None)),
])
def test_host_platform_uses_go_names(machine: str, expected: tuple) -> None:
    assert oci.host_platform(machine) == expected


@pytest.mark.parametrize("reference, full", [
    ("centos", "docker.io/library/centos:latest"), ("centos:7", "docker.io/library/centos:7"),
    ("team/base:1", "docker.io/team/base:1"), ("registry:5000/team/base:1", "registry:5000/team/base:1"),
    ("quay.io/x/y", "quay.io/x/y:latest"), ("localhost/base:2", "localhost/base:2"),
])
def test_full_name_is_dockers_normalised_name(reference: str, full: str) -> None:
    assert oci.full_name(reference) == full


# ------------------------------------------------------------------------------ layout: the image-spec
def assert_valid_layout(root: Path, image: oci.Image, tags: list[str]) -> None:
    """The image-spec's required fields, and every blob's digest and size, followed from index.json."""
    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["mediaType"] == oci.MEDIA_INDEX
    assert [d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"]] == tags

    def blob(descriptor: dict) -> bytes:
        algorithm, _, hexdigest = descriptor["digest"].partition(":")
        data = (root / "blobs" / algorithm / hexdigest).read_bytes()
        assert algorithm == "sha256" and hashlib.sha256(data).hexdigest() == hexdigest
        assert descriptor["size"] == len(data) and isinstance(descriptor["mediaType"], str)
        return data

    for descriptor in index["manifests"]:
        assert descriptor["mediaType"] == oci.MEDIA_MANIFEST
        manifest = json.loads(blob(descriptor))
        assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == oci.MEDIA_MANIFEST
        assert manifest["config"]["mediaType"] == oci.MEDIA_CONFIG
        config = json.loads(blob(manifest["config"]))
        assert config["architecture"] and config["os"] == "linux"
        assert config["rootfs"]["type"] == "layers"
        assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 1
        layer = blob(manifest["layers"][0])
        assert "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest() == config["rootfs"]["diff_ids"][0]
        assert descriptor["digest"] == image.manifest_digest


def test_oci_dir_is_a_valid_layout(outputs: dict[str, Path], image: oci.Image) -> None:
    assert_valid_layout(outputs["oci"], image, ["1.0"])
    index = json.loads((outputs["oci"] / "index.json").read_bytes())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/h-oci-test/base:1.0"


@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_archives_are_valid_layouts_with_a_docker_manifest(kind: str, outputs: dict[str, Path], image: oci.Image,
                                                           tmp_path: Path) -> None:
    root = extract(outputs[kind], tmp_path)
    assert_valid_layout(root, image, ["1.0"])
    layer_path = "blobs/sha256/" + image.layer.digest.partition(":")[2]
    assert json.loads((root / "manifest.json").read_bytes()) == [{
        "Config": "blobs/sha256/" + image.config_digest.partition(":")[2],
        "RepoTags": ["h-oci-test/base:1.0"], "Layers": [layer_path]}]


def test_archive_members_are_deterministic(outputs: dict[str, Path]) -> None:
    members = tar_members(outputs["oci-archive"])
    assert list(members) == sorted(members)
    for member in members.values():
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (CREATED, 0, 0, "", "")
        assert member.mode == (0o755 if member.isdir() else 0o644)
        assert member.isdir() or member.isfile()


def test_same_layer_and_created_give_identical_outputs(layer_tar: bytes, outputs: dict[str, Path],
                                                       image: oci.Image, tmp_path: Path) -> None:
    rebuilt = oci.build_image(write_layer(tmp_path, layer_tar), META)
    assert (rebuilt.image_id, rebuilt.manifest_digest) == (image.image_id, image.manifest_digest)
    oci.write_oci_archive(tmp_path / "a.tar", rebuilt, ["h-oci-test/base:1.0"])
    oci.write_docker_archive(tmp_path / "d.tar", rebuilt, ["h-oci-test/base:1.0"])
    oci.write_oci_dir(tmp_path / "layout", rebuilt, ["h-oci-test/base:1.0"])
    assert (tmp_path / "a.tar").read_bytes() == outputs["oci-archive"].read_bytes()
    assert (tmp_path / "d.tar").read_bytes() == outputs["docker-archive"].read_bytes()
    for path in sorted((tmp_path / "layout").rglob("*")):
        twin = outputs["oci"] / path.relative_to(tmp_path / "layout")
        assert path.is_dir() == twin.is_dir() and (path.is_dir() or path.read_bytes() == twin.read_bytes())
    later = oci.build_image(rebuilt.layer, oci.ImageMeta(**{**META.__dict__, "created": CREATED + 1}))
    assert later.image_id != image.image_id, "created is part of the image"


# ----------------------------------------------------------------------------------------- writing safely
def test_oci_dir_adds_to_an_existing_layout(image: oci.Image, tmp_path: Path) -> None:
    need("skopeo")
    layout = tmp_path / "layout"
    oci.write_oci_dir(layout, image, ["h-oci-test/base:1.0"])
    oci.write_oci_dir(layout, image, ["h-oci-test/base:latest", "h-oci-test/base:1.0"])
    assert_valid_layout(layout, image, ["latest", "1.0"])
    for ref in ("1.0", "latest"):
        inspected = json.loads(run("skopeo", "inspect", f"oci:{layout}:{ref}").stdout)
        assert inspected["Digest"] == image.manifest_digest
    assert not [p.name for p in tmp_path.rglob(".*")], "no temp files left"


def test_oci_dir_refuses_a_directory_that_is_not_a_layout(image: oci.Image, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("precious")
    with pytest.raises(ExportError, match="is not an OCI image layout"):
        oci.write_oci_dir(tmp_path, image, [])
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_oci_dir_into_an_empty_directory(image: oci.Image, tmp_path: Path) -> None:
    oci.write_oci_dir(tmp_path, image, ["base"])
    assert_valid_layout(tmp_path, image, ["latest"])


def test_archive_replaces_neither_a_symlink_nor_its_target(image: oci.Image, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "out.tar").symlink_to(target)
    with pytest.raises(ExportError, match="is a symbolic link"):
        oci.write_oci_archive(tmp_path / "out.tar", image, [])
    assert target.read_text() == "keep me"
    assert (tmp_path / "out.tar").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar", "precious"]


def test_archive_to_a_directory_fails_cleanly(image: oci.Image, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        oci.write_docker_archive(tmp_path / "dir", image, [])
    with pytest.raises(ExportError, match="cannot write the docker-archive output .*No such file or directory"):
        oci.write_docker_archive(tmp_path / "missing" / "x.tar", image, [])
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


# ------------------------------------------------------------------------------------------- parse_output
def test_parse_output_accepts_each_format(tmp_path: Path) -> None:
    (tmp_path / "layout").mkdir()
    (tmp_path / "layout" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    assert oci.parse_output(f"oci-archive:{tmp_path}/a.tar") == oci.Output("oci-archive", tmp_path / "a.tar")
    assert oci.parse_output(f"docker-archive:{tmp_path}/d:1.tar") == oci.Output("docker-archive",
                                                                                tmp_path / "d:1.tar")
    assert oci.parse_output(f"oci:{tmp_path}/layout") == oci.Output("oci", tmp_path / "layout")
    assert oci.parse_output(f"oci:{tmp_path}/new") == oci.Output("oci", tmp_path / "new")
    relative = oci.parse_output("oci-archive:image.tar")
    assert isinstance(relative, oci.Output) and relative.path == Path.cwd() / "image.tar"


@pytest.mark.parametrize("spec, problem", [
    ("image.tar", "give FORMAT:PATH, with FORMAT one of oci-archive, oci, docker-archive"),
    ("zip:image.zip", "unknown format 'zip' (use oci-archive, oci, docker-archive)"),
    ("oci-archive:", "the path is missing (e.g. oci-archive:./image.tar)"),
    ("oci:{tmp}/nodir/layout", "directory {tmp}/nodir does not exist"),
    ("docker-archive:{tmp}/file/x.tar", "{tmp}/file is not a directory"),
    ("oci-archive:{tmp}/dir", "{tmp}/dir is a directory; give a file path for the archive"),
    ("oci:{tmp}/dir",
     "{tmp}/dir exists and is not an OCI image layout (no oci-layout file); give a new or empty directory"),
    ("oci:{tmp}/file", "{tmp}/file exists and is not a directory"),
    ("oci:{tmp}/link", "{tmp}/link is a symbolic link; give the layout directory itself"),
])
def test_parse_output_problems(spec: str, problem: str, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    spec = spec.format(tmp=tmp_path)
    assert oci.parse_output(spec) == f"--output {spec!r}: {problem.format(tmp=tmp_path)}"


def test_parse_output_unwritable_parent() -> None:
    """As an unprivileged user (root may write anywhere): a read-only parent, and one it cannot enter."""
    need("setpriv")
    with tempfile.TemporaryDirectory(prefix="h-oci-test-") as top:
        os.chmod(top, 0o755)
        locked, closed = Path(top, "locked"), Path(top, "closed")
        locked.mkdir(mode=0o555)
        closed.mkdir(mode=0o700)
        code = ("import sys; from mkimage.oci import parse_output; "
                "print(parse_output(sys.argv[1])); print(parse_output(sys.argv[2]))")
        proc = run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                   f"oci-archive:{locked}/x.tar", f"oci:{closed}/sub/layout",
                   env={**os.environ, "PYTHONPATH": str(Path(oci.__file__).parent.parent)})
    assert proc.stdout.splitlines() == [
        f"--output 'oci-archive:{locked}/x.tar': directory {locked} is not writable",
        f"--output 'oci:{closed}/sub/layout': cannot use directory {closed}/sub: Permission denied",
    ]


# ------------------------------------------------------------------------------------------ real readers
@pytest.mark.parametrize("transport, kind", [("oci-archive", "oci-archive"), ("oci", "oci"),
                                             ("docker-archive", "docker-archive")])
def test_skopeo_inspects_each_format(transport: str, kind: str, outputs: dict[str, Path], image: oci.Image) -> None:
    need("skopeo")
    inspected = json.loads(run("skopeo", "inspect", f"{transport}:{outputs[kind]}").stdout)
    # a docker-archive source names its layers by their uncompressed digest (docker's own archives are
    # uncompressed); skopeo converts its manifest to docker's schema 2
    layer = image.layer.diff_id if transport == "docker-archive" else image.layer.digest
    assert inspected["Layers"] == [layer]
    assert inspected["Labels"] == {"org.example.team": "base", "b": ""}
    assert inspected["Created"] == "2023-11-14T22:13:20Z"
    if transport != "docker-archive":
        assert inspected["Digest"] == image.manifest_digest
    raw = run("skopeo", "inspect", "--config", "--raw", f"{transport}:{outputs[kind]}").stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == image.image_id


def test_docker_loads_the_docker_archive_and_runs_it(outputs: dict[str, Path], image: oci.Image,
                                                     docker: list[str], tmp_path: Path) -> None:
    name = unique()
    archive = tmp_path / "d.tar"
    oci.write_docker_archive(archive, image, [f"{name}:1.0"])
    docker.append(f"{name}:1.0")
    run("docker", "load", "-i", str(archive))
    assert run("docker", "image", "inspect", "--format", "{{.Id}}", f"{name}:1.0").stdout.strip() == image.image_id
    ran = run("docker", "run", "--rm", "--network", "none", f"{name}:1.0", "/bin/busybox", "echo", "ok")
    assert ran.stdout == "ok\n"
    settings = json.loads(run("docker", "image", "inspect", f"{name}:1.0").stdout)[0]["Config"]
    assert (settings["Cmd"], settings["WorkingDir"], settings["User"]) == (["/bin/busybox", "sh"], "/etc", "0:0")
    assert run("docker", "run", "--rm", "--network", "none", f"{name}:1.0", "/bin/busybox", "sh", "-c",
               'cat greeting; echo "$GREETING"').stdout == "hello from oci\na b=c\n"


def test_docker_loads_the_oci_archive_too(image: oci.Image, docker: list[str], tmp_path: Path) -> None:
    name = unique()
    oci.write_oci_archive(tmp_path / "o.tar", image, [f"{name}:2"])
    docker.append(f"{name}:2")
    run("docker", "load", "-i", str(tmp_path / "o.tar"))
    assert run("docker", "image", "inspect", "--format", "{{.Id}}", f"{name}:2").stdout.strip() == image.image_id


def test_skopeo_copies_the_oci_archive_into_docker(outputs: dict[str, Path], image: oci.Image,
                                                   docker: list[str]) -> None:
    need("skopeo")
    name = unique()
    docker.append(f"{name}:copied")
    run("skopeo", "copy", "--quiet", f"oci-archive:{outputs['oci-archive']}", f"docker-daemon:{name}:copied")
    assert run("docker", "image", "inspect", "--format", "{{.Id}}", f"{name}:copied").stdout.strip() == image.image_id
    assert run("docker", "run", "--rm", "--network", "none", f"{name}:copied", "/bin/busybox",
               "echo", "copied").stdout == "copied\n"


@pytest.mark.parametrize("writer", [oci.write_docker_archive, oci.write_oci_archive])
def test_podman_loads_each_archive_and_runs_it(writer, image: oci.Image, podman: tuple[dict, list[str]],
                                               tmp_path: Path) -> None:
    env, refs = podman
    name = unique()
    writer(tmp_path / "image.tar", image, [f"{name}:3"])
    full = f"docker.io/library/{name}:3"
    refs.append(full)
    loaded = run("podman", "load", "-i", str(tmp_path / "image.tar"), env=env).stdout
    assert f"Loaded image: {full}" in loaded
    assert run("podman", "image", "inspect", "--format", "{{.Id}}", full, env=env).stdout.strip() == \
        image.image_id.partition(":")[2]
    assert run("podman", "run", "--rm", "--network", "none", full, "/bin/busybox", "cat", "/etc/greeting",
               env=env).stdout == "hello from oci\n"


# ----------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive", "oci"])
def test_read_archive_reads_our_outputs(kind: str, outputs: dict[str, Path], image: oci.Image,
                                        layer_tar: bytes) -> None:
    manifest, config, open_layer = oci.read_archive(outputs[kind])
    assert config == json.loads(image.config)
    assert manifest == json.loads(image.manifest)
    with open_layer(0) as layer:
        assert layer.read() == layer_tar


def test_read_archive_reads_skopeo_and_docker_save_archives(outputs: dict[str, Path], image: oci.Image,
                                                            docker: list[str], layer_tar: bytes,
                                                            tmp_path: Path) -> None:
    need("skopeo")
    copied = tmp_path / "skopeo.tar"
    run("skopeo", "copy", "--quiet", f"oci:{outputs['oci']}:1.0", f"oci-archive:{copied}")
    manifest, config, open_layer = oci.read_archive(copied)
    assert config == json.loads(image.config)
    with open_layer(0) as layer:
        assert layer.read() == layer_tar
    name = unique()
    oci.write_docker_archive(tmp_path / "d.tar", image, [f"{name}:4"])
    docker.append(f"{name}:4")
    run("docker", "load", "-i", str(tmp_path / "d.tar"))
    saved = tmp_path / "saved.tar"
    run("docker", "save", "-o", str(saved), f"{name}:4")
    manifest, config, open_layer = oci.read_archive(saved)
    assert manifest["RepoTags"] == [f"{name}:4"]
    assert config["rootfs"]["diff_ids"] == [image.layer.diff_id]
    with open_layer(0) as layer:
        assert hashlib.sha256(layer.read()).hexdigest() == image.layer.diff_id.partition(":")[2]
