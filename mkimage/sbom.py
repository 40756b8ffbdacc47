"""SBOMs of an image's packages: SPDX 2.3 and CycloneDX 1.6 JSON, from the image's rpm database.

One package list (``parse_query`` of ``rpm -qa --qf RPM_QUERY_FORMAT``) feeds both writers.  The documents
are deterministic: the same packages, image and creation time give the same bytes (the SPDX namespace and the
CycloneDX serial number are derived from the content, never random).

Licenses: RPM ``License:`` tags are SPDX expressions on Fedora >= 38 and EL10, and legacy Fedora short names
(``GPLv2+``, ``ASL 2.0``, ``BSD``) before.  ``spdx_license`` translates term by term: SPDX ids (any case, and
deprecated ones like ``GPL-2.0+``) become their current id, legacy names with exactly one SPDX meaning are
mapped from a table, and every other term becomes a ``LicenseRef-`` whose extracted text is the original, so an
unusual tag never makes a document invalid.  The SPDX ids come from ``spdx_ids.py`` (generated from what both
validators accept) rather than a runtime dependency on a license library.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import __version__, fullfs
from .errors import ExportError
from .oci import rfc3339
from .fsutil import ConfinementError, host_path, resolve_in_root
from .run import CommandResult, run_captured
from .staging import Staging, StagingError, create_exclusive, temp_name

if TYPE_CHECKING:
    from .context import BuildContext
from .spdx_ids import DEPRECATED_IDS, EXCEPTION_IDS, LICENSE_IDS, LICENSE_LIST_VERSION

# ------------------------------------------------------------------------------------------ rpm query
FIELD_SEP = "\x1f"
RECORD_SEP = "\x1e"
LIST_SEP = "\x1d"
ABSENT = "(none)"
QUERY_TAGS = ("NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "VENDOR", "LICENSE", "SOURCERPM", "SHA256HEADER",
              "SHA1HEADER", "SIGMD5", "URL", "SUMMARY", "BUILDTIME", "PACKAGER")
LIST_TAGS = ("PROVIDENAME", "REQUIRENAME")
# rpm before 4.14 (EL7) does not know SHA256HEADER and rejects the whole format; query_argv(sha256_header=False).
NEWER_TAGS = ("SHA256HEADER",)
PSEUDO_PACKAGES = frozenset({"gpg-pubkey"})  # imported signing keys, listed by rpm -qa but not software


def _query_format(sha256_header: bool) -> str:
    scalars = [f"%{{{tag}}}" if sha256_header or tag not in NEWER_TAGS else ABSENT for tag in QUERY_TAGS]
    lists = [f"[%{{{tag}}}{LIST_SEP}]" for tag in LIST_TAGS]
    return FIELD_SEP.join(scalars + lists) + RECORD_SEP


RPM_QUERY_FORMAT = _query_format(sha256_header=True)


def query_argv(rpm_prefix: Sequence[str], *, sha256_header: bool = True) -> list[str]:
    """``rpm ... -qa --qf FORMAT``: one record per installed package, fields separated by control characters."""
    return [*rpm_prefix, "-qa", "--qf", _query_format(sha256_header)]


@dataclass(frozen=True)
class RpmPackage:
    name: str
    version: str
    release: str
    arch: str
    epoch: int | None = None
    vendor: str | None = None
    license: str | None = None
    sourcerpm: str | None = None
    digest: tuple[str, str] | None = None
    """(algorithm as SPDX names it: SHA256, SHA1 or MD5, hex): the header digest rpm stores."""
    url: str | None = None
    summary: str | None = None
    buildtime: int | None = None
    packager: str | None = None
    provides: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def evr(self) -> str:
        """[EPOCH:]VERSION-RELEASE"""
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"

    def purl(self, os_release: Mapping[str, str]) -> str:
        """pkg:rpm/ID/NAME@VERSION-RELEASE?arch=ARCH&distro=ID-VERSION_ID&epoch=EPOCH (qualifiers sorted)."""
        distro_id = os_release_id(os_release)
        qualifiers = {"arch": self.arch, "distro": distro_name(os_release)}
        if self.epoch is not None:
            qualifiers["epoch"] = str(self.epoch)
        return build_purl("rpm", distro_id, self.name, f"{self.version}-{self.release}", qualifiers)


def _value(text: str) -> str | None:
    return None if text in ("", ABSENT) else text


def _int_value(text: str) -> int | None:
    value = _value(text)
    return int(value) if value is not None and value.isdigit() else None


def _list_value(text: str) -> tuple[str, ...]:
    return tuple(sorted({item for item in text.split(LIST_SEP) if item}))


def _digest(sha256: str | None, sha1: str | None, md5: str | None) -> tuple[str, str] | None:
    for algorithm, value, length in (("SHA256", sha256, 64), ("SHA1", sha1, 40), ("MD5", md5, 32)):
        if value is not None and re.fullmatch(f"[0-9a-f]{{{length}}}", value.lower()):
            return algorithm, value.lower()
    return None


class QueryFormatError(ValueError):
    """rpm's output does not have the fields RPM_QUERY_FORMAT asks for."""


def parse_query(stdout: str) -> list[RpmPackage]:
    """The packages in the output of ``query_argv``, sorted by name, version and arch; gpg-pubkey left out."""
    packages = []
    expected = len(QUERY_TAGS) + len(LIST_TAGS)
    for record in stdout.split(RECORD_SEP):
        if not record.strip():
            continue
        fields = record.lstrip("\n").split(FIELD_SEP)
        if len(fields) != expected:
            raise QueryFormatError(f"rpm printed a record with {len(fields)} fields, expected {expected}")
        values = dict(zip(QUERY_TAGS + LIST_TAGS, fields))
        if values["NAME"] in PSEUDO_PACKAGES:
            continue
        packages.append(RpmPackage(
            name=values["NAME"], version=values["VERSION"], release=values["RELEASE"],
            arch=_value(values["ARCH"]) or "noarch", epoch=_int_value(values["EPOCH"]),
            vendor=_value(values["VENDOR"]), license=_value(values["LICENSE"]),
            sourcerpm=_value(values["SOURCERPM"]),
            digest=_digest(_value(values["SHA256HEADER"]), _value(values["SHA1HEADER"]), _value(values["SIGMD5"])),
            url=_value(values["URL"]), summary=_value(values["SUMMARY"]), buildtime=_int_value(values["BUILDTIME"]),
            packager=_value(values["PACKAGER"]), provides=_list_value(values["PROVIDENAME"]),
            requires=_list_value(values["REQUIRENAME"]),
        ))
    return _sorted(packages)


# ------------------------------------------------------------------------------------------ os-release
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
OS_RELEASE_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def read_os_release(root: Path) -> dict[str, str]:
    """The image's os-release (first of /etc/os-release, /usr/lib/os-release), resolved inside ``root``;
    {} when it has none."""
    for image_path in OS_RELEASE_PATHS:
        try:
            real = host_path(root, resolve_in_root(root, image_path))
            if real.is_file():
                return parse_os_release(real.read_text(encoding="utf-8", errors="replace"))
        except (ConfinementError, OSError):
            continue
    return {}


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        match = OS_RELEASE_LINE.match(line.strip())
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def os_release_id(os_release: Mapping[str, str]) -> str:
    """os-release(5): ID defaults to "linux"."""
    return os_release.get("ID", "").strip().lower() or "linux"


def distro_name(os_release: Mapping[str, str]) -> str:
    version = os_release.get("VERSION_ID", "").strip()
    return f"{os_release_id(os_release)}-{version}" if version else os_release_id(os_release)


# ------------------------------------------------------------------------------------------ purl
PURL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_~:")


def purl_encode(text: str) -> str:
    """Percent-encode a purl component: only alphanumerics, '.-_~' and ':' stay as they are."""
    return "".join(chr(byte) if chr(byte) in PURL_SAFE else f"%{byte:02X}" for byte in text.encode("utf-8"))


def build_purl(purl_type: str, namespace: str | None, name: str, version: str | None,
               qualifiers: Mapping[str, str]) -> str:
    purl = f"pkg:{purl_type}/"
    if namespace:
        purl += "/".join(purl_encode(segment) for segment in namespace.split("/") if segment) + "/"
    purl += purl_encode(name)
    if version:
        purl += "@" + purl_encode(version)
    pairs = [f"{key}={purl_encode(value)}" for key, value in sorted(qualifiers.items()) if value]
    return purl + ("?" + "&".join(pairs) if pairs else "")


# ------------------------------------------------------------------------------------------ the image
@dataclass(frozen=True)
class ImageSubject:
    """The image an SBOM describes."""

    name: str
    """repository as the user named it: ``centos72``, ``registry:5000/team/base``"""
    tag: str
    digest: str | None
    """``sha256:HEX`` (docker's image id, or the manifest digest once known); None when unknown"""
    created: int
    """the image's creation time, seconds since the epoch (SPDX created, CycloneDX timestamp)"""

    @property
    def digest_hex(self) -> str | None:
        if self.digest and re.fullmatch(r"sha256:[0-9a-f]{64}", self.digest):
            return self.digest.split(":", 1)[1]
        return None

    def purl(self) -> str | None:
        """pkg:oci/NAME@sha256:HEX?repository_url=REGISTRY/PATH&tag=TAG; None without a digest."""
        if self.digest_hex is None:
            return None
        qualifiers = {"tag": self.tag}
        if _has_registry(self.name):
            qualifiers["repository_url"] = self.name
        return build_purl("oci", None, self.name.rsplit("/", 1)[-1].lower(), f"sha256:{self.digest_hex}", qualifiers)


def _has_registry(name: str) -> bool:
    first, _, rest = name.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


# ------------------------------------------------------------------------------------------ licenses
@dataclass(frozen=True)
class ExtractedLicense:
    """A license term with no SPDX id: its LicenseRef id and the original text."""

    license_id: str
    text: str


# Legacy Fedora/EL short names with exactly one SPDX meaning (lower-cased keys).  Ambiguous ones (BSD, LGPLv2+,
# which Fedora used for both LGPL-2.0 and LGPL-2.1, "GPLv2+ with exceptions", Public Domain, GFDL ...) are left
# out on purpose: they become LicenseRefs with their original text.
LEGACY_NAMES = {
    "gpl+": "GPL-1.0-or-later", "gplv1": "GPL-1.0-only",
    "gplv2": "GPL-2.0-only", "gplv2+": "GPL-2.0-or-later",
    "gplv3": "GPL-3.0-only", "gplv3+": "GPL-3.0-or-later",
    "lgplv2.1": "LGPL-2.1-only", "lgplv2.1+": "LGPL-2.1-or-later",
    "lgplv3": "LGPL-3.0-only", "lgplv3+": "LGPL-3.0-or-later",
    "agplv3": "AGPL-3.0-only", "agplv3+": "AGPL-3.0-or-later",
    "asl 1.0": "Apache-1.0", "asl 1.1": "Apache-1.1", "asl 2.0": "Apache-2.0",
    "mplv1.0": "MPL-1.0", "mplv1.1": "MPL-1.1", "mplv2.0": "MPL-2.0",
    "boost": "BSL-1.0", "zlib": "Zlib", "openssl": "OpenSSL", "isc": "ISC", "mit": "MIT",
    "artistic 2.0": "Artistic-2.0", "artistic clarified": "ClArtistic",
    "cc0": "CC0-1.0", "zplv2.1": "ZPL-2.1", "zplv2.0": "ZPL-2.0", "eplv1.0": "EPL-1.0", "eplv2.0": "EPL-2.0",
    "python": "Python-2.0", "bitstream vera": "Bitstream-Vera", "ofl": "OFL-1.1",
}
_LICENSE_IDS_BY_LOWER = {spdx_id.lower(): spdx_id for spdx_id in LICENSE_IDS}
_EXCEPTION_IDS_BY_LOWER = {spdx_id.lower(): spdx_id for spdx_id in EXCEPTION_IDS}
_DEPRECATED_BY_LOWER = {alias.lower(): current for alias, current in DEPRECATED_IDS.items()}
_OPERATORS = ("and", "or", "with")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_LICENSE_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")


def spdx_license_id(term: str) -> str | None:
    """The current SPDX license id for one term (an SPDX id in any case, a deprecated id, a legacy name)."""
    lowered = " ".join(term.split()).lower()
    if lowered in _LICENSE_IDS_BY_LOWER:
        return _LICENSE_IDS_BY_LOWER[lowered]
    if lowered in _DEPRECATED_BY_LOWER:
        return _DEPRECATED_BY_LOWER[lowered]
    return LEGACY_NAMES.get(lowered)


def spdx_exception_id(term: str) -> str | None:
    return _EXCEPTION_IDS_BY_LOWER.get(" ".join(term.split()).lower())


def license_ref(text: str) -> ExtractedLicense:
    """LicenseRef-TEXT when the text is already a valid id, else a readable form plus a hash (unique per text)."""
    if re.fullmatch(r"[A-Za-z0-9.-]+", text):
        return ExtractedLicense(f"LicenseRef-{text}", text)
    readable = _LICENSE_REF_CHARS.sub("-", text.replace("+", "-plus")).strip("-")[:60]
    suffix = hashlib.sha256(text.encode()).hexdigest()[:8]
    return ExtractedLicense(f"LicenseRef-{readable}-{suffix}" if readable else f"LicenseRef-{suffix}", text)


@dataclass
class _Translation:
    parts: list[str] = field(default_factory=list)
    extracted: list[ExtractedLicense] = field(default_factory=list)

    def add_term(self, words: list[str]) -> None:
        text = " ".join(words)
        spdx_id = spdx_license_id(text)
        if spdx_id is not None:
            self.parts.append(spdx_id)
            return
        ref = license_ref(text)
        self.parts.append(ref.license_id)
        if ref not in self.extracted:
            self.extracted.append(ref)


def spdx_license(rpm_license: str | None) -> tuple[str, list[ExtractedLicense]]:
    """An RPM License tag as a valid SPDX expression, and the LicenseRefs it uses (with their original text).

    ``and``/``or``/``with`` are operators in any case; parentheses are kept; ``L with E`` stays a WITH where E
    is an SPDX exception, else the whole ``L with E`` is one term (``GPLv2+ with exceptions``).  A tag that is
    not a well-formed expression becomes a single LicenseRef.  No tag: NOASSERTION.
    """
    if rpm_license is None or not rpm_license.strip():
        return "NOASSERTION", []
    translation = _translate(_TOKEN.findall(rpm_license))
    if translation is None:
        ref = license_ref(" ".join(rpm_license.split()))
        return ref.license_id, [ref]
    return " ".join(translation.parts).replace("( ", "(").replace(" )", ")"), translation.extracted


def _translate(tokens: list[str]) -> _Translation | None:
    """Token-level translation with a check that the result is well-formed; None when it is not."""
    out = _Translation()
    depth, expect_operand, index = 0, True, 0
    term: list[str] = []
    while index < len(tokens):
        token, lowered = tokens[index], tokens[index].lower()
        index += 1
        if lowered == "with" and term:
            exception_words = _words_until_operator(tokens, index)
            if not exception_words:
                return None
            index += len(exception_words)
            _add_with(out, term, token, exception_words)
            term, expect_operand = [], False
        elif lowered in _OPERATORS:
            if term:
                out.add_term(term)
                term = []
            elif expect_operand or lowered == "with":
                return None
            out.parts.append(lowered.upper())
            expect_operand = True
        elif token == "(":
            if term or not expect_operand:
                return None
            depth += 1
            out.parts.append("(")
        elif token == ")":
            if term:
                out.add_term(term)
                term = []
            elif expect_operand:
                return None
            depth -= 1
            if depth < 0:
                return None
            out.parts.append(")")
            expect_operand = False
        elif expect_operand or term:
            term.append(token)
        else:
            return None
    if term:
        out.add_term(term)
    elif expect_operand:
        return None
    return out if depth == 0 else None


def _add_with(out: _Translation, license_words: list[str], keyword: str, exception_words: list[str]) -> None:
    """``L with E``: an SPDX WITH when both sides are SPDX ids, else one term (``GPLv2+ with exceptions``)."""
    license_id = spdx_license_id(" ".join(license_words))
    exception = spdx_exception_id(" ".join(exception_words))
    if license_id is not None and exception is not None:
        out.parts += [license_id, "WITH", exception]
    else:
        out.add_term([*license_words, keyword, *exception_words])


def _words_until_operator(tokens: list[str], start: int) -> list[str]:
    words = []
    for token in tokens[start:]:
        if token in ("(", ")") or token.lower() in _OPERATORS:
            break
        words.append(token)
    return words


# ------------------------------------------------------------------------------------------ shared
def _sorted(packages: Sequence[RpmPackage]) -> list[RpmPackage]:
    return sorted(packages, key=lambda p: (p.name, p.evr, p.arch))


def _package_ids(packages: Sequence[RpmPackage]) -> dict[str, str]:
    """A stable, unique element id per package (nevra made id-safe, plus a short hash against collisions)."""
    ids = {}
    for package in packages:
        safe = re.sub(r"[^A-Za-z0-9.-]+", "-", package.nevra).strip("-")
        ids[package.nevra] = f"SPDXRef-Package-rpm-{safe}-{hashlib.sha256(package.nevra.encode()).hexdigest()[:8]}"
    return ids


def dependencies(packages: Sequence[RpmPackage]) -> dict[str, list[str]]:
    """nevra -> the nevras of the other installed packages that provide what it requires.

    Resolved against rpm's Provides; file requires resolve only where a package provides the path explicitly
    (as bash provides /bin/sh), rpmlib() and rich (boolean) requires are skipped.
    """
    providers: dict[str, set[str]] = {}
    for package in packages:
        for capability in package.provides:
            providers.setdefault(capability, set()).add(package.nevra)
    result = {}
    for package in packages:
        needed = set()
        for capability in package.requires:
            if capability.startswith(("rpmlib(", "(")):
                continue
            needed |= providers.get(capability, set())
        needed.discard(package.nevra)
        result[package.nevra] = sorted(needed)
    return result


def _content_uuid(document: Mapping[str, Any]) -> uuid.UUID:
    """A name-based UUID of the document's content: equal inputs give the equal identifiers."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return uuid.uuid5(uuid.NAMESPACE_URL, "mkimage-sbom:" + hashlib.sha256(canonical.encode()).hexdigest())


def _homepage(url: str | None) -> str | None:
    """Only plain http(s)/ftp URLs (a free-form URL tag must not make a document invalid)."""
    if url and re.fullmatch(r"(https?|ftp)://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?", url):
        return url
    return None


# ------------------------------------------------------------------------------------------ SPDX 2.3
SPDX_IMAGE_ID = "SPDXRef-Image"
SPDX_NAMESPACE_BASE = "https://spdx.org/spdxdocs/mkimage"


def spdx_document(packages: Sequence[RpmPackage], subject: ImageSubject, os_release: Mapping[str, str],
                  tool: str = f"mkimage-{__version__}") -> dict[str, Any]:
    """An SPDX 2.3 document: the image (documentDescribes) CONTAINS each package; packages DEPENDS_ON others."""
    packages = _sorted(packages)
    package_ids = _package_ids(packages)
    extracted: dict[str, ExtractedLicense] = {}
    spdx_packages = [_spdx_image(subject)]
    for package in packages:
        spdx_packages.append(_spdx_package(package, package_ids[package.nevra], os_release, extracted))
    relationships = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", SPDX_IMAGE_ID)]
    relationships += [_relationship(SPDX_IMAGE_ID, "CONTAINS", package_ids[p.nevra]) for p in packages]
    for nevra, needed in dependencies(packages).items():
        relationships += [_relationship(package_ids[nevra], "DEPENDS_ON", package_ids[other]) for other in needed]
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{subject.name}:{subject.tag}",
        "documentNamespace": "",
        "creationInfo": {
            "created": rfc3339(subject.created),
            "creators": [f"Tool: {tool}"],
            "licenseListVersion": ".".join(LICENSE_LIST_VERSION.split(".")[:2]),
        },
        "documentDescribes": [SPDX_IMAGE_ID],
        "packages": spdx_packages,
        "relationships": relationships,
    }
    if extracted:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref.license_id, "extractedText": ref.text, "name": ref.text}
            for ref in sorted(extracted.values(), key=lambda ref: ref.license_id)
        ]
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{subject.name}-{subject.tag}")
    document["documentNamespace"] = f"{SPDX_NAMESPACE_BASE}/{safe_name}-{_content_uuid(document)}"
    return document


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _spdx_image(subject: ImageSubject) -> dict[str, Any]:
    image: dict[str, Any] = {
        "SPDXID": SPDX_IMAGE_ID,
        "name": subject.name,
        "versionInfo": subject.tag,
        "primaryPackagePurpose": "CONTAINER",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "releaseDate": rfc3339(subject.created),
    }
    if subject.digest_hex:
        image["checksums"] = [{"algorithm": "SHA256", "checksumValue": subject.digest_hex}]
    purl = subject.purl()
    if purl:
        image["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": purl}]
    return image


def _spdx_package(package: RpmPackage, spdx_id: str, os_release: Mapping[str, str],
                  extracted: dict[str, ExtractedLicense]) -> dict[str, Any]:
    expression, refs = spdx_license(package.license)
    for ref in refs:
        extracted[ref.license_id] = ref
    entry: dict[str, Any] = {
        "SPDXID": spdx_id,
        "name": package.name,
        "versionInfo": package.evr,
        "supplier": f"Organization: {_actor_name(package.vendor)}" if package.vendor else "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": expression,
        "copyrightText": "NOASSERTION",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": package.purl(os_release)}],
    }
    if package.license and expression != package.license:
        entry["licenseComments"] = f"RPM License tag: {package.license}"
    if package.digest:
        entry["checksums"] = [{"algorithm": package.digest[0], "checksumValue": package.digest[1]}]
        entry["comment"] = "checksums: the RPM header digest rpm recorded for this package"
    if package.sourcerpm:
        entry["sourceInfo"] = f"built from the source RPM {package.sourcerpm}"
    if package.summary:
        entry["summary"] = package.summary
    homepage = _homepage(package.url)
    if homepage:
        entry["homepage"] = homepage
    if package.buildtime is not None:
        entry["builtDate"] = rfc3339(package.buildtime)
    return entry


def _actor_name(text: str) -> str:
    """SPDX actors read "NAME (EMAIL)": keep a vendor's own parentheses from being taken for an email."""
    return " ".join(text.replace("(", "[").replace(")", "]").split())


# ------------------------------------------------------------------------------------------ CycloneDX 1.6
CDX_IMAGE_REF = "image"


def cyclonedx_document(packages: Sequence[RpmPackage], subject: ImageSubject, os_release: Mapping[str, str],
                       tool: str = f"mkimage-{__version__}") -> dict[str, Any]:
    """A CycloneDX 1.6 BOM: the image is metadata.component; each package a component it depends on."""
    packages = _sorted(packages)
    refs = {package.nevra: package.purl(os_release) for package in packages}
    components = [_cdx_component(package, refs[package.nevra], os_release) for package in packages]
    image_dependencies = {"ref": CDX_IMAGE_REF, "dependsOn": sorted(refs.values())}
    package_dependencies = [{"ref": refs[nevra], "dependsOn": sorted(refs[other] for other in needed)}
                            for nevra, needed in dependencies(packages).items()]
    tool_name, _, tool_version = tool.rpartition("-")
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(subject.created),
            "tools": {"components": [{"type": "application", "name": tool_name or tool,
                                      **({"version": tool_version} if tool_name else {})}]},
            "component": _cdx_image(subject),
        },
        "components": components,
        "dependencies": [image_dependencies, *package_dependencies],
    }
    document["serialNumber"] = f"urn:uuid:{_content_uuid(document)}"
    return document


def _cdx_image(subject: ImageSubject) -> dict[str, Any]:
    image: dict[str, Any] = {"type": "container", "bom-ref": CDX_IMAGE_REF, "name": subject.name,
                             "version": subject.tag}
    if subject.digest_hex:
        image["hashes"] = [{"alg": "SHA-256", "content": subject.digest_hex}]
    purl = subject.purl()
    if purl:
        image["purl"] = purl
    return image


CDX_HASH_NAMES = {"SHA256": "SHA-256", "SHA1": "SHA-1", "MD5": "MD5"}


def _cdx_component(package: RpmPackage, purl: str, os_release: Mapping[str, str]) -> dict[str, Any]:
    component: dict[str, Any] = {"type": "library", "bom-ref": purl, "name": package.name, "version": package.evr}
    if package.vendor:
        component["supplier"] = {"name": package.vendor}
    if package.summary:
        component["description"] = package.summary
    licenses = _cdx_licenses(package.license)
    if licenses:
        component["licenses"] = licenses
    if package.digest:
        component["hashes"] = [{"alg": CDX_HASH_NAMES[package.digest[0]], "content": package.digest[1]}]
    component["purl"] = purl
    homepage = _homepage(package.url)
    if homepage:
        component["externalReferences"] = [{"type": "website", "url": homepage}]
    properties = [("mkimage:rpm:arch", package.arch), ("mkimage:rpm:sourcerpm", package.sourcerpm),
                  ("mkimage:rpm:epoch", None if package.epoch is None else str(package.epoch)),
                  ("mkimage:rpm:license", package.license)]
    component["properties"] = [{"name": name, "value": value} for name, value in properties if value is not None]
    return component


def _cdx_licenses(rpm_license: str | None) -> list[dict[str, Any]]:
    """A single SPDX id as license.id, a pure SPDX expression as expression, anything else by its name."""
    if not rpm_license or not rpm_license.strip():
        return []
    expression, refs = spdx_license(rpm_license)
    if refs:
        return [{"license": {"name": " ".join(rpm_license.split()), "acknowledgement": "declared"}}]
    if expression in LICENSE_IDS:
        return [{"license": {"id": expression, "acknowledgement": "declared"}}]
    return [{"expression": expression, "acknowledgement": "declared"}]


# ------------------------------------------------------------------------------------------ output
def sbom_bytes(document: Mapping[str, Any]) -> bytes:
    """2-space JSON, trailing newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def stage_sbom(path: Path, document: Mapping[str, Any], staging: Staging, label: str | None = None) -> None:
    """Write the document under a temp name beside path; staging.publish() moves it into place."""
    data = sbom_bytes(document)
    temporary = temp_name(path)
    try:
        fd = create_exclusive(temporary)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    staging.add(temporary, path, label or f"sbom {path}")


def write_sbom(path: Path, document: Mapping[str, Any]) -> None:
    """Write the document atomically (a reader never sees half of it)."""
    staging = Staging()
    try:
        stage_sbom(path, document, staging)
        staging.publish()
    except StagingError as err:
        staging.discard()
        raise err.error from None
    except BaseException:
        staging.discard()
        raise
    staging.commit()


SBOM_FORMATS = {"spdx": spdx_document, "cyclonedx": cyclonedx_document}


def sbom_document(sbom_format: str, packages: Sequence[RpmPackage], subject: ImageSubject,
                  os_release: Mapping[str, str], tool: str = f"mkimage-{__version__}") -> dict[str, Any]:
    """The document in ``sbom_format`` (a key of SBOM_FORMATS)."""
    return SBOM_FORMATS[sbom_format](packages, subject, os_release, tool)


# ------------------------------------------------------------------------------------------- the stage
@dataclass(frozen=True)
class SbomRequest:
    """--sbom [FORMAT:]PATH"""

    format: str
    path: Path


def parse_request(text: str, default_format: str) -> SbomRequest:
    """'cyclonedx:out.json' -> (cyclonedx, out.json); a path without a known format prefix takes the default."""
    prefix, sep, rest = text.partition(":")
    if sep and prefix in SBOM_FORMATS:
        return SbomRequest(prefix, Path(rest))
    return SbomRequest(default_format, Path(text))


def query_image(rpm_prefix: Sequence[str], run: Callable[[list[str]], CommandResult]) -> list[RpmPackage]:
    """The packages of the image's database; rpm before 4.14 (EL7) knows no SHA256HEADER and gets asked again."""
    result = run(query_argv(rpm_prefix))
    if not result.ok and any("unknown tag" in line.lower() for line in result.tail):
        result = run(query_argv(rpm_prefix, sha256_header=False))
    if not result.ok:
        raise ExportError("cannot read the image's packages for the SBOM: " + " ".join(result.tail[-2:]))
    try:
        return parse_query(result.stdout)
    except QueryFormatError as err:
        raise ExportError(f"cannot read the image's packages for the SBOM: {err}") from None


def stage_requested(requests: Sequence[SbomRequest], packages: Sequence[RpmPackage], subject: ImageSubject,
                    os_release: Mapping[str, str], staging: Staging) -> None:
    """Write every requested document under a temp name beside its path (moved into place with the outputs)."""
    for request in requests:
        try:
            stage_sbom(request.path, sbom_document(request.format, packages, subject, os_release), staging,
                       sbom_label(request))
        except OSError as err:
            raise ExportError(f"cannot write the SBOM {request.path}: {fullfs.reason(err, request.path)}") from None


def sbom_label(request: SbomRequest) -> str:
    """How the report names it: 'sbom /srv/x.spdx.json'."""
    return f"sbom {request.path}"


def stage(ctx: BuildContext) -> None:
    """The packages of the final image's database, described as SPDX or CycloneDX documents, written aside: they
    move into place with the outputs, once everything else is ready."""
    prefix = ["rpm", "--root", str(ctx.rootfs), "--dbpath", ctx.result.rpmdb.path or "/var/lib/rpm"]
    packages = query_image(prefix, lambda argv: run_captured(argv, log=ctx.log, env=ctx.tool_env, timeout=300))
    subject = ImageSubject(ctx.spec.name, ctx.result.tag, ctx.result.image_id, ctx.result.created)
    stage_requested(ctx.spec.sboms, packages, subject, read_os_release(ctx.rootfs), ctx.delivery.staging)
    for request in ctx.spec.sboms:
        ctx.ui.info(f"SBOM written aside for {request.path}")
