"""What a build consumed and when: the `mkimage.inputs` digest and the provenance labels every image carries.

The inputs are worked out before anything is installed: the repositories' metadata (`repomd.xml`, as the
package manager fetched it into the rootfs's cache with `makecache`, which the install then reuses), the request
and the resolved profile, the package manager, and mkimage's version.  The same inputs install the same packages,
so a build whose inputs match an existing image's label can be skipped (--skip-unchanged).
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import json
import lzma
import re
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from . import __version__, cache, fullfs, publish
from .context import BuildContext
from .oci import rfc3339
from .errors import BadInput, InstallError, Unchanged
from .installer.output import FAILURE_PATTERNS, failure_hints
from .run import relevant_lines, run_streaming

INPUTS_LABEL = "mkimage.inputs"
CREATED_LABEL = "org.opencontainers.image.created"
VERSION_LABEL = "org.opencontainers.image.version"
TITLE_LABEL = "org.opencontainers.image.title"
DNF_CACHE_SUFFIX = re.compile(r"-[0-9a-f]{16}$")


def cached_repomds(cache_dir: Path, repo_ids: set[str]) -> Iterator[tuple[str, Path, Path]]:
    """(repo id, its repomd.xml, the repository's cache dir) for each of the enabled repositories in the package
    manager's cache (dnf: ID-HASH/repodata/repomd.xml; yum 3: ARCH/RELEASEVER/ID/repomd.xml)."""
    for repomd in sorted(cache_dir.rglob("repomd.xml")):
        directory = repomd.parent.parent if repomd.parent.name == "repodata" else repomd.parent
        repo_id = DNF_CACHE_SUFFIX.sub("", directory.name)
        if repo_id in repo_ids:
            yield repo_id, repomd, directory


def repo_metadata(cache_dir: Path, repo_ids: set[str]) -> dict[str, str]:
    """sha256 of each enabled repository's repomd.xml in the package manager's cache."""
    return {repo_id: hashlib.sha256(repomd.read_bytes()).hexdigest()
            for repo_id, repomd, _ in cached_repomds(cache_dir, repo_ids)}


def profile_data(ctx: BuildContext) -> dict[str, Any]:
    """The resolved profile (with -g/-p/-x merged), by content: where the files were does not count."""
    data = dataclasses.asdict(ctx.profile)
    data.pop("applied")
    return data


def inputs_document(ctx: BuildContext, repositories: dict[str, str]) -> dict[str, Any]:
    spec = ctx.spec
    return {
        "mkimage": __version__,
        "package_manager": spec.package_manager.name,
        "arch": spec.arch.name,
        "releasever": spec.config_answer.releasever or spec.releasever,
        "repositories": repositories,
        "profile": profile_data(ctx),
        "source_date_epoch": spec.source_date_epoch,
    }


def digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def fetch_metadata(ctx: BuildContext, repo_ids: set[str]) -> dict[str, str]:
    """makecache into the rootfs (the install reuses it), then the metadata digests of the enabled repos."""
    pm = ctx.spec.package_manager
    result = run_streaming(ctx.contained(pm.makecache_argv(ctx.install_request())), log=ctx.log,
                           on_line=ctx.ui.tool_output, env=ctx.contained_env(ctx.tool_env))
    if not result.ok:
        hints = fullfs.rootfs_hints(failure_hints(result.tail,
                                                  repos_use_releasever=ctx.spec.config_answer.uses_unset_releasever),
                                    ctx.result.rootfs_in_memory, ctx.workdir)
        raise InstallError(f"{pm.name} makecache failed with exit code {result.returncode}"
                           + (f": {hints[0]}" if hints else ""), details=relevant_lines(result.tail, FAILURE_PATTERNS),
                           log_path=ctx.log.path)
    found = repo_metadata(ctx.package_cache, repo_ids)
    missing = sorted(repo_ids - set(found))
    if missing:
        raise InstallError(f"no repository metadata for {', '.join(missing)} in {ctx.spec.config_answer.cachedir} "
                           "after makecache", log_path=ctx.log.path)
    return found


def labels(ctx: BuildContext) -> dict[str, str]:
    """The provenance labels of every image (the profile's own labels come first and may not override them)."""
    result = ctx.result
    return {
        CREATED_LABEL: rfc3339(result.created),
        VERSION_LABEL: result.tag or "",
        TITLE_LABEL: result.name,
        INPUTS_LABEL: result.inputs or "",
    }


# --------------------------------------------------------------------------------- --reproducible's epoch
BUILD_TIME_RE = re.compile(rb'<time [^>]*build="(\d+)"')
PRIMARY_HREF_RE = re.compile(r'<data type="primary">.*?<location href="([^"]+)"', re.S)
OPENERS: dict[str, Callable[..., IO[bytes]]] = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def newest_build_time(cache_dir: Path, repo_ids: set[str]) -> int | None:
    """The newest build time of the packages the repositories offer, from their primary metadata
    (apko takes the newest of the image's packages; rpm needs the epoch before it writes install times,
    so mkimage reads it from what the repositories offer for this build).  None when it cannot be read."""
    newest: int | None = None
    for _, repomd, directory in cached_repomds(cache_dir, repo_ids):
        match = PRIMARY_HREF_RE.search(repomd.read_text(encoding="utf-8", errors="replace"))
        primary = directory / match.group(1) if match else None
        times = _build_times(primary) if primary is not None and primary.is_file() else None
        if times is None:
            return None
        newest = max([newest or 0, *times])
    return newest


def _build_times(primary: Path) -> list[int] | None:
    opener = OPENERS.get(primary.suffix)
    if opener is None:  # zstd (Fedora's newer metadata): give SOURCE_DATE_EPOCH instead
        return None
    times: list[int] = []
    with opener(primary, "rb") as stream:
        for line in stream:
            times += [int(value) for value in BUILD_TIME_RE.findall(line)]
    return times


# ------------------------------------------------------------------------------------ --skip-unchanged
def matching_tags(name: str, tag: str | None, references: list[str], suffix: str = "") -> list[str]:
    """The tags of NAME among the references of images built from the same inputs (TAG only, when asked), each
    without the suffix it must end with (-ARCH: one architecture's tag of a multi-architecture build)."""
    tags = []
    for reference in sorted(references):
        image_name, _, image_tag = reference.rpartition(":")
        bare = image_tag[:len(image_tag) - len(suffix)] if suffix and image_tag.endswith(suffix) else None
        bare = image_tag if not suffix else bare
        if image_name == name and bare and (tag is None or bare == tag):
            tags.append(bare)
    return tags


def matching_reference(name: str, tag: str | None, references: list[str]) -> str | None:
    """NAME:TAG among the references of images built from the same inputs (any tag when none was asked)."""
    tags = matching_tags(name, tag, references)
    return f"{name}:{tags[0]}" if tags else None


# ------------------------------------------------------------------------------------------- the stage
def work_out_inputs(ctx: BuildContext) -> None:
    """The repositories' metadata (fetched into the cache the install reuses), hence the inputs digest and,
    for --reproducible without SOURCE_DATE_EPOCH, the epoch; then --skip-unchanged may end the build.
    A --cache-dir is attached here and held until the install is done."""
    cache.attach(ctx)
    repo_ids = ctx.spec.config_answer.enabled_ids
    repositories = fetch_metadata(ctx, repo_ids)
    if ctx.spec.reproducible and ctx.epoch is None:
        ctx.epoch = derive_epoch(ctx, repo_ids)
    ctx.result.inputs_repositories = repositories
    ctx.result.inputs = digest(inputs_document(ctx, repositories))
    if ctx.epoch is not None:
        ctx.result.created, ctx.result.reproducible = ctx.epoch, True
    ctx.ui.info(f"inputs {ctx.result.inputs[:19]} from {len(repositories)} repositories")


def skip_unchanged(ctx: BuildContext) -> None:
    """--skip-unchanged: the build ends here when NAME[:TAG] already carries this build's inputs, for every
    architecture (an index whose manifests are all unchanged is unchanged)."""
    existing = unchanged_image(ctx)
    if existing:
        raise Unchanged(existing)


def unchanged_image(ctx: BuildContext) -> str | None:
    """NAME[:TAG] built from the same inputs: in the registry with --push (where the product is), else in the
    engine (with several architectures: NAME:TAG-ARCH of each)."""
    if ctx.spec.push and ctx.spec.registry is not None:
        reference = f"{ctx.spec.name}:{ctx.spec.explicit_tag}"
        for each in ctx.per_arch:
            arch = each.spec.arch if ctx.spec.multi_arch else None
            labels = publish.remote_labels(reference, ctx.spec.registry, ctx.log, arch) or {}
            if labels.get(INPUTS_LABEL) != each.result.inputs:
                return None
        return reference
    if ctx.spec.engine is None:
        return None
    common: set[str] | None = None
    for each in ctx.per_arch:
        assert each.result.inputs is not None
        suffix = f"-{each.spec.arch}" if ctx.spec.multi_arch else ""
        built = ctx.engine.references_with_label(ctx.spec.name, (INPUTS_LABEL, each.result.inputs), ctx.log)
        tags = set(matching_tags(ctx.spec.name, ctx.spec.explicit_tag, built, suffix))
        common = tags if common is None else common & tags
    return f"{ctx.spec.name}:{min(common)}" if common else None


def derive_epoch(ctx: BuildContext, repo_ids: set[str]) -> int:
    epoch = newest_build_time(ctx.package_cache, repo_ids)
    if epoch is None:
        raise BadInput("--reproducible cannot read the packages' build times from this repository metadata: "
                       "set SOURCE_DATE_EPOCH instead")
    ctx.ui.info(f"SOURCE_DATE_EPOCH={epoch} ({rfc3339(epoch)}), the newest package build time")
    return epoch
