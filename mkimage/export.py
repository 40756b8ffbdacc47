"""Export: one tar stream of the rootfs feeds the container engine and every archive.

The stream is read once.  By default it goes into `ENGINE import` (docker import stamps its own config); when an
archive is wanted (--output, --push, or a reproducible build delivered to an engine) the same bytes are handed
to a LayerWriter, which hashes and compresses them into one layer blob.  mkimage then writes the image config
and manifest itself (oci.py): that image is what --output writes and --push pushes, and in a reproducible build
it is also what the engine loads, so the engine's image ID is the config digest, the same on every rebuild.
"""

from __future__ import annotations

import re
from typing import IO, Callable

from . import __version__, oci, provenance, reproducible
from .arch import is_host
from .context import BUILD_ID_LABEL, BuildContext
from .engine import tar_argv
from .errors import ExportError
from .fsutil import is_executable_in_root
from .multiarch import published_image
from .run import PipeResult, run_captured, run_feeding, run_pipe, run_producer, tool_env
from .ui import human_bytes

LOADED_ID_RE = re.compile(r"(?:Loaded image ID|Loaded image\(s\)|Loaded image): *(?:sha256:)?([0-9a-f]{64})")


# ------------------------------------------------------------------------------------------ what to write
def loads_archive(ctx: BuildContext) -> bool:
    """A reproducible build reaches the engine by `load` of mkimage's own archive: `import` stamps the time."""
    return ctx.spec.engine is not None and ctx.epoch is not None


def relabels(ctx: BuildContext) -> bool:
    """Another architecture's image, imported into docker, gets mkimage's own config: docker 20.10's import marks
    every image amd64 whatever --platform says (moby#42813).  podman's import takes --arch."""
    engine = ctx.spec.engine
    return engine is not None and not engine.is_podman and not is_host(ctx.spec.arch) and not loads_archive(ctx)


def needs_layer(ctx: BuildContext) -> bool:
    return bool(ctx.spec.outputs) or ctx.spec.push or loads_archive(ctx)


def layer_compression(ctx: BuildContext) -> str:
    """gzip for what leaves this machine (outputs, registries); a layer only loaded into the local engine stays
    uncompressed (the image ID, the config digest, does not depend on it)."""
    return "gzip" if ctx.spec.outputs or ctx.spec.push else "none"


def image_labels(ctx: BuildContext) -> dict[str, str]:
    """The profile's labels, then mkimage's provenance labels; the build id too, except in a reproducible build
    (it is random, and it is only needed to find an imported image whose id was never printed)."""
    ctx.result.labels = provenance.labels(ctx)
    labels = {**dict(ctx.profile.image.labels), **ctx.result.labels}
    if ctx.epoch is None:
        labels[BUILD_ID_LABEL] = ctx.build_id
    return labels


def image_cmd(ctx: BuildContext) -> tuple[str, ...] | None:
    """The profile's cmd; else its default_cmd when that program exists in the image."""
    settings = ctx.profile.image
    if settings.cmd:
        return settings.cmd
    default = settings.default_cmd
    if default and is_executable_in_root(ctx.rootfs, default[0]):
        return default
    return None


def image_meta(ctx: BuildContext, labels: dict[str, str]) -> oci.ImageMeta:
    settings = ctx.profile.image
    return oci.ImageMeta(
        created=ctx.result.created, created_by=f"mkimage {__version__}", cmd=image_cmd(ctx),
        architecture=ctx.spec.arch.goarch, variant=ctx.spec.arch.variant,
        entrypoint=settings.entrypoint, env=settings.env, labels=tuple(labels.items()), user=settings.user,
        workdir=settings.workdir, exposed_ports=settings.expose,
    )


# ------------------------------------------------------------------------------------------------ stage
NO_ENGINE_WARNING = "--engine none: no container engine, so no smoke test ran; only the outputs were written"


def export(ctx: BuildContext) -> None:
    labels = image_labels(ctx)
    if ctx.spec.engine is None:
        ctx.ui.warn(NO_ENGINE_WARNING)
        ctx.result.warnings.append(NO_ENGINE_WARNING)
    tar = tar_argv(ctx.rootfs, reproducible.tar_options(ctx.epoch) if ctx.epoch is not None else ())
    writer = oci.LayerWriter(ctx.tool_tmpdir, layer_compression(ctx)) if needs_layer(ctx) else None
    try:
        if ctx.spec.engine is not None and not loads_archive(ctx):
            import_stream(ctx, tar, labels, writer)
        else:
            stream_to_layer(ctx, tar, writer)
        layer = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if layer is None and relabels(ctx):
        layer = imported_layer(ctx)
    if layer is not None:
        image = oci.build_image(layer, image_meta(ctx, labels))
        record_image(ctx, image)
        if loads_archive(ctx):
            load(ctx, image)
        elif relabels(ctx):
            relabel(ctx, image)


def progress(ctx: BuildContext) -> Callable[[int], None]:
    return lambda moved: ctx.ui.progress(f"{human_bytes(moved)} streamed")


def import_stream(ctx: BuildContext, tar: list[str], labels: dict[str, str], writer: oci.LayerWriter | None) -> None:
    """tar | ENGINE import -, imported untagged; the layer writer (if any) sees the same bytes on the way.
    The engine's TMPDIR is the build's own (podman stages the stream there)."""
    engine = ctx.engine
    changes = engine.image_changes(ctx.profile.image, image_cmd(ctx), labels)
    for change in changes:
        ctx.ui.detail(f"--change {change}")
    arch = None if is_host(ctx.spec.arch) else ctx.spec.arch
    result = run_pipe(tar, engine.import_argv(changes, arch), log=ctx.log, on_progress=progress(ctx),
                      consumer_env=tool_env({"TMPDIR": str(ctx.tool_tmpdir)}),
                      tee=writer.write if writer is not None else None)
    ctx.result.bytes_streamed = result.bytes_moved
    if result.producer_code != 0:
        raise ExportError(f"tar failed with exit code {result.producer_code}; nothing was imported",
                          log_path=ctx.log.path)
    ctx.image_id = ctx.result.image_id = imported_id(ctx, result)
    ctx.ui.info(f"imported {ctx.image_id[:19]} into {engine.name} ({human_bytes(result.bytes_moved)} streamed)")


def imported_id(ctx: BuildContext, result: PipeResult) -> str:
    image_id = result.consumer_stdout.strip().splitlines()[-1] if result.consumer_stdout.strip() else ""
    if result.consumer_code != 0 or not image_id.startswith("sha256:"):
        raise ExportError(f"{ctx.engine.name} import failed with exit code {result.consumer_code}",
                          details=result.consumer_tail[-5:], log_path=ctx.log.path)
    return image_id


def stream_to_layer(ctx: BuildContext, tar: list[str], writer: oci.LayerWriter | None) -> None:
    assert writer is not None, "no engine and no archive: preflight refuses that"
    code, moved = run_producer(tar, log=ctx.log, tee=writer.write, on_progress=progress(ctx))
    ctx.result.bytes_streamed = moved
    if code != 0:
        raise ExportError(f"tar failed with exit code {code}; nothing was written", log_path=ctx.log.path)
    ctx.ui.info(f"layer streamed ({human_bytes(moved)})")


def record_image(ctx: BuildContext, image: oci.Image) -> None:
    ctx.oci_image = image
    layer = image.layer
    ctx.result.archive = {
        "image_id": image.image_id, "manifest_digest": image.manifest_digest,
        "layer": {"diff_id": layer.diff_id, "digest": layer.digest, "size": layer.size, "media_type": layer.media_type},
    }
    ctx.ui.info(f"image {image.image_id[:19]}, manifest {image.manifest_digest[:19]}, "
                f"layer {human_bytes(layer.size)} compressed")


def write_outputs(ctx: BuildContext) -> None:
    """Every --output, named NAME:TAG (and each --extra-tag), written under a temp name beside its path: it moves
    into place only once everything else is ready (deliver.py).  With --push, an oci-archive to push from.  With
    several architectures, an index of their images (so this runs once every architecture is exported)."""
    image = ctx.published = published_image(ctx)
    names = ctx.references
    for output in ctx.spec.outputs:
        oci.stage_output(output, image, names, ctx.delivery.staging)
        ctx.ui.info(f"wrote {output} aside (it moves into place after the smoke test)")
    if ctx.spec.push:  # skopeo reads an oci-archive of one image name without being told which
        ctx.push_archive = ctx.per_arch[0].workdir_path("push.tar")
        oci.write_oci_archive(ctx.push_archive, image, names[:1])


def load(ctx: BuildContext, image: oci.Image,
         feed: Callable[[IO[bytes]], None] | None = None) -> None:
    """ENGINE load of mkimage's own archive, streamed into its stdin, untagged (the tag comes after the smoke
    test); feed: what to stream instead (the config alone)."""
    engine = ctx.engine
    ctx.image_id = ctx.result.image_id = image.image_id  # known before the load: cleanup can remove it
    feed = feed or (lambda stdin: oci.write_layout_tar_to(stdin, image, (), ()))
    result = run_feeding([engine.binary, "load"], feed, log=ctx.log, env=tool_env({"TMPDIR": str(ctx.tool_tmpdir)}))
    loaded = LOADED_ID_RE.search(result.stdout)
    if not result.ok or loaded is None or f"sha256:{loaded.group(1)}" != image.image_id:
        raise ExportError(f"{engine.name} load failed (exit code {result.returncode})",
                          details=[*result.stdout.splitlines()[-3:], *result.tail[-3:]], log_path=ctx.log.path)
    ctx.ui.info(f"loaded {image.image_id[:19]} into {engine.name}")


def imported_layer(ctx: BuildContext) -> oci.LayerBlob:
    """The layer the engine imported, as it hashed it (the diff_id of the very stream, uncompressed): all a
    config needs, when no blob is written."""
    assert ctx.image_id is not None
    diff_ids = ctx.engine.layer_diff_ids(ctx.image_id, ctx.log)
    if len(diff_ids) != 1:
        raise ExportError(f"{ctx.engine.name} reports {len(diff_ids)} layers for the imported image, not one",
                          log_path=ctx.log.path)
    return oci.LayerBlob(None, diff_ids[0], ctx.result.bytes_streamed, diff_ids[0], oci.MEDIA_LAYER["none"])


def relabel(ctx: BuildContext, image: oci.Image) -> None:
    """The imported layer under mkimage's own config (architecture arm64, variant v8, ...): `docker load` of the
    config alone, since docker has the layer (by its diff_id) and skips it; then the imported image, which said
    amd64, goes (its layer stays: the new image uses it).  As fast as the import, where a load of the whole
    archive would write the layer twice more."""
    imported = ctx.image_id
    load(ctx, image, lambda stdin: oci.write_config_tar_to(stdin, image))
    assert imported is not None
    removed = run_captured(ctx.engine.rmi_argv([imported]), log=ctx.log, timeout=120)
    if not removed.ok:
        ctx.ui.warn(f"could not remove the imported image {imported[:19]}: {' '.join(removed.tail[-1:])}")
