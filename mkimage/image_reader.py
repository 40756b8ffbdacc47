"""Read an image's files and packages without running it: from an OCI archive or layout, a docker archive
(`docker save`), or a local image (docker or podman save, streamed).

Layers are streamed, never loaded into memory: each layer's entries are listed (with a sha256 of every file's
content when asked), its whiteouts noted, and the rpm database files copied into a private temp dir.  Once the
layer order is known (from index.json or manifest.json, which docker writes after the layers), the layers are
merged as an engine would, and the host's rpm reads the image's database from the temp dir.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, cast

from .arch import KNOWN, host
from .errors import BadInput, MkimageError
from .inventory import FileEntry, Inventory, Package
from .run import run_captured, spawn, stop_process_group, tool_env

RPMDB_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm", "root/.rpmdb")
"""Where images keep their rpm database, in the order looked at (EL <= 9, Fedora >= 36 and EL 10, mkimage on
Debian before the database moved); a symlink among them is followed inside the image."""
DB_BACKENDS = {"rpmdb.sqlite": "sqlite", "Packages": "bdb_ro", "Packages.db": "ndb"}
RPM_QUERY_FORMAT = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n"
MAX_DOCUMENT_BYTES = 16 << 20
CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
ENGINES = ("docker", "podman")


class ImageReadError(BadInput):
    """The image can't be read (bad archive, no rpm database, engine failure): exit 2, one line."""


@dataclass
class LayerTree:
    """One layer's own view: what it adds or replaces, what it deletes from the layers below."""

    entries: dict[str, FileEntry] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)
    opaque_dirs: set[str] = field(default_factory=set)
    rpmdb_copies: dict[str, Path] = field(default_factory=dict)
    """Image path -> its extracted copy in the temp dir, for files under RPMDB_DIRS."""


@dataclass
class MergedTree:
    entries: dict[str, FileEntry] = field(default_factory=dict)
    rpmdb_copies: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ paths
def normalize(name: str) -> str | None:
    """A tar member name as an image path without the leading '/': './usr/bin/' -> 'usr/bin'.  None for the
    root, and for names that climb out of it."""
    path = posixpath.normpath("/" + name.lstrip("/")).lstrip("/")
    if path in ("", ".") or path.startswith(".."):
        return None
    return path


def resolve_in_tree(entries: dict[str, FileEntry], path: str, max_links: int = 40) -> str | None:
    """Follow symlinks inside the image (absolute ones from the image's root); None on a loop."""
    pending = path.split("/")
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        entry = entries.get("/".join([*resolved, part]))
        if entry is not None and entry.kind == "symlink":
            links += 1
            if links > max_links:
                return None
            if entry.link.startswith("/"):
                resolved = []
            pending = entry.link.split("/") + pending
        else:
            resolved.append(part)
    return "/".join(resolved)


def is_rpmdb_path(path: str) -> bool:
    return any(path.startswith(directory + "/") for directory in RPMDB_DIRS)


# ------------------------------------------------------------------------------------------ one layer
def entry_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.ischr():
        return "char"
    if member.isblk():
        return "block"
    if member.isfifo():
        return "fifo"
    return "other"


def _copy_content(source: IO[bytes], destination: Path | None, with_files: bool) -> str:
    """Stream a member's content: sha256 it and/or write it to destination."""
    digest = hashlib.sha256() if with_files else None
    sink = open(destination, "wb") if destination is not None else None
    try:
        while chunk := source.read(CHUNK):
            if digest is not None:
                digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
    finally:
        if sink is not None:
            sink.close()
    return digest.hexdigest() if digest is not None else ""


def scan_layer(stream: IO[bytes], extract_dir: Path, with_files: bool) -> LayerTree:
    """One layer tar (plain, gzip, bzip2 or xz), read front to back."""
    tree = LayerTree()
    with tarfile.open(fileobj=stream, mode="r|*") as layer:
        for member in layer:
            path = normalize(member.name)
            if path is None:
                continue
            directory, base = posixpath.split(path)
            if base == OPAQUE_MARKER:
                tree.opaque_dirs.add(directory)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                tree.whiteouts.add(posixpath.join(directory, base[len(WHITEOUT_PREFIX):]))
                continue
            if member.islnk():
                _add_hardlink(tree, path, normalize(member.linkname))
                continue
            sha256 = ""
            if member.isreg():
                copy = extract_dir / path if is_rpmdb_path(path) else None
                if copy is not None:
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    tree.rpmdb_copies[path] = copy
                source = layer.extractfile(member)
                assert source is not None
                sha256 = _copy_content(source, copy, with_files)
            tree.entries[path] = FileEntry(kind=entry_kind(member), mode=member.mode & 0o7777, uid=member.uid,
                                           gid=member.gid, size=member.size if member.isreg() else 0,
                                           link=member.linkname if member.issym() else "", sha256=sha256)
    return tree


def _add_hardlink(tree: LayerTree, path: str, target: str | None) -> None:
    """A hard link is the file it links to (which came earlier in the same layer)."""
    entry = tree.entries.get(target or "")
    if entry is None:
        return
    tree.entries[path] = entry
    if target in tree.rpmdb_copies and is_rpmdb_path(path):
        tree.rpmdb_copies[path] = tree.rpmdb_copies[target]


def merge_layers(layers: list[LayerTree]) -> MergedTree:
    """Bottom to top: a layer's whiteouts and opaque dirs hide what the layers below had, then its entries
    replace theirs."""
    merged = MergedTree()
    for layer in layers:
        for directory in layer.opaque_dirs:
            _drop_under(merged, directory, keep_self=True)
        for path in layer.whiteouts:
            _drop_under(merged, path, keep_self=False)
        merged.entries.update(layer.entries)
        for path in layer.entries:
            merged.rpmdb_copies.pop(path, None)
        merged.rpmdb_copies.update(layer.rpmdb_copies)
    return merged


def _drop_under(merged: MergedTree, path: str, keep_self: bool) -> None:
    prefix = path + "/"
    doomed = [name for name in merged.entries if name.startswith(prefix) or (name == path and not keep_self)]
    for name in doomed:
        del merged.entries[name]
        merged.rpmdb_copies.pop(name, None)


# ------------------------------------------------------------------------------------------ archives
class Prefixed:
    """A read-only stream whose first bytes were already read (to sniff what it is)."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix, self._rest = prefix, rest

    def __enter__(self) -> Prefixed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rest.close()

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._rest.read(size)
        if size < 0:
            data, self._prefix = self._prefix + self._rest.read(), b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(data) < size:
            data += self._rest.read(size - len(data))
        return data


@dataclass
class ArchiveScan:
    """Everything an image archive holds that matters, gathered in one pass in whatever order it came."""

    documents: dict[str, bytes] = field(default_factory=dict)
    layers: dict[str, LayerTree] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    """Member name -> why it could not be read as a layer (only an error if a manifest names it)."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Symlinked members (docker save links a repeated layer to its first copy)."""


def scan_archive(stream: IO[bytes], workdir: Path, with_files: bool, label: str) -> ArchiveScan:
    """Read an image archive (tar, possibly compressed) from front to back."""
    scan = ArchiveScan()
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for number, member in enumerate(archive):
                name = normalize(member.name)
                if name is None:
                    continue
                if member.issym() or member.islnk():
                    target = member.linkname if member.islnk() else posixpath.join(posixpath.dirname(name),
                                                                                   member.linkname)
                    scan.aliases[name] = normalize(target) or ""
                elif member.isreg():
                    source = archive.extractfile(member)
                    assert source is not None
                    _scan_member(scan, name, member.size, source, workdir / f"member-{number}", with_files)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ImageReadError(f"{label}: not a readable image archive ({_reason(err)})") from None
    return scan


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _scan_member(scan: ArchiveScan, name: str, size: int, source: IO[bytes], extract_dir: Path,
                 with_files: bool) -> None:
    head = source.read(512)
    if head.lstrip()[:1] in (b"{", b"[") and size <= MAX_DOCUMENT_BYTES:
        scan.documents[name] = head + source.read()
        return
    if head[:4] == b"\x28\xb5\x2f\xfd":
        scan.unreadable[name] = "zstd-compressed layers are not supported yet"
        return
    try:
        scan.layers[name] = scan_layer(cast(IO[bytes], Prefixed(head, source)), extract_dir, with_files)
    except (tarfile.TarError, EOFError, OSError) as err:
        scan.unreadable[name] = _reason(err)


def blob_path(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if not hex_digest or "/" in digest or algorithm.startswith("."):
        raise ValueError(f"bad digest {digest!r}")
    return f"blobs/{algorithm}/{hex_digest}"


def layer_order(read_document: Callable[[str], Any], label: str, arch: str | None = None) -> list[str]:
    """The layer members, bottom first: from the OCI index.json (arch's image of an index: rpm's name, default
    this host's), else docker's manifest.json."""
    try:
        index = read_document("index.json")
    except KeyError:
        index = None
    try:
        if index is not None:
            manifest = _image_manifest(index, read_document, label, arch)
            return [blob_path(layer["digest"]) for layer in manifest["layers"]]
        manifests = read_document("manifest.json")
    except KeyError as err:
        raise ImageReadError(f"{label}: the archive lacks {err.args[0]}") from None
    except (ValueError, TypeError) as err:
        raise ImageReadError(f"{label}: unreadable manifest: {err}") from None
    if not isinstance(manifests, list) or len(manifests) != 1:
        count = len(manifests) if isinstance(manifests, list) else 0
        raise ImageReadError(f"{label}: manifest.json lists {count} images; give an archive of exactly one")
    return [normalize(path) or "" for path in manifests[0]["Layers"]]


def _image_manifest(index: dict[str, Any], read_document: Callable[[str], Any], label: str,
                    arch: str | None = None) -> dict[str, Any]:
    """Follow an OCI index (nested ones too) to the one image manifest it names (arch's platform if several:
    rpm's name, default this host's)."""
    wanted = KNOWN[arch] if arch in KNOWN else host()
    for _ in range(8):
        if "layers" in index:
            return index
        listed = index.get("manifests") or []
        candidates = listed
        if len(listed) > 1:
            candidates = [m for m in listed if (m.get("platform") or {}).get("architecture") == wanted.goarch]
        if not candidates and listed:
            found = ", ".join(str((m.get("platform") or {}).get("architecture")) for m in listed)
            raise ImageReadError(f"{label}: the index has no image for {wanted} (it has {found}); choose one "
                                 "with --arch")
        if len(candidates) != 1:
            raise ImageReadError(f"{label}: the index lists {len(listed)} images; "
                                 "give an archive of exactly one")
        index = read_document(blob_path(candidates[0]["digest"]))
    raise ImageReadError(f"{label}: indexes nested too deep")


def _layers_from_scan(scan: ArchiveScan, label: str, arch: str | None = None) -> list[LayerTree]:
    def read_document(name: str) -> Any:
        return json.loads(scan.documents[_follow_alias(scan, name)])

    trees = []
    for name in layer_order(read_document, label, arch):
        name = _follow_alias(scan, name)
        if name in scan.unreadable:
            raise ImageReadError(f"{label}: layer {name}: {scan.unreadable[name]}")
        if name not in scan.layers:
            raise ImageReadError(f"{label}: the manifest names layer {name}, which the archive lacks")
        trees.append(scan.layers[name])
    return trees


def _follow_alias(scan: ArchiveScan, name: str) -> str:
    for _ in range(8):
        if name not in scan.aliases:
            break
        name = scan.aliases[name]
    return name


def layers_from_layout(directory: Path, workdir: Path, with_files: bool, arch: str | None = None) -> list[LayerTree]:
    """An OCI image layout directory: the layers are files, read in order."""
    label = str(directory)

    def read_document(name: str) -> Any:
        path = directory / name
        if not path.is_file():
            raise KeyError(name)
        return json.loads(path.read_bytes())

    trees = []
    for number, name in enumerate(layer_order(read_document, label, arch)):
        try:
            with open(directory / name, "rb") as stream:
                head = stream.read(4)
                if head == b"\x28\xb5\x2f\xfd":
                    raise ImageReadError(f"{label}: layer {name}: zstd-compressed layers are not supported yet")
                stream.seek(0)
                trees.append(scan_layer(stream, workdir / f"layer-{number}", with_files))
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ImageReadError(f"{label}: layer {name}: {_reason(err)}") from None
    return trees


# ------------------------------------------------------------------------------------------ rpm database
def query_rpmdb(merged: MergedTree, workdir: Path, label: str) -> list[Package]:
    """Copy the image's rpm database out of the extracted layers and ask the host's rpm for its packages."""
    found = _find_rpmdb(merged)
    if found is None:
        raise ImageReadError(f"{label}: no rpm database in the image (looked in "
                             f"{', '.join('/' + d for d in RPMDB_DIRS)})")
    db_dir, backend = found
    dbpath = workdir / "rpmdb"
    dbpath.mkdir()
    for path, copy in merged.rpmdb_copies.items():
        if posixpath.dirname(path) == db_dir:
            shutil.copyfile(copy, dbpath / posixpath.basename(path))
    argv = ["rpm", "--dbpath", str(dbpath), "--define", f"_db_backend {backend}", "-qa", "--qf", RPM_QUERY_FORMAT]
    result = run_captured(argv, env=tool_env({"TMPDIR": str(workdir)}), timeout=300)
    if not result.ok:
        detail = next((line for line in result.tail if line.strip()), f"exit {result.returncode}")
        raise ImageReadError(f"{label}: rpm cannot read the image's database in /{db_dir}: {detail}")
    return [_package_from_query(line) for line in result.stdout.splitlines() if line.strip()]


def _find_rpmdb(merged: MergedTree) -> tuple[str, str] | None:
    """(the database's directory in the image, rpm's backend for it), the first of RPMDB_DIRS that has one."""
    for directory in RPMDB_DIRS:
        real = resolve_in_tree(merged.entries, directory)
        if real is None:
            continue
        for db_file, backend in DB_BACKENDS.items():
            if f"{real}/{db_file}" in merged.rpmdb_copies:
                return real, backend
    return None


def _package_from_query(line: str) -> Package:
    name, epoch, version, release, arch = line.split("\t")
    return Package(name=name, arch="" if arch == "(none)" else arch, epoch=epoch, version=version,
                   release=release)


# ------------------------------------------------------------------------------------------ entry points
def read_archive(path: Path, with_files: bool, stream: Prefixed | None = None, arch: str | None = None) -> Inventory:
    """An oci-archive, a docker-archive (optionally compressed), or an OCI layout directory; stream when the
    path is a pipe that was already opened (and sniffed); arch: which image of a multi-architecture index."""
    label = str(path)
    with _workdir() as workdir:
        if path.is_dir():
            trees = layers_from_layout(path, workdir, with_files, arch)
        else:
            try:
                with stream if stream is not None else open(path, "rb") as source:
                    scan = scan_archive(cast(IO[bytes], source), workdir, with_files, label)
                trees = _layers_from_scan(scan, label, arch)
            except OSError as err:
                raise ImageReadError(f"{path}: cannot read: {err.strerror}") from None
        return _inventory(label, "OCI layout" if path.is_dir() else "image archive", trees, workdir, with_files)


def find_engine(reference: str) -> tuple[str | None, list[str]]:
    """The first engine that has the image locally, and why the others did not."""
    reasons = []
    for engine in ENGINES:
        argv = [engine, "image", "inspect", "--format", "{{.Id}}", reference] if engine == "docker" \
            else [engine, "image", "exists", reference]
        try:
            result = run_captured(argv, timeout=60)
        except MkimageError:
            reasons.append(f"{engine}: not installed")
            continue
        if result.ok:
            return engine, reasons
        detail = next((line.strip() for line in result.tail if line.strip()), "")
        if detail and "no such" not in detail.lower():
            reasons.append(f"{engine}: {detail}")
    return None, reasons


def read_local_image(reference: str, engine: str, with_files: bool) -> Inventory:
    """`ENGINE save REF`, streamed straight into the reader: the image is never written to disk whole."""
    label = f"{engine} image {reference}"
    with _workdir() as workdir:
        stderr_path = workdir / "save.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = spawn([engine, "save", reference], stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        scan: ArchiveScan | None = None
        failure: ImageReadError | None = None
        try:
            try:
                scan = scan_archive(proc.stdout, workdir, with_files, label)
            except ImageReadError as err:
                failure = err
            while proc.stdout.read(CHUNK):  # to the end, so that the engine never blocks on a full pipe
                pass
            code = proc.wait()
        finally:
            stop_process_group(proc)
            proc.stdout.close()
        if code != 0:
            lines = stderr_path.read_text(errors="replace").strip().splitlines()
            raise ImageReadError(f"{engine} save {reference} failed: {lines[-1] if lines else f'exit {code}'}")
        if failure is not None or scan is None:
            raise failure or ImageReadError(f"{label}: nothing read")
        return _inventory(reference, f"{engine} image", _layers_from_scan(scan, label), workdir, with_files)


def _inventory(source: str, kind: str, trees: list[LayerTree], workdir: Path, with_files: bool) -> Inventory:
    merged = merge_layers(trees)
    packages = query_rpmdb(merged, workdir, source)
    files = {"/" + path: entry for path, entry in merged.entries.items()}
    return Inventory(source=source, kind=kind, packages=packages, files=files if with_files else None)


@contextmanager
def _workdir() -> Iterator[Path]:
    """A private temp dir (mode 0700) for the extracted rpm databases, removed whatever happens (rmtree
    never follows a symlink, and nothing in it is one)."""
    path = Path(tempfile.mkdtemp(prefix="mkimage-diff-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
