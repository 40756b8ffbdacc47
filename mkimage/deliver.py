"""Delivery: what a build hands over moves into place only once every product is ready, in an order that lets a
late failure put everything back.

Before delivery, the export wrote every --output and the sbom stage every --sbom under temp names beside their
paths, and the smoke test passed.  Then, in this order (one stage each):

1. publish: the --report's space is taken (a draft under a temp name beside it), then every output and SBOM moves
   into place by rename; what each replaced is kept aside (a hard link) until the end;
2. tag: NAME:TAG and every --extra-tag point to the new image (what they pointed to before is noted);
3. push: every tag of NAME in the registry (publish.push puts the registry's tags back itself when it fails);
4. finish: the point of no return was passed with the last of 1-3: the replaced files' copies go, and the images
   the tags pointed to before are removed when nothing else uses them (failures there are only warnings).

A failure or an interrupt before the point of no return puts back what 1-3 changed (cleanup calls ``abandon``):
earlier files byte for byte, local tags to their earlier images.  The report says what is published
(``outputs``, ``sboms``, ``tags``, ``pushed``, ``published``) and what is not (``not_published``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import fullfs, multiarch, publish
from .errors import ExportError, ReportError
from .replaced import previous_images, remove_unused, replaced_ids
from .run import run_captured
from .staging import ReservedFile, Staging, StagingError

if TYPE_CHECKING:
    from .context import BuildContext


@dataclass
class Delivery:
    """What this build has staged, moved and tagged, so that it can be put back."""

    staging: Staging = field(default_factory=Staging)
    report_path: Path | None = None
    """--report: written by the CLI at the very end, into the space reserved here."""
    report: ReservedFile | None = None
    previous: dict[str, str] = field(default_factory=dict)
    """reference -> the image id it pointed to before this build tagged it (absent references left out)."""
    tagged: list[str] = field(default_factory=list)
    """The references this build moved, in order."""
    tagged_images: dict[str, str] = field(default_factory=dict)
    """reference -> the image id this build pointed it to (one per architecture's with several)."""
    committed: bool = False
    """Past the point of no return: nothing is put back any more."""


# ---------------------------------------------------------------------------------------------- stages
def has_files(ctx: BuildContext) -> bool:
    return bool(ctx.spec.outputs or ctx.spec.sboms or ctx.delivery.report_path)


def delivers(ctx: BuildContext) -> bool:
    return has_files(ctx) or ctx.spec.uses_engine or ctx.spec.push


def last_step(ctx: BuildContext) -> str:
    """The last delivery step that can fail: passing it is the point of no return."""
    return "push" if ctx.spec.push else "tag" if ctx.spec.uses_engine else "publish"


def publish_files(ctx: BuildContext) -> None:
    """Take the report's space, then move every output and SBOM into place (all of them, or none)."""
    delivery = ctx.delivery
    reserve_report(ctx)
    try:
        delivery.staging.publish()
    except StagingError as err:
        raise ExportError(f"cannot move {err.move.label.partition(' ')[2]} into place: "
                          f"{fullfs.reason(err.error, err.move.target)}; no output was changed",
                          details=err.problems) from None
    ctx.result.outputs = [str(output) for output in ctx.spec.outputs]
    ctx.result.sboms = [str(path) for path in sbom_paths(ctx)]
    for label in delivery.staging.labels:
        ctx.ui.info(f"published {label}")
    _passed(ctx, "publish")


def sbom_paths(ctx: BuildContext) -> list[Path]:
    """Every SBOM file the build writes: one per --sbom, or with several architectures one per architecture."""
    return [request.path for each in ctx.per_arch for request in each.spec.sboms]


def reserve_report(ctx: BuildContext) -> None:
    path = ctx.delivery.report_path
    if path is None:
        return
    report = ReservedFile(path)
    try:
        report.reserve(ctx.result.report_bytes())
    except OSError as err:
        raise ReportError(f"cannot write the report {path}: {fullfs.reason(err, path)}; nothing was "
                          "published") from None
    ctx.delivery.report = report


def tag(ctx: BuildContext) -> None:
    """NAME:TAG and every --extra-tag (with several architectures also NAME:TAG-ARCH for each), only now; what they
    pointed to before is noted, to be put back or removed."""
    assert ctx.image_id is not None
    engine, delivery = ctx.engine, ctx.delivery
    wanted = multiarch.engine_tags(ctx)
    if ctx.arch_contexts:
        ctx.result.engine_tags = {reference: built.spec.arch.name for reference, built in wanted}
    delivery.previous = previous_images(engine, [reference for reference, _ in wanted], ctx.log)
    for reference, built in wanted:
        assert built.image_id is not None
        result = run_captured(engine.tag_argv(built.image_id, reference), log=ctx.log, timeout=60)
        if not result.ok:
            raise ExportError(f"{engine.name} tag {reference} failed", details=result.tail[-5:],
                              log_path=ctx.log.path)
        delivery.tagged.append(reference)
        delivery.tagged_images[reference] = built.image_id
        ctx.tagged = built.tagged = True
        ctx.result.tags.append(reference)
        ctx.ui.info(f"tagged {reference}")
    ctx.result.image_size = engine.image_size(ctx.image_id, ctx.log)
    _passed(ctx, "tag")


def push(ctx: BuildContext) -> None:
    publish.push_stage(ctx)
    _passed(ctx, "push")


def _passed(ctx: BuildContext, step: str) -> None:
    if step == last_step(ctx):
        ctx.delivery.committed = True


def finish(ctx: BuildContext) -> None:
    """Published for good: the earlier files' copies go, and so do the images the tags pointed to before, when
    nothing else uses them (unless --keep-replaced)."""
    delivery = ctx.delivery
    delivery.committed = True
    ctx.result.published = True
    for problem in delivery.staging.commit():
        ctx.ui.warn(problem)
    if ctx.spec.uses_engine and delivery.tagged:
        assert ctx.image_id is not None
        replaced = replaced_ids(delivery.previous, set(delivery.tagged_images.values()))
        if ctx.spec.keep_replaced:
            ctx.result.replaced_images_kept = [{"image_id": old, "reason": "--keep-replaced"} for old in replaced]
        else:
            remove_replaced_images(ctx, replaced)


def remove_replaced_images(ctx: BuildContext, replaced: list[str]) -> None:
    outcome = remove_unused(ctx.engine, replaced, ctx.log)
    ctx.result.replaced_images_removed = outcome.removed
    ctx.result.replaced_images_kept = [{"image_id": old, "reason": reason} for old, reason in outcome.kept]
    for image_id in outcome.removed:
        ctx.ui.info(f"removed the replaced image {image_id[:19]}")
    for image_id, reason in outcome.kept:
        ctx.ui.detail(f"kept the replaced image {image_id[:19]}: {reason}")
    for surprise in outcome.surprises:
        ctx.ui.warn(surprise)


# ------------------------------------------------------------------------------------------- abandon
def abandon(ctx: BuildContext) -> list[str]:
    """At cleanup: unless the point of no return was passed, put back the tags and files this build moved;
    remove what it staged; record what is published and what is not.  Returns what could not be put back."""
    delivery = ctx.delivery
    problems: list[str] = []
    if not delivery.committed:
        problems += restore_tags(ctx)
        problems += delivery.staging.roll_back()
        kept = set(delivery.staging.unrestored())
        ctx.result.outputs = [str(o) for o in ctx.spec.outputs if f"output {o}" in kept]
        ctx.result.sboms = [str(path) for path in sbom_paths(ctx) if f"sbom {path}" in kept]
    problems += delivery.staging.discard()
    ctx.result.not_published = not_published(ctx)
    ctx.result.published = delivery.committed or (ctx.completed and not ctx.result.not_published)
    return problems


def restore_tags(ctx: BuildContext) -> list[str]:
    """Point every reference this build moved back where it pointed before (or remove it, when it is new)."""
    delivery, problems = ctx.delivery, []
    for reference in list(reversed(delivery.tagged)):
        engine = ctx.engine
        old = delivery.previous.get(reference)
        argv = engine.tag_argv(old, reference) if old else engine.rmi_argv([reference], force=False)
        result = run_captured(argv, log=ctx.log, timeout=60)
        if result.ok:
            delivery.tagged.remove(reference)
            ctx.result.tags.remove(reference)
            ctx.ui.info(f"put {reference} back to {old[:19]}" if old else f"removed the new tag {reference}")
        else:
            problems.append(f"could not put {reference} back to {old or 'nothing'}: {' '.join(result.tail[-2:])}")
    still = {delivery.tagged_images[reference] for reference in delivery.tagged}
    for each in ctx.per_arch:
        each.tagged = each.image_id in still
    ctx.tagged = bool(delivery.tagged)
    return problems


def not_published(ctx: BuildContext) -> list[str]:
    """Everything asked for that is not in place, as the report lists it."""
    result, spec = ctx.result, ctx.spec
    wanted = [f"output {output}" for output in spec.outputs if str(output) not in result.outputs]
    wanted += [f"sbom {path}" for path in sbom_paths(ctx) if str(path) not in result.sboms]
    references = ctx.references if result.tag else [spec.name]
    if spec.uses_engine:
        tags = [reference for reference, _ in multiarch.engine_tags(ctx)] if result.tag else references
        wanted += [f"tag {reference}" for reference in tags if reference not in result.tags]
    if spec.push:
        pushed = {line.partition("@")[0] for line in result.pushed}
        wanted += [f"push {reference}" for reference in references if reference not in pushed]
    return wanted
