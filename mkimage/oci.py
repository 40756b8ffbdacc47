"""Daemonless image outputs, written by hand to the OCI image-spec around one layer.

The layer is compressed and hashed while it streams (``LayerWriter``); ``build_image`` wraps it in a config
and a manifest; the writers lay these out as an OCI image layout (a directory, or a tar of one) or as a
docker-archive.  Both archives hold the same tar: an OCI layout plus docker's ``manifest.json`` pointing into
``blobs/sha256/`` (what ``docker save`` writes since docker 25), which ``docker load`` (20.10 and later),
``podman load`` and skopeo all read.  Same layer bytes and same ``created`` give byte-identical outputs: JSON
with sorted keys and no spaces, tar members sorted, with fixed owners, modes and mtimes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import queue
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, ContextManager, Iterator, NamedTuple, Sequence, Union

from . import fullfs
from .arch import host
from .errors import ExportError
from .reference import arch_reference, split_reference
from .run import spawn, stop_process_group
from .staging import Staging, StagingError, create_exclusive, replaceable_problem, temp_name

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip", "none": "application/vnd.oci.image.layer.v1.tar"}
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"
FORMATS = ("oci-archive", "oci", "docker-archive")
GZIP_LEVEL = 1
# ISA-L's gzip: about 4x less CPU than zlib at level 1 (measured: 1.1 s vs 5.3 s for 256 MiB), deterministic
# (-n: no name, mtime 0).  Without it on PATH, zlib in a background thread.
IGZIP_ARGV = ("igzip", "-n", f"-{GZIP_LEVEL}", "-c")
QUEUE_CHUNKS = 16
COPY_CHUNK = 1 << 20
Chunk = Union[bytes, bytearray, memoryview]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    """The one serialisation of a document, so that its digest depends on its content only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------- the layer
@dataclass(frozen=True)
class LayerBlob:
    path: Path | None
    """The stored blob; None for a layer only the engine has (imported; its digests are the engine's)."""
    digest: str
    """sha256 of the blob as stored (compressed)."""
    size: int
    diff_id: str
    """sha256 of the uncompressed tar stream."""
    media_type: str


class _HashingFile:
    """A blob being written: its sha256 (unless hashing is False: an uncompressed blob's digest is the diff_id,
    hashed already) and size follow every write."""

    def __init__(self, fd: int, hashing: bool = True) -> None:
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256() if hashing else None
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            if self.hash is not None:
                self.hash.update(data)
            self.file.write(data)
            self.size += len(data)


class _Plain:
    def __init__(self, out: _HashingFile) -> None:
        self._out = out

    def feed(self, data: bytes) -> None:
        self._out.write(data)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _ZlibGzip(_Plain):
    def __init__(self, out: _HashingFile) -> None:
        super().__init__(out)
        self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip header, mtime 0

    def feed(self, data: bytes) -> None:
        self._out.write(self._zlib.compress(data))

    def finish(self) -> None:
        self._out.write(self._zlib.flush())


class _ExternalGzip(_Plain):
    """A gzip process; a thread moves its output into the blob."""

    def __init__(self, out: _HashingFile, argv: Sequence[str]) -> None:
        super().__init__(out)
        self._argv = list(argv)
        self._proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._drain_error: BaseException | None = None
        self._drainer = threading.Thread(target=self._drain, name="oci-gzip-drain", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        try:
            while data := self._proc.stdout.read(COPY_CHUNK):
                self._out.write(data)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self._drain_error = exc
            stop_process_group(self._proc, grace=0)

    def feed(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            raise self._failure() from None

    def finish(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._drainer.join()
        if self._proc.wait() != 0 or self._drain_error is not None:
            raise self._failure()

    def _failure(self) -> ExportError:
        assert self._proc.stderr is not None
        returncode = self._proc.wait()
        if self._drain_error is not None:
            reason = getattr(self._drain_error, "strerror", None) or self._drain_error
            return ExportError(f"writing the layer blob failed: {reason}")
        stderr = self._proc.stderr.read().decode(errors="replace").strip()
        reason = stderr.splitlines()[-1] if stderr else f"exit {returncode}"
        return ExportError(f"{self._argv[0]} failed while compressing the layer: {reason}")

    def abort(self) -> None:
        stop_process_group(self._proc, grace=0)
        self._drainer.join()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass  # a broken stdin pipe flushing its buffer


def default_gzip_argv() -> Sequence[str] | None:
    return IGZIP_ARGV if shutil.which(IGZIP_ARGV[0]) else None


class LayerWriter:
    """A sink for the uncompressed layer tar: ``write`` hands each chunk to a background thread that hashes it
    (the diff_id) and compresses it into a blob file in ``directory``, hashing that too; ``close`` returns the
    blob.  ``write`` only blocks when the thread is ``QUEUE_CHUNKS`` chunks behind.

    compression: "gzip" (deterministic: no name, mtime 0, level 1) or "none".  gzip_argv: an external gzip
    that reads stdin and writes stdout (default: igzip when on PATH); None compresses with zlib in the thread.
    """

    def __init__(self, directory: Path, compression: str = "gzip", *,
                 gzip_argv: Sequence[str] | None | str = "auto") -> None:
        if compression not in MEDIA_LAYER:
            raise ValueError(f"unknown layer compression {compression!r}")
        self.media_type = MEDIA_LAYER[compression]
        fd, name = tempfile.mkstemp(dir=directory, prefix=".layer-", suffix=".partial")
        os.fchmod(fd, 0o644)
        self._path = Path(name)
        self._out = _HashingFile(fd, hashing=compression != "none")
        self._diff = hashlib.sha256()
        argv = default_gzip_argv() if gzip_argv == "auto" else gzip_argv
        try:
            self._compressor = self._compressor_for(compression, argv)  # type: ignore[arg-type]
        except BaseException:
            self._discard()
            raise
        self._chunks: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._aborted = False
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="oci-layer", daemon=True)
        self._worker.start()

    def _compressor_for(self, compression: str, gzip_argv: Sequence[str] | None) -> _Plain:
        if compression == "none":
            return _Plain(self._out)
        return _ExternalGzip(self._out, gzip_argv) if gzip_argv else _ZlibGzip(self._out)

    def _work(self) -> None:
        ended = False
        try:
            while (chunk := self._chunks.get()) is not None:
                if self._aborted:
                    raise ExportError("the layer was aborted")
                self._diff.update(chunk)
                self._compressor.feed(chunk)
            ended = True
            self._compressor.finish()
        except BaseException as exc:  # noqa: BLE001 - reported by write() and close()
            self._error = exc
            self._compressor.abort()
            while not ended and self._chunks.get() is not None:
                pass  # keep taking chunks so that write() never blocks on a dead worker

    def write(self, chunk: Chunk) -> None:
        """Queue a chunk; raises ExportError (having removed the partial blob) once the worker failed."""
        if self._error is not None:
            failure = self._failure()
            self.abort()
            raise failure
        self._chunks.put(bytes(chunk))

    def close(self) -> LayerBlob:
        """Wait for the blob to be complete; returns it, or raises ExportError (and removes the file)."""
        self._finish_worker()
        try:
            if self._error is not None:
                raise self._failure()
            self._out.file.close()
        except BaseException:
            self._discard()
            raise
        diff_id = "sha256:" + self._diff.hexdigest()
        digest = "sha256:" + self._out.hash.hexdigest() if self._out.hash is not None else diff_id
        return LayerBlob(self._path, digest, self._out.size, diff_id, self.media_type)

    def abort(self) -> None:
        """Stop and remove the partial blob (the stream failed).  Safe to call more than once."""
        self._aborted = True
        self._finish_worker()
        self._discard()

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def _finish_worker(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.put(None)
        self._worker.join()

    def _failure(self) -> ExportError:
        if isinstance(self._error, ExportError):
            return self._error
        return ExportError(f"writing the layer blob failed: {self._error}")

    def _discard(self) -> None:
        self._out.file.close()
        self._path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- config, manifest
def host_platform(machine: str | None = None) -> tuple[str, str | None]:
    """platform.machine() in Go's naming, as the image-spec wants: 'x86_64' -> ('amd64', None)."""
    arch = host(machine)
    return arch.goarch, arch.variant


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ImageMeta:
    created: int
    """Seconds since the epoch (SOURCE_DATE_EPOCH for reproducible builds)."""
    created_by: str
    """The history entry's created_by, e.g. 'mkimage 0.1.0'."""
    architecture: str = host_platform()[0]
    variant: str | None = host_platform()[1]
    os: str = "linux"
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    workdir: str | None = None
    exposed_ports: tuple[str, ...] = ()
    """'8080' (tcp) or '53/udp'."""
    comment: str | None = None


def _runtime_config(meta: ImageMeta) -> dict:
    config: dict[str, object] = {}
    if meta.env:
        config["Env"] = [f"{key}={value}" for key, value in meta.env]
    if meta.entrypoint is not None:
        config["Entrypoint"] = list(meta.entrypoint)
    if meta.cmd is not None:
        config["Cmd"] = list(meta.cmd)
    if meta.labels:
        config["Labels"] = dict(meta.labels)
    if meta.user:
        config["User"] = meta.user
    if meta.workdir:
        config["WorkingDir"] = meta.workdir
    if meta.exposed_ports:
        config["ExposedPorts"] = {port if "/" in port else f"{port}/tcp": {} for port in meta.exposed_ports}
    return config


def image_config(layer: LayerBlob, meta: ImageMeta) -> dict:
    created = rfc3339(meta.created)
    history: dict[str, str] = {"created": created, "created_by": meta.created_by}
    if meta.comment:
        history["comment"] = meta.comment
    config: dict[str, object] = {
        "created": created,
        "architecture": meta.architecture,
        "os": meta.os,
        "config": _runtime_config(meta),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [history],
    }
    if meta.variant:
        config["variant"] = meta.variant
    return config


@dataclass(frozen=True)
class Image:
    config: bytes
    manifest: bytes
    layer: LayerBlob
    created: int

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def image_id(self) -> str:
        """What docker and podman call the image's ID: the config's digest."""
        return self.config_digest

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        descriptor: dict[str, object] = {"mediaType": MEDIA_MANIFEST, "digest": self.manifest_digest,
                                         "size": len(self.manifest)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    @property
    def digest(self) -> str:
        """What a registry's tag points to for it: the manifest's digest."""
        return self.manifest_digest

    @property
    def platform(self) -> dict[str, str]:
        """The image-spec's platform of the image, from its config: architecture, os, variant."""
        config = json.loads(self.config)
        keys = ("architecture", "os", "variant")
        return {key: config[key] for key in keys if config.get(key)}

    def blobs(self) -> list[tuple[str, bytes | Path]]:
        """(digest, content) of every blob, sorted by digest."""
        if self.layer.path is None:
            raise ExportError("internal error: the layer blob of this image was not kept")
        entries: list[tuple[str, bytes | Path]] = [(self.config_digest, self.config),
                                                   (self.manifest_digest, self.manifest),
                                                   (self.layer.digest, self.layer.path)]
        return sorted(entries, key=lambda entry: entry[0])

    def docker_entries(self, repo_tags: Sequence[str]) -> list[dict]:
        """This image's entry in docker's manifest.json."""
        return [{"Config": _blob_path(self.config_digest), "RepoTags": [_tagged(name) for name in repo_tags],
                 "Layers": [_blob_path(self.layer.digest)]}]


@dataclass(frozen=True)
class ArchImage:
    """One architecture's image in an index: rpm's name of the architecture (the suffix of its own tags in
    docker's manifest.json) and the image."""

    arch: str
    image: Image


@dataclass(frozen=True)
class ImageIndex:
    """The images of one name for several platforms: an OCI image index, as a registry serves a
    multi-architecture tag.  In a layout, index.json points at it (a nested index: what skopeo needs to pick an
    image, and to copy them all with --all)."""

    images: tuple[ArchImage, ...]
    index: bytes
    """The index document: one manifest descriptor per platform, in the order given."""
    primary: int = 0
    """The image docker's plain NAME:TAG names (docker 20.10 holds one architecture per tag)."""

    @property
    def digest(self) -> str:
        return sha256_digest(self.index)

    @property
    def created(self) -> int:
        return max(item.image.created for item in self.images)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        descriptor: dict[str, object] = {"mediaType": MEDIA_INDEX, "digest": self.digest, "size": len(self.index)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    def blobs(self) -> list[tuple[str, bytes | Path]]:
        entries: dict[str, bytes | Path] = {self.digest: self.index}
        for item in self.images:
            entries.update(item.image.blobs())
        return sorted(entries.items(), key=lambda entry: entry[0])

    def docker_entries(self, repo_tags: Sequence[str]) -> list[dict]:
        """One entry per architecture, tagged NAME:TAG-ARCH; the primary one also NAME:TAG."""
        entries = []
        for position, item in enumerate(self.images):
            tags = [arch_reference(_tagged(name), item.arch) for name in repo_tags]
            if position == self.primary:
                tags = [*repo_tags, *tags]
            entries += item.image.docker_entries(tags)
        return entries


def build_index(images: Sequence[ArchImage], primary: int = 0) -> ImageIndex:
    manifests = [{**item.image.descriptor(), "platform": item.image.platform} for item in images]
    index = canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests})
    return ImageIndex(tuple(images), index, primary)


Published = Union[Image, ImageIndex]
"""What the writers lay out: one image, or an index of one image per platform."""


def build_image(layer: LayerBlob, meta: ImageMeta) -> Image:
    config = canonical_json(image_config(layer, meta))
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    })
    return Image(config, manifest, layer, meta.created)


# ------------------------------------------------------------------------------------------ names
def full_name(reference: str) -> str:
    """Docker's normalised name, as containerd stores it: 'centos:7' -> 'docker.io/library/centos:7'."""
    ref = split_reference(reference)
    name, tag = ref.name, ref.tag or "latest"
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    return f"{name}:{tag}"


def ref_annotations(reference: str) -> dict[str, str]:
    """The annotations of a manifest named ``reference`` in index.json: containerd's full name (podman load uses
    it) and the OCI ref name, the tag (what skopeo's oci:DIR:REF and oci-archive:PATH:REF select)."""
    full = full_name(reference)
    return {ANNOTATION_CONTAINERD_NAME: full, ANNOTATION_REF_NAME: full.rpartition(":")[2]}


def oci_index(image: Published, ref_names: Sequence[str]) -> dict:
    manifests = [image.descriptor(ref_annotations(name)) for name in ref_names] or [image.descriptor()]
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}


def docker_manifest(image: Published, repo_tags: Sequence[str]) -> list:
    return image.docker_entries(repo_tags)


def _tagged(reference: str) -> str:
    ref = split_reference(reference)
    return f"{ref.name}:{ref.tag or 'latest'}"


def _blob_path(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


# ------------------------------------------------------------------------------------------ writers
def _no_symlink(path: Path) -> None:
    if path.is_symlink():
        raise ExportError(f"{path} is a symbolic link; refusing to write through it")


def _create(path: Path) -> IO[bytes]:
    """A new file, never through a symlink, never over an existing file."""
    return os.fdopen(create_exclusive(path), "wb")


def _temp_name(path: Path) -> Path:
    return temp_name(path)


@contextmanager
def _new_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file at path (a temp name), written and synced; removed again if writing fails."""
    try:
        with _create(path) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """Write a new ``path`` under a temp name beside it, then rename it into place (the rename replaces a
    symlink at ``path`` itself, never what it points to)."""
    temp = _temp_name(path)
    with _new_file(temp) as file:
        yield file
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _copy_blob(content: bytes | Path, target: IO[bytes]) -> None:
    if isinstance(content, bytes):
        target.write(content)
        return
    with open(content, "rb") as source:
        shutil.copyfileobj(source, target, COPY_CHUNK)


def _tar_entry(name: str, mtime: int, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size, info.mtime = size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _stage_layout_tar(path: Path, image: Published, ref_names: Sequence[str], repo_tags: Sequence[str],
                      staging: Staging, label: str) -> None:
    temp = _temp_name(path)
    with _new_file(temp) as out:
        write_layout_tar_to(out, image, ref_names, repo_tags)
    staging.add(temp, path, label)


class _Position:
    """A pipe with the tell() tarfile asks for."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe, self._written = pipe, 0

    def write(self, data: bytes) -> int:
        self._pipe.write(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written


def write_layout_tar_to(out: IO[bytes], image: Published, ref_names: Sequence[str], repo_tags: Sequence[str]) -> None:
    """The archive (an OCI layout that is also a docker archive) written to an open stream: a file, or the stdin
    of `docker load`."""
    files: dict[str, bytes | Path] = {
        LAYOUT_FILE: canonical_json({"imageLayoutVersion": LAYOUT_VERSION}),
        "index.json": canonical_json(oci_index(image, ref_names)),
        "manifest.json": canonical_json(docker_manifest(image, repo_tags)),
    }
    files.update({_blob_path(digest): content for digest, content in image.blobs()})
    mtime = image.created
    stream = out if out.seekable() else _Position(out)
    with tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT,  # type: ignore[arg-type]
                         copybufsize=COPY_CHUNK) as tar:
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_tar_entry(directory, mtime, directory=True))
        for name in sorted(files):
            content = files[name]
            size = len(content) if isinstance(content, bytes) else content.stat().st_size
            if isinstance(content, bytes):
                tar.addfile(_tar_entry(name, mtime, size), io.BytesIO(content))
            else:
                with open(content, "rb") as source:
                    tar.addfile(_tar_entry(name, mtime, size), source)


def write_config_tar_to(out: IO[bytes], image: Image) -> None:
    """A docker archive of the image's config and manifest.json alone, without the layer: what `docker load`
    (20.10) needs to make an image of a layer it has already (found by its diff_id: docker's loader skips a layer
    it has, never opening its member)."""
    files = {"manifest.json": canonical_json(docker_manifest(image, ())), _blob_path(image.config_digest): image.config}
    stream = out if out.seekable() else _Position(out)
    with tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[arg-type]
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_tar_entry(directory, image.created, directory=True))
        for name in sorted(files):
            tar.addfile(_tar_entry(name, image.created, len(files[name])), io.BytesIO(files[name]))


def _archive_target(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise ExportError(f"{path} is a directory; an archive output needs a file path")


# Each writer comes in two steps: stage_* writes under temp names beside the path and adds the moves to a
# Staging (a build publishes them only after its smoke test); write_* stages and publishes at once.
def stage_oci_archive(path: Path, image: Published, ref_names: Sequence[str], staging: Staging,
                      label: str | None = None) -> None:
    """``ref_names``: image references (NAME[:TAG]); one index.json entry each (see ref_annotations), and the
    RepoTags of manifest.json.  A tar of an OCI image layout, with docker's manifest.json too (so that docker
    load reads it as well)."""
    _archive_target(path)
    _write_or_fail("oci-archive", path, lambda: _stage_layout_tar(path, image, ref_names, ref_names, staging,
                                                                  label or f"oci-archive:{path}"))


def stage_docker_archive(path: Path, image: Published, repo_tags: Sequence[str], staging: Staging,
                         label: str | None = None) -> None:
    """A docker-archive for docker load (20.10+) and podman load: manifest.json into an OCI layout."""
    _archive_target(path)
    _write_or_fail("docker-archive", path, lambda: _stage_layout_tar(path, image, repo_tags, repo_tags, staging,
                                                                     label or f"docker-archive:{path}"))


def stage_oci_dir(path: Path, image: Published, ref_names: Sequence[str], staging: Staging,
                  label: str | None = None) -> None:
    """An OCI image layout directory.  A new one is made under a temp name, to be renamed into place; into an
    existing layout (or an empty dir) the new blobs are to be added and index.json replaced last, where manifests
    with one of ``ref_names`` (or unnamed ones, when no name is given) give way to this image."""
    _write_or_fail("oci", path, lambda: _stage_oci_dir(path, image, ref_names, staging, label or f"oci:{path}"))


def write_oci_archive(path: Path, image: Published, ref_names: Sequence[str]) -> None:
    _write_now("oci-archive", path, lambda staging: stage_oci_archive(path, image, ref_names, staging))


def write_docker_archive(path: Path, image: Published, repo_tags: Sequence[str]) -> None:
    _write_now("docker-archive", path, lambda staging: stage_docker_archive(path, image, repo_tags, staging))


def write_oci_dir(path: Path, image: Published, ref_names: Sequence[str]) -> None:
    _write_now("oci", path, lambda staging: stage_oci_dir(path, image, ref_names, staging))


STAGERS: dict[str, Callable[..., None]] = {
    "oci-archive": stage_oci_archive, "oci": stage_oci_dir, "docker-archive": stage_docker_archive,
}


def stage_output(output: "Output", image: Published, names: Sequence[str], staging: Staging) -> None:
    """One --output, written under temp names beside its path; staging.publish() moves it into place."""
    STAGERS[output.format](output.path, image, names, staging, f"output {output}")


def _write_now(kind: str, path: Path, stage: Callable[[Staging], None]) -> None:
    staging = Staging()
    try:
        stage(staging)
        staging.publish()
    except StagingError as err:
        staging.discard()
        raise ExportError(f"cannot write the {kind} output {path}: {err.error.strerror or err.error}") from None
    except BaseException:
        staging.discard()
        raise
    staging.commit()


def is_oci_layout(path: Path) -> bool:
    layout = path / LAYOUT_FILE
    return path.is_dir() and not path.is_symlink() and layout.is_file() and not layout.is_symlink()


def _stage_oci_dir(path: Path, image: Published, ref_names: Sequence[str], staging: Staging, label: str) -> None:
    _no_symlink(path)
    if not path.exists():
        temp = _temp_name(path)
        temp.mkdir(mode=0o755)
        try:
            _fill_layout(temp, image, ref_names)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)  # our own new dir: rmtree does not follow symlinks
            raise
        staging.add(temp, path, label, directory=True)
        return
    if not path.is_dir() or (any(path.iterdir()) and not is_oci_layout(path)):
        raise ExportError(f"{path} exists and is not an OCI image layout; refusing to write into it")
    for directory in (path / "blobs", path / "blobs" / "sha256"):
        _no_symlink(directory)
        if directory.exists() and not directory.is_dir():
            raise ExportError(f"{directory} is not a directory; refusing to write into {path}")
    # beside the layout, so that the layout itself is untouched until the publish (inside it only when it is a
    # mount point of its own: a rename cannot cross file systems)
    scratch = path / f".mkimage-{os.urandom(4).hex()}.tmp" if os.path.ismount(path) else _temp_name(path)
    scratch.mkdir(mode=0o700)
    staging.add_scratch(scratch)
    for digest, content in image.blobs():
        target = path / _blob_path(digest)
        if target.is_file() and not target.is_symlink():
            continue  # content-addressed: already there
        _stage_bytes(scratch / digest.partition(":")[2], target, lambda out, c=content: _copy_blob(c, out),
                     staging, label)
    if not is_oci_layout(path):
        layout = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
        _stage_bytes(scratch / LAYOUT_FILE, path / LAYOUT_FILE, lambda out: out.write(layout), staging, label)
    index = canonical_json(_merged_index(path / "index.json", image, ref_names))
    _stage_bytes(scratch / "index.json", path / "index.json", lambda out: out.write(index), staging, label)


def _stage_bytes(staged: Path, target: Path, write: Callable[[IO[bytes]], object], staging: Staging,
                 label: str) -> None:
    with _new_file(staged) as out:
        write(out)
    staging.add(staged, target, label)


def _fill_layout(root: Path, image: Published, ref_names: Sequence[str]) -> None:
    blobs = root / "blobs" / "sha256"
    for directory in (root / "blobs", blobs):
        _no_symlink(directory)
        directory.mkdir(mode=0o755, exist_ok=True)
    for digest, content in image.blobs():
        target = root / _blob_path(digest)
        if not (target.is_file() and not target.is_symlink()):
            with _replacing(target) as out:
                _copy_blob(content, out)
    if not is_oci_layout(root):
        with _replacing(root / LAYOUT_FILE) as out:
            out.write(canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
    index = _merged_index(root / "index.json", image, ref_names)
    with _replacing(root / "index.json") as out:
        out.write(canonical_json(index))


def _merged_index(index_path: Path, image: Published, ref_names: Sequence[str]) -> dict:
    ours = oci_index(image, ref_names)
    if not index_path.exists():
        return ours
    _no_symlink(index_path)
    try:
        existing = json.loads(index_path.read_bytes())
        manifests = list(existing["manifests"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{index_path} is not a valid OCI index ({exc}); refusing to change it") from None
    taken = {descriptor.get("annotations", {}).get(ANNOTATION_REF_NAME) for descriptor in ours["manifests"]}
    kept = [d for d in manifests if (d.get("annotations") or {}).get(ANNOTATION_REF_NAME) not in taken]
    return {**existing, "manifests": kept + ours["manifests"]}


def _write_or_fail(kind: str, path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise ExportError(f"cannot write the {kind} output {path}: {fullfs.reason(exc, path)}") from None


# --------------------------------------------------------------------------------------------- --output
@dataclass(frozen=True)
class Output:
    format: str
    path: Path

    def __str__(self) -> str:
        return f"{self.format}:{self.path}"


def parse_output(spec: str) -> Output | str:
    """``FORMAT:PATH`` -> an Output, or a one-line problem.  Looks at the file system, changes nothing."""
    kind, sep, raw_path = spec.partition(":")
    formats = ", ".join(FORMATS)
    if not sep:
        return f"--output {spec!r}: give FORMAT:PATH, with FORMAT one of {formats}"
    if kind not in FORMATS:
        return f"--output {spec!r}: unknown format {kind!r} (use {formats})"
    if not raw_path:
        return f"--output {spec!r}: the path is missing (e.g. {kind}:./image{'' if kind == 'oci' else '.tar'})"
    path = Path(os.path.abspath(raw_path))
    problem = _parent_problem(path) or (_layout_problem(path) if kind == "oci" else _archive_problem(path))
    return f"--output {spec!r}: {problem}" if problem else Output(kind, path)


def _parent_problem(path: Path) -> str | None:
    parent = path.parent
    try:
        mode = os.stat(parent).st_mode
    except FileNotFoundError:
        return f"directory {parent} does not exist"
    except OSError as exc:
        return f"cannot use directory {parent}: {exc.strerror}"
    if not stat.S_ISDIR(mode):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None


def _archive_problem(path: Path) -> str | None:
    if path.is_dir() and not path.is_symlink():
        return f"{path} is a directory; give a file path for the archive"
    problem = replaceable_problem(path)
    return f"{path} {problem}" if problem else None


def _layout_problem(path: Path) -> str | None:
    if path.is_symlink():
        return f"{path} is a symbolic link; give the layout directory itself"
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    if not is_oci_layout(path) and any(path.iterdir()):
        return f"{path} exists and is not an OCI image layout (no {LAYOUT_FILE} file); give a new or empty directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


# --------------------------------------------------------------------------------------------- reading
LayerOpener = Callable[[int], ContextManager[IO[bytes]]]


class StoredImage(NamedTuple):
    """One image read from an archive or layout.  ``manifest`` is the OCI/docker manifest (for an old
    ``docker save`` tar, its manifest.json entry); ``open_layer(i)`` yields layer i uncompressed."""

    manifest: dict
    config: dict
    open_layer: LayerOpener


def read_archive(path: Path) -> StoredImage:
    """The first image of an oci-archive, docker-archive (also docker save's and skopeo's) or OCI layout dir."""
    if path.is_dir():
        return _read_image(lambda name: open(path / name, "rb"), lambda name: (path / name).is_file())
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    names |= {name.removeprefix("./") for name in names}

    @contextmanager
    def open_member(name: str) -> Iterator[IO[bytes]]:
        with tarfile.open(path) as tar:
            member = tar.extractfile(name if name in tar.getnames() else f"./{name}")
            if member is None:
                raise ExportError(f"{path}: {name} is not a file")
            yield member

    return _read_image(open_member, lambda name: name in names)


def _read_image(open_file: Callable[[str], ContextManager[IO[bytes]]], exists: Callable[[str], bool]) -> StoredImage:
    def load(name: str) -> object:
        with open_file(name) as file:
            return json.load(file)

    if exists("index.json"):
        descriptor = load("index.json")["manifests"][0]  # type: ignore[index]
        while descriptor["mediaType"] in (MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"):
            descriptor = load(_blob_path(descriptor["digest"]))["manifests"][0]  # type: ignore[index]
        manifest: dict = load(_blob_path(descriptor["digest"]))  # type: ignore[assignment]
        config: dict = load(_blob_path(manifest["config"]["digest"]))  # type: ignore[assignment]
        layer_names = [_blob_path(layer["digest"]) for layer in manifest["layers"]]
    else:
        manifest = load("manifest.json")[0]  # type: ignore[index]
        config = load(manifest["Config"])  # type: ignore[assignment]
        layer_names = list(manifest["Layers"])

    @contextmanager
    def open_layer(index: int = 0) -> Iterator[IO[bytes]]:
        with open_file(layer_names[index]) as raw:
            yield _maybe_gunzip(raw)

    return StoredImage(manifest, config, open_layer)


def _maybe_gunzip(raw: IO[bytes]) -> IO[bytes]:
    """gzip streams are read through GzipFile; others as they are (the stream must be seekable: files and tar
    members are)."""
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw  # type: ignore[return-value]
