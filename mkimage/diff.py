"""`mkimage diff OLD NEW`: which packages (and files) two images differ in, for people (a nightly change
mail) and for machines (--json).  OLD and NEW are local images, image archives, reports or SBOMs."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import BadInput
from .inventory import (
    KIND_CYCLONEDX, KIND_REPORT, KIND_SPDX, FileEntry, Inventory, Package, load_document,
    parse_json,
)
from . import image_reader
from .image_reader import Prefixed
from .ui import human_bytes

GZIP_MAGIC = b"\x1f\x8b"
ARTICLES = {KIND_REPORT: "an", KIND_SPDX: "an", KIND_CYCLONEDX: "a"}
COMPRESSED_MAGICS = (GZIP_MAGIC, b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


# ------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Source:
    """What one argument is, found before any heavy reading."""

    argument: str
    kind: str
    """document, archive, layout, engine."""
    engine: str = ""
    document: Inventory | None = None
    stream: Prefixed | None = None
    """A pipe given as a path, already opened to sniff it."""


def classify(argument: str, arch: str | None = None) -> Source:
    """A path that exists is a file (JSON document or image archive) or an OCI layout directory; anything
    else must be an image that docker or podman has.  arch: which architecture of a multi-architecture report."""
    path = Path(argument)
    if path.is_dir():
        if (path / "index.json").is_file():
            return Source(argument, "layout")
        raise BadInput(f"{argument}: a directory, but not an OCI image layout (no index.json)")
    if path.exists():
        return _classify_file(path, arch)
    if argument.startswith(("/", "./", "../")) or argument.endswith((".json", ".tar", ".tar.gz")):
        raise BadInput(f"{argument}: no such file")
    engine, reasons = image_reader.find_engine(argument)
    if engine is None:
        why = f" ({'; '.join(reasons)})" if reasons else ""
        raise BadInput(f"{argument}: no such file, and no local image of that name in docker or podman{why}")
    return Source(argument, "engine", engine=engine)


def _classify_file(path: Path, arch: str | None = None) -> Source:
    """Sniffed from its first bytes.  A pipe (`<(docker save IMAGE)`) is opened only once: its stream is kept."""
    try:
        stream = open(path, "rb")
    except OSError as err:
        raise BadInput(f"{path}: cannot read: {err.strerror}") from None
    keep_open = False
    try:
        head = stream.read(512)
        if head.lstrip()[:1] in (b"{", b"["):
            data = parse_json(path, head + stream.read())
            return Source(str(path), "document", document=load_document(path, data, arch))
        if not (head.startswith(COMPRESSED_MAGICS) or head[257:262] == b"ustar"):
            raise BadInput(f"{path}: unknown format: neither a JSON report or SBOM nor an image archive (tar)")
        keep_open = not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        return Source(str(path), "archive", stream=Prefixed(head, stream) if keep_open else None)
    except OSError as err:
        raise BadInput(f"{path}: cannot read: {err.strerror}") from None
    finally:
        if not keep_open:
            stream.close()


def check_files_possible(old: Source, new: Source) -> None:
    for label, source in (("OLD", old), ("NEW", new)):
        if source.document is not None:
            raise BadInput(f"--files needs images or image archives, but {label} ({source.argument}) is "
                           f"{ARTICLES.get(source.document.kind, 'a')} {source.document.kind}, which lists no files")


def load(source: Source, with_files: bool, arch: str | None = None) -> Inventory:
    """arch: which image of a multi-architecture index (rpm's name; default this host's)."""
    if source.document is not None:
        return source.document
    if source.kind == "engine":
        return image_reader.read_local_image(source.argument, source.engine, with_files)
    return image_reader.read_archive(Path(source.argument), with_files, source.stream, arch)


# ------------------------------------------------------------------------------------------ comparison
@dataclass(frozen=True)
class PackageChange:
    old: Package
    new: Package


@dataclass(frozen=True)
class FileChange:
    path: str
    old: FileEntry
    new: FileEntry
    changes: tuple[str, ...]


@dataclass
class Diff:
    old: Inventory
    new: Inventory
    added: list[Package] = field(default_factory=list)
    removed: list[Package] = field(default_factory=list)
    changed: list[PackageChange] = field(default_factory=list)
    files_added: list[tuple[str, FileEntry]] = field(default_factory=list)
    files_removed: list[tuple[str, FileEntry]] = field(default_factory=list)
    files_changed: list[FileChange] = field(default_factory=list)

    @property
    def files_compared(self) -> bool:
        return self.old.files is not None and self.new.files is not None

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.files_added or self.files_removed
                    or self.files_changed)

    @property
    def multiarch_names(self) -> set[str]:
        """Names installed for more than one arch on either side: those are shown as name.arch."""
        names = set()
        for inventory in (self.old, self.new):
            arches: dict[str, set[str]] = {}
            for package in inventory.packages:
                arches.setdefault(package.name, set()).add(package.arch)
            names |= {name for name, found in arches.items() if len(found) > 1}
        return names


def compare(old: Inventory, new: Inventory) -> Diff:
    diff = Diff(old, new)
    _compare_packages(diff)
    if diff.files_compared:
        _compare_files(diff)
    return diff


def _package_key(package: Package, by_arch: bool) -> tuple[str, str]:
    return (package.name, package.arch if by_arch else "")


def _compare_packages(diff: Diff) -> None:
    """Keyed by name and arch (multilib), by name alone when a side does not say the arch. Several versions
    under one key (install-only kernels) are matched version by version."""
    by_arch = all(p.arch for p in diff.old.packages) and all(p.arch for p in diff.new.packages)
    old_groups = _group(diff.old.packages, by_arch)
    new_groups = _group(diff.new.packages, by_arch)
    for key in sorted(set(old_groups) | set(new_groups)):
        gone = list(old_groups.get(key, []))
        came = []
        for package in new_groups.get(key, []):
            match = next((p for p in gone if p.same_version(package)), None)
            if match is None:
                came.append(package)
            else:
                gone.remove(match)
        if len(gone) == 1 and len(came) == 1:
            diff.changed.append(PackageChange(gone[0], came[0]))
        else:
            diff.removed += gone
            diff.added += came


def _group(packages: Iterable[Package], by_arch: bool) -> dict[tuple[str, str], list[Package]]:
    groups: dict[tuple[str, str], list[Package]] = {}
    for package in packages:
        groups.setdefault(_package_key(package, by_arch), []).append(package)
    return groups


def _compare_files(diff: Diff) -> None:
    assert diff.old.files is not None and diff.new.files is not None
    old_files, new_files = diff.old.files, diff.new.files
    for path in sorted(set(old_files) | set(new_files)):
        before, after = old_files.get(path), new_files.get(path)
        if before is None and after is not None:
            diff.files_added.append((path, after))
        elif after is None and before is not None:
            diff.files_removed.append((path, before))
        elif before is not None and after is not None:
            changes = before.differences(after)
            if changes:
                diff.files_changed.append(FileChange(path, before, after, tuple(changes)))


# ------------------------------------------------------------------------------------------ text
def arrow() -> str:
    """'→' where stdout can print it, '->' elsewhere."""
    try:
        "→".encode(sys.stdout.encoding or "ascii")
        return "→"
    except (UnicodeEncodeError, LookupError):
        return "->"


def render_text(diff: Diff) -> str:
    """For a change mail: a summary, then one short header per non-empty section, its lines sorted."""
    to = arrow()
    multiarch = diff.multiarch_names

    def label(package: Package) -> str:
        return f"{package.name}.{package.arch}" if package.name in multiarch and package.arch else package.name

    lines = [f"old: {diff.old.source} ({diff.old.kind})", f"new: {diff.new.source} ({diff.new.kind})",
             f"packages: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed "
             f"({len(diff.old.packages)} {to} {len(diff.new.packages)})"]
    if diff.files_compared:
        assert diff.old.files is not None and diff.new.files is not None
        lines.append(f"files: {len(diff.files_added)} added, {len(diff.files_removed)} removed, "
                     f"{len(diff.files_changed)} changed ({len(diff.old.files)} {to} {len(diff.new.files)})")
    if diff.same:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    sections = [
        ("packages added", sorted(f"{label(p)} {p.evr}" for p in diff.added)),
        ("packages removed", sorted(f"{label(p)} {p.evr}" for p in diff.removed)),
        ("packages changed", sorted(f"{label(c.new)} {c.old.evr} {to} {c.new.evr}" for c in diff.changed)),
        ("files added", [_file_line(path, entry) for path, entry in diff.files_added]),
        ("files removed", [_file_line(path, entry) for path, entry in diff.files_removed]),
        ("files changed", [_changed_file_line(change, to) for change in diff.files_changed]),
    ]
    for title, items in sections:
        if items:
            lines += ["", f"{title} ({len(items)}):", *(f"  {item}" for item in items)]
    return "\n".join(lines) + "\n"


def _file_line(path: str, entry: FileEntry) -> str:
    if entry.kind == "file":
        return f"{path}  {human_bytes(entry.size)}"
    if entry.kind == "dir":
        return f"{path}/"
    if entry.kind == "symlink":
        return f"{path} -> {entry.link}"
    return f"{path}  ({entry.kind})"


def _changed_file_line(change: FileChange, to: str) -> str:
    words = []
    for what in change.changes:
        if what == "size":
            words.append(f"{human_bytes(change.old.size)} {to} {human_bytes(change.new.size)}")
        elif what == "content":
            words.append(f"content changed (same size, {human_bytes(change.new.size)})")
        else:
            words.append(what.replace(" -> ", f" {to} "))
    return f"{change.path}  {', '.join(words)}"


# ------------------------------------------------------------------------------------------ JSON
def to_json(diff: Diff) -> dict[str, Any]:
    def package(p: Package) -> dict[str, Any]:
        return {"name": p.name, "arch": p.arch, "evr": p.evr}

    files: dict[str, Any] | None = None
    if diff.files_compared:
        files = {
            "added": [_file_json(path, entry) for path, entry in diff.files_added],
            "removed": [_file_json(path, entry) for path, entry in diff.files_removed],
            "changed": [{"path": c.path, "changes": list(c.changes), "old": _file_json(c.path, c.old),
                         "new": _file_json(c.path, c.new)} for c in diff.files_changed],
        }
    return {
        "old": {"source": diff.old.source, "kind": diff.old.kind},
        "new": {"source": diff.new.source, "kind": diff.new.kind},
        "packages": {
            "added": sorted((package(p) for p in diff.added), key=_package_sort_key),
            "removed": sorted((package(p) for p in diff.removed), key=_package_sort_key),
            "changed": sorted(({"name": c.new.name, "arch": c.new.arch, "old": c.old.evr, "new": c.new.evr}
                               for c in diff.changed), key=_package_sort_key),
        },
        "files": files,
        "same": diff.same,
    }


def _package_sort_key(item: dict[str, Any]) -> tuple[str, str]:
    return item["name"], item["arch"]


def _file_json(path: str, entry: FileEntry) -> dict[str, Any]:
    data: dict[str, Any] = {"path": path, "type": entry.kind, "size": entry.size, "mode": f"{entry.mode:04o}",
                            "uid": entry.uid, "gid": entry.gid}
    if entry.link:
        data["link"] = entry.link
    if entry.sha256:
        data["sha256"] = entry.sha256
    return data
