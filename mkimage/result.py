"""What a build did, for the closing summary and the JSON report (--report) pipelines parse."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import capped
from .staging import ReservedFile
from .ui import human_bytes

REPORT_FORMAT = 1


@dataclass
class ProfileOutcome:
    applied: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    files_set: list[str] = field(default_factory=list)
    commands_run: list[list[str]] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    removed_entries: int = 0
    bytes_freed: int = 0
    setuid_stripped: list[str] = field(default_factory=list)
    world_writable_fixed: list[str] = field(default_factory=list)
    secrets_removed: list[str] = field(default_factory=list)
    pkg_logs_removed: list[str] = field(default_factory=list)
    root_locked: bool = False
    machine_id_emptied: bool = False
    rpmdb_bytes_before: int | None = None
    rpmdb_bytes_after: int | None = None


@dataclass
class RpmdbOutcome:
    """Where the image's rpm database ended up, and whether the image's own rpm can read it."""

    path: str | None = None
    backend: str | None = None
    host_backend: str | None = None
    """What this host's rpm wrote."""
    image_backend: str | None = None
    """What the image's own rpm is configured for (None: the image has no rpm configuration)."""
    image_has_rpm: bool = False
    converted: bool = False
    readable_by_image_rpm: bool | None = None
    """None when the image has no rpm to ask."""
    side_files_removed: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    name: str = ""
    build_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Also the value of the image's mkimage.build-id label."""
    tag: str | None = None
    status: str = "running"
    exit_code: int | None = None
    error: str | None = None
    error_kind: str | None = None
    problems: list[str] = field(default_factory=list)
    """Everything preflight found wrong (bad input), one sentence each."""
    image_id: str | None = None
    image_size: int | None = None
    engine: str | None = None
    """docker or podman; None when no image was made (--rootfs-only)."""
    tags: list[str] = field(default_factory=list)
    """Every reference the image was tagged with: NAME:TAG, then the --extra-tag ones."""
    replaced_images_removed: list[str] = field(default_factory=list)
    """Images these tags pointed to before, removed because nothing else used them."""
    replaced_images_kept: list[dict[str, str]] = field(default_factory=list)
    """Images these tags pointed to before and that stay: {"image_id", "reason"}."""
    packages: list[str] = field(default_factory=list)
    package_manager: str | None = None
    releasever: str | None = None
    """The release version the package manager used (given, or detected on this host); None: none."""
    cachedir: str | None = None
    """The package manager's cache inside the rootfs, as it resolves the config's cachedir."""
    ignored_options: list[str] = field(default_factory=list)
    """Options of the config the package manager does not know and ignores (yum 3's distroverpkg under dnf)."""
    bytes_streamed: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scriptlet_failures: list[str] = field(default_factory=list)
    smoke_commands: list[list[str]] = field(default_factory=list)
    profile: ProfileOutcome = field(default_factory=ProfileOutcome)
    rpmdb: RpmdbOutcome = field(default_factory=RpmdbOutcome)
    rootfs: str | None = None
    rootfs_in_memory: bool = False
    sandboxed: bool = True
    """False with --no-sandbox: scriptlets and chroot commands ran uncontained."""
    rootfs_kept: bool = False
    log_file: str | None = None
    peak_rss_bytes: int | None = None
    """mkimage's own peak resident memory, not its children's (dnf, tar, docker)."""
    created: int = field(default_factory=lambda: int(time.time()))
    """The image's creation time: the build's start, or SOURCE_DATE_EPOCH in a reproducible build."""
    inputs: str | None = None
    """The mkimage.inputs digest: repositories' metadata, request, resolved profile, mkimage's version."""
    inputs_repositories: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    reproducible: bool = False
    reproducible_scrubbed: list[str] = field(default_factory=list)
    sboms: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    archive: dict[str, Any] = field(default_factory=dict)
    """The image mkimage wrote itself: image_id (config digest), manifest_digest, layer."""
    pushed: list[str] = field(default_factory=list)
    """NAME:TAG@sha256:... for every tag pushed."""
    published: bool = False
    """Everything asked for is in place (outputs, SBOMs, tags, pushed tags); false when anything was put back."""
    not_published: list[str] = field(default_factory=list)
    """What was asked for and is not in place: 'output FORMAT:PATH', 'sbom PATH', 'tag NAME:TAG', 'push NAME:TAG'."""
    smoke_tested: bool = False
    arch: str | None = None
    """The architecture this result is of (rpm's name); None for a multi-architecture build's whole result."""
    platform: str | None = None
    """Its OCI platform: linux/amd64, linux/arm64/v8."""
    architectures: dict[str, "BuildResult"] = field(default_factory=dict)
    """A multi-architecture build's result of each architecture (packages, image, stages, inputs, SBOMs)."""
    engine_tags: dict[str, str] = field(default_factory=dict)
    """A multi-architecture build's local tags: {reference: architecture} (docker holds one per tag)."""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name

    def summary_items(self) -> list[tuple[str, str]]:
        items = []
        if self.image_id:
            items.append(("image", self.reference))
            items.append(("image id", self.image_id))
        if self.engine:
            items.append(("engine", self.engine))
        for reference in self.tags[1:]:
            items.append(("also tagged", reference))
        for image_id in self.replaced_images_removed:
            items.append(("removed replaced image", image_id))
        for kept in self.replaced_images_kept:
            items.append(("kept replaced image", f"{kept['image_id']} ({kept['reason']})"))
        if self.image_size is not None:
            items.append(("size", human_bytes(self.image_size)))
        if self.packages:
            items.append(("packages", str(len(self.packages))))
        outcome = self.profile
        items.append(("profiles", ", ".join(outcome.applied) or "-"))
        if outcome.removed_entries:
            items.append(("removed", f"{outcome.removed_entries} entries, {human_bytes(outcome.bytes_freed)} freed"))
        if outcome.setuid_stripped:
            items.append(("setuid/setgid stripped", ", ".join(outcome.setuid_stripped)))
        hardening = [text for done, text in (
            (outcome.root_locked, "root locked"),
            (outcome.machine_id_emptied, "machine-id emptied"),
            (outcome.secrets_removed, f"{len(outcome.secrets_removed)} per-host secrets removed"),
            (outcome.pkg_logs_removed, f"{len(outcome.pkg_logs_removed)} package-manager logs removed"),
            (outcome.world_writable_fixed, f"{len(outcome.world_writable_fixed)} world-writable entries fixed"),
        ) if done]
        if hardening:
            items.append(("hardening", ", ".join(hardening)))
        if outcome.commands_run:
            items.append(("commands run", str(len(outcome.commands_run))))
        if outcome.rpmdb_bytes_before is not None and outcome.rpmdb_bytes_after is not None:
            items.append(("rpmdb", f"{human_bytes(outcome.rpmdb_bytes_before)} -> "
                                   f"{human_bytes(outcome.rpmdb_bytes_after)}"))
        if self.rpmdb.path:
            items.append(("rpm database", self.rpmdb_summary()))
        if self.bytes_streamed:
            items.append(("streamed", human_bytes(self.bytes_streamed)))
        for failure in self.scriptlet_failures:
            items.append(("scriptlet failed", failure))
        for warning in self.warnings:
            items.append(("warning", warning))
        stage_times = " ".join(f"{name}={seconds:.1f}s" for name, seconds in self.stages.items())
        items.append(("stages", stage_times))
        items.append(("total", f"{sum(self.stages.values()):.1f}s"))
        if self.rootfs_kept and self.rootfs:
            items.append(("rootfs kept", self.rootfs))
        return items + self.arch_items()

    def arch_items(self) -> list[tuple[str, str]]:
        """A multi-architecture build: each architecture's image, packages and stage times, and what the
        engine's tags point to."""
        items = []
        for reference, arch in self.engine_tags.items():
            items.append(("engine tag", f"{reference} -> {arch}"))
        for arch, result in self.architectures.items():
            image = f"image {result.image_id[:19]}, " if result.image_id else ""
            items.append((arch, f"{image}{len(result.packages)} packages, {result.platform}"))
            items += [(f"{arch} {key}", value) for key, value in result.summary_items()
                      if key in ("scriptlet failed", "warning", "rpm database", "rootfs kept")]
            stage_times = " ".join(f"{name}={seconds:.1f}s" for name, seconds in result.stages.items())
            items.append((f"{arch} stages", stage_times))
        return items

    def rpmdb_summary(self) -> str:
        db = self.rpmdb
        readable = {None: "no rpm in the image", True: "readable by the image's rpm",
                    False: "NOT readable by the image's rpm"}[db.readable_by_image_rpm]
        converted = f", converted from {db.host_backend}" if db.converted else ""
        return f"{db.path} ({db.backend}{converted}), {readable}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(format=REPORT_FORMAT, mkimage_version=__version__, reference=self.reference,
                    package_count=len(self.packages), total_seconds=round(sum(self.stages.values()), 3))
        data["stages"] = {name: round(seconds, 3) for name, seconds in self.stages.items()}
        data["architectures"] = {arch: result.to_json() for arch, result in self.architectures.items()}
        if self.error is not None:
            data["error"] = capped(self.error)
        return data

    def report_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8")

    def write_report(self, path: Path, reserved: ReservedFile | None = None) -> None:
        """Written atomically (a pipeline never reads half a report), into the space reserved for it when there
        is a reservation; never over anything but a regular file."""
        (reserved or ReservedFile(path)).write(self.report_bytes())
