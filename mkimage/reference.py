"""Image names and tags, by Docker's reference grammar (distribution/reference), and release versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
NAME_MAX = 255
VERSION_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name


def split_reference(reference: str) -> ImageRef:
    """'registry:5000/team/centos:7' -> name 'registry:5000/team/centos', tag '7'."""
    name, sep, tag = reference.rpartition(":")
    if sep and "/" not in tag:
        return ImageRef(name, tag)
    return ImageRef(reference, None)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid repository name for Docker, or None."""
    if not name:
        return "the image name is empty"
    if len(name) > NAME_MAX:
        return f"image name {name!r} is longer than {NAME_MAX} characters"
    if "@" in name:
        return f"image name {name!r} holds a digest ('@'); give NAME or NAME:TAG"
    if not NAME_RE.match(name):
        hint = " (use lowercase)" if name.lower() != name and NAME_RE.match(name.lower()) else ""
        return (f"invalid image name {name!r}{hint}: use lowercase letters, digits and the separators "
                "'.', '_', '__', '-' between them, with '/' between path parts")
    return None


def tag_problem(tag: str) -> str | None:
    if not TAG_RE.match(tag):
        return (f"invalid tag {tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'")
    return None


def version_from_release(text: str) -> str | None:
    """The first (dotted) number of a release file, as the script's sed did:
    'CentOS Linux release 7.2.1511 (Core)' -> '7.2.1511', 'Amazon Linux release 2 (Karoo)' -> '2'."""
    match = VERSION_RE.search(text)
    return match.group(0) if match else None


def fallback_tag(name: str) -> str:
    """The script used NAME as the tag when it found no version; a name with a path needs its last part."""
    last = name.rsplit("/", 1)[-1]
    return last if tag_problem(last) is None else "latest"


def arch_reference(reference: str, arch: str) -> str:
    """NAME:TAG-ARCH, the tag of one architecture of a multi-architecture image in an engine that holds one
    architecture per tag: 'base/el9:9.4' -> 'base/el9:9.4-aarch64'."""
    ref = split_reference(reference)
    return f"{ref.name}:{ref.tag or 'latest'}-{arch}"
