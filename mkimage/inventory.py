"""What an image holds, as `mkimage diff` compares it: its packages (and, from an image, its files).

This module knows the data types and the documents that list packages: mkimage's JSON report, SPDX 2.3 and
CycloneDX 1.6 SBOMs.  Reading an image itself is mkimage/image_reader.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import BadInput

KIND_REPORT = "mkimage report"
KIND_SPDX = "SPDX SBOM"
KIND_CYCLONEDX = "CycloneDX SBOM"


@dataclass(frozen=True)
class Package:
    name: str
    arch: str = ""
    """Empty when the source does not say (an SBOM without purls)."""
    epoch: str | None = None
    """None when the source does not say (a report's NEVRA strings carry no epoch); "0" is no epoch."""
    version: str = ""
    release: str = ""

    @property
    def evr(self) -> str:
        """'1:2.3-4', or '2.3-4' when the epoch is 0 or unknown."""
        version_release = f"{self.version}-{self.release}" if self.release else self.version
        return f"{self.epoch}:{version_release}" if self.epoch not in (None, "", "0") else version_release

    def same_version(self, other: Package) -> bool:
        """Equal versions; an unknown epoch matches any (a report against an image)."""
        epochs_match = self.epoch is None or other.epoch is None or (self.epoch or "0") == (other.epoch or "0")
        return epochs_match and (self.version, self.release) == (other.version, other.release)


@dataclass(frozen=True)
class FileEntry:
    """One path of the image's merged tree."""

    kind: str
    """file, dir, symlink, char, block, fifo."""
    mode: int
    """Permission bits with setuid/setgid/sticky."""
    uid: int
    gid: int
    size: int = 0
    link: str = ""
    """A symlink's target."""
    sha256: str = ""
    """Of a file's content, when files were asked for."""

    def differences(self, other: FileEntry) -> list[str]:
        """What changed from self to other, in words: 'content', 'size', 'mode 0644 -> 0755', ..."""
        if self.kind != other.kind:
            return [f"type {self.kind} -> {other.kind}"]
        changes = []
        if self.size != other.size:
            changes.append("size")
        elif self.sha256 != other.sha256:
            changes.append("content")
        if self.mode != other.mode:
            changes.append(f"mode {self.mode:04o} -> {other.mode:04o}")
        if (self.uid, self.gid) != (other.uid, other.gid):
            changes.append(f"owner {self.uid}:{self.gid} -> {other.uid}:{other.gid}")
        if self.link != other.link:
            changes.append(f"target {self.link} -> {other.link}")
        return changes


@dataclass
class Inventory:
    source: str
    """What the user gave (a path or an image reference)."""
    kind: str
    packages: list[Package] = field(default_factory=list)
    files: dict[str, FileEntry] | None = None
    """'/usr/bin/hello' -> entry; None for sources that list no files (reports, SBOMs)."""


# ------------------------------------------------------------------------------------------ NEVRA and purls
def parse_nevra(text: str) -> Package:
    """'NAME-VERSION-RELEASE.ARCH' (what `rpm -qa` and mkimage's report give) -> Package, epoch unknown."""
    stem, dot, arch = text.rpartition(".")
    if not dot:
        stem, arch = text, ""
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not NAME-VERSION-RELEASE.ARCH: {text!r}")
    name, version, release = parts
    return Package(name=name, arch=arch, version=version, release=release)


def parse_evr(text: str) -> tuple[str | None, str, str]:
    """'1:2.3-4' -> ('1', '2.3', '4'); '2.3-4' -> (None, '2.3', '4'); '2.3' -> (None, '2.3', '')."""
    epoch: str | None = None
    if ":" in text:
        epoch, text = text.split(":", 1)
    version, _, release = text.rpartition("-") if "-" in text else (text, "", "")
    return epoch, version, release


@dataclass(frozen=True)
class Purl:
    type: str
    name: str
    version: str
    qualifiers: dict[str, str]


def parse_purl(text: str) -> Purl | None:
    """A package URL (pkg:rpm/fedora/bash@5.2-1?arch=x86_64&epoch=1) -> its parts; None if it is not one."""
    if not text.startswith("pkg:"):
        return None
    parts = urlsplit(text[len("pkg:"):])
    path = parts.path.lstrip("/")
    kind, _, rest = path.partition("/")
    name_part, _, version = rest.rpartition("@") if "@" in rest else (rest, "", "")
    name = unquote(name_part.rsplit("/", 1)[-1])
    qualifiers = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return Purl(kind.lower(), name, unquote(version), qualifiers)


def package_from_purl_and_version(name: str, version_info: str, purl: Purl | None) -> Package:
    epoch, version, release = parse_evr(version_info or (purl.version if purl else ""))
    arch = ""
    if purl is not None:
        arch = purl.qualifiers.get("arch", "")
        epoch = purl.qualifiers.get("epoch", epoch)
    return Package(name=name, arch=arch, epoch=epoch, version=version, release=release)


# ------------------------------------------------------------------------------------------ documents
def document_kind(data: Any) -> str | None:
    """Which of the documents we read this JSON is, or None."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("spdxVersion"), str):
        return KIND_SPDX
    if data.get("bomFormat") == "CycloneDX":
        return KIND_CYCLONEDX
    if isinstance(data.get("packages"), list) and ("build_id" in data or "mkimage_version" in data):
        return KIND_REPORT
    return None


def load_document(path: Path, data: Any, arch: str | None = None) -> Inventory:
    """A parsed JSON document -> its Inventory; BadInput when it is none of the documents we know.  The report
    of a multi-architecture build gives arch's packages (rpm's name; default this host's)."""
    kind = document_kind(data)
    if kind == KIND_REPORT and data.get("architectures"):
        data = arch_report(path, data, arch)
    readers = {KIND_REPORT: report_packages, KIND_SPDX: spdx_packages, KIND_CYCLONEDX: cyclonedx_packages}
    if kind is None:
        raise BadInput(f"{path}: JSON, but not an mkimage report, an SPDX or a CycloneDX SBOM")
    try:
        packages = list(readers[kind](data))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise BadInput(f"{path}: unreadable {kind}: {err}") from None
    return Inventory(source=str(path), kind=kind, packages=packages)


def arch_report(path: Path, report: dict[str, Any], arch: str | None) -> dict[str, Any]:
    from .arch import host
    wanted = arch or host().name
    architectures = report["architectures"]
    if wanted not in architectures:
        raise BadInput(f"{path}: the report has no {wanted} build (it has {', '.join(architectures)}); "
                       "choose one with --arch")
    return architectures[wanted]


def report_packages(report: dict[str, Any]) -> Iterator[Package]:
    """The richer package_details list when the report has one, else its NEVRA strings."""
    details = report.get("package_details")
    if isinstance(details, list) and details:
        for item in details:
            epoch = item.get("epoch")
            yield Package(name=item["name"], arch=item.get("arch") or "",
                          epoch=None if epoch is None else str(epoch),
                          version=str(item.get("version", "")), release=str(item.get("release", "")))
        return
    if report.get("status") not in (None, "success") and not report["packages"]:
        raise ValueError(f"the report is of a build that did not succeed ({report.get('status')})")
    for text in report["packages"]:
        yield parse_nevra(text)


def spdx_packages(document: dict[str, Any]) -> Iterator[Package]:
    """SPDX 2.3: every package but the one that is the image itself."""
    described = set(document.get("documentDescribes") or ())
    for relation in document.get("relationships") or ():
        if relation.get("relationshipType") == "DESCRIBES" and \
                relation.get("spdxElementId") == document.get("SPDXID", "SPDXRef-DOCUMENT"):
            described.add(relation.get("relatedSpdxElement"))
    for item in document.get("packages") or ():
        purls = [parse_purl(ref.get("referenceLocator", "")) for ref in item.get("externalRefs") or ()
                 if ref.get("referenceType") == "purl"]
        purl = next((p for p in purls if p is not None), None)
        if _is_image_itself(item.get("SPDXID") in described, item.get("primaryPackagePurpose"), purl):
            continue
        yield package_from_purl_and_version(item["name"], item.get("versionInfo", ""), purl)


def cyclonedx_packages(bom: dict[str, Any]) -> Iterator[Package]:
    """CycloneDX 1.6: the components (nested ones too); metadata.component is the image and is not among them."""
    for item in _walk_components(bom.get("components") or ()):
        purl = parse_purl(item.get("purl", "")) if item.get("purl") else None
        if purl is not None and purl.type != "rpm":
            continue
        if purl is None and item.get("type", "library") != "library":
            continue
        yield package_from_purl_and_version(item["name"], item.get("version", ""), purl)


def _walk_components(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in components:
        yield item
        yield from _walk_components(item.get("components") or ())


def _is_image_itself(described: bool, purpose: str | None, purl: Purl | None) -> bool:
    if purl is not None and purl.type in ("oci", "docker"):
        return True
    if purpose in ("CONTAINER", "OPERATING-SYSTEM"):
        return True
    return described and (purl is None or purl.type != "rpm")


def parse_json(path: Path, content: bytes) -> Any:
    try:
        return json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"{path}: not valid JSON: {err}") from None
