"""A build of several architectures: one context per architecture, the same stage table for each, side by side.

`pipeline.STAGES` is one table.  A stage marked `once` runs once for the whole build, over every architecture's
image (whether they are all unchanged, the outputs and the index, the tags, the push); every other stage runs for
each architecture in that architecture's own context (its rootfs, config answer, result, reporter).  Consecutive
per-architecture stages run as a group, the architectures in threads side by side (their work is processes: dnf,
rpm, tar, the engine; two cores install two trees at once), and the build waits for every architecture at the
end of a group.  When one architecture fails, or the build is interrupted, every command still running is stopped
(run.RUNNING) and the first failure is what the build reports.

A build of one architecture has no separate contexts: it is its own, and runs exactly as it always did.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Callable, Sequence

from . import oci
from .arch import is_host
from .errors import InstallError, MkimageError
from .reference import arch_reference
from .result import BuildResult
from .run import RUNNING, Cancelled

if TYPE_CHECKING:
    from .context import BuildContext
    from .pipeline import Stage


# ------------------------------------------------------------------------------------------ contexts
def split(ctx: BuildContext) -> None:
    """One context per architecture for a multi-architecture build; a build of one is its own.  Each shares the
    build's delivery (its files are staged there, and moved with the rest) and log."""
    from .context import BuildContext
    ctx.result.arch, ctx.result.platform = ctx.spec.arch.name, ctx.spec.arch.platform
    if not ctx.spec.multi_arch or ctx.arch_contexts:
        return
    ctx.result.arch = ctx.result.platform = None
    for target in ctx.spec.targets:
        spec = ctx.spec.for_arch(target)
        result = arch_result(ctx.result, spec.arch.name, spec.arch.platform)
        ctx.result.architectures[spec.arch.name] = result
        ctx.arch_contexts.append(BuildContext(spec=spec, ui=ctx.ui.for_arch(spec.arch.name), log=ctx.log,
                                              result=result, delivery=ctx.delivery, whole=ctx))


def arch_result(whole: BuildResult, arch: str, platform: str) -> BuildResult:
    """One architecture's part of the result: its own build id (the label its images carry, so that a failed
    architecture's cleanup never touches another's image), the build's start and settings."""
    result = BuildResult(name=whole.name, build_id=f"{whole.build_id}-{arch}", tag=whole.tag,
                         package_manager=whole.package_manager, engine=whole.engine, created=whole.created,
                         sandboxed=whole.sandboxed, arch=arch, platform=platform, started_at=whole.started_at)
    result.profile.applied = list(whole.profile.applied)
    result.releasever, result.cachedir = whole.releasever, whole.cachedir
    return result


def primary_context(ctx: BuildContext) -> BuildContext:
    """The architecture whose image NAME:TAG names in the local engine: this host's, else the first."""
    return next((each for each in ctx.per_arch if is_host(each.spec.arch)), ctx.per_arch[0])


# ------------------------------------------------------------------------------------------ running
def run_stages(ctx: BuildContext, stages: Sequence[Stage], run_stage: Callable[[BuildContext, Stage], None]) -> None:
    """Every wanted stage in order: `once` stages for the whole build, the others for each architecture."""
    for once, grouped in itertools.groupby(stages, key=lambda stage: stage.once):
        group = list(grouped)
        if once or not ctx.arch_contexts:
            for stage in group:
                if stage.wanted(ctx):
                    run_stage(ctx, stage)
            continue
        started = time.monotonic()
        try:
            side_by_side(ctx.arch_contexts, lambda each: run_group(each, group, run_stage))
        finally:
            ctx.result.stages[f"{group[0].name}..{group[-1].name}"] = time.monotonic() - started


def run_group(ctx: BuildContext, group: Sequence[Stage], run_stage: Callable[[BuildContext, Stage], None]) -> None:
    try:
        for stage in group:
            if stage.wanted(ctx):
                run_stage(ctx, stage)
    except MkimageError as err:  # say which architecture failed
        if not err.message.startswith(f"{ctx.spec.arch}: "):
            err.message = f"{ctx.spec.arch}: {err.message}"
        raise


def side_by_side(contexts: Sequence[BuildContext], work: Callable[[BuildContext], None]) -> None:
    """work(context) for every context, each in its own thread; the first failure stops the others (their
    commands are stopped, no new one starts) and is raised once every thread has ended.  An interrupt of the
    main thread does the same."""
    pool = ThreadPoolExecutor(max_workers=len(contexts), thread_name_prefix="mkimage-arch")
    futures = [pool.submit(work, each) for each in contexts]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        failure = first_failure(futures)
        if failure is not None:
            raise failure
    except BaseException:
        RUNNING.stop_all()
        wait(futures)
        raise
    finally:
        pool.shutdown(wait=True)
        RUNNING.resume()


def first_failure(futures: Sequence[Future]) -> BaseException | None:
    """The failure that stopped the build, not the ones it caused in the other architectures."""
    failures = [future.exception() for future in futures if future.done() and future.exception() is not None]
    failures.sort(key=lambda failure: isinstance(failure, Cancelled))
    return failures[0] if failures else None


# ------------------------------------------------------------------------------------ once stages
def agree(ctx: BuildContext) -> None:
    """Every architecture's image has the same version (tag), or the build fails naming each; the whole
    build's result then names the primary architecture's image."""
    versions = {each.spec.arch.name: each.result.tag for each in ctx.arch_contexts}
    if len(set(versions.values())) > 1:
        found = ", ".join(f"{arch} {version}" for arch, version in versions.items())
        raise InstallError(f"the architectures' images have different versions ({found}); one tag names them "
                           "all: give it with -t", log_path=ctx.log.path)
    primary = primary_context(ctx)
    ctx.result.tag = primary.result.tag
    ctx.image_id = ctx.result.image_id = primary.image_id
    ctx.result.bytes_streamed = sum(each.result.bytes_streamed for each in ctx.arch_contexts)
    ctx.result.smoke_tested = all(each.result.smoke_tested for each in ctx.arch_contexts)


def engine_tags(ctx: BuildContext) -> list[tuple[str, BuildContext]]:
    """(reference, the architecture's context whose image it names) for the local engine: NAME:TAG (and each
    --extra-tag) for the primary architecture, and with several architectures NAME:TAG-ARCH for each (docker
    holds one architecture per tag)."""
    references = ctx.references
    if not ctx.arch_contexts:
        return [(reference, ctx) for reference in references]
    primary = primary_context(ctx)
    tags = [(reference, primary) for reference in references]
    tags += [(arch_reference(reference, each.spec.arch.name), each) for each in ctx.arch_contexts
             for reference in references]
    return tags


def published_image(ctx: BuildContext) -> oci.Published:
    """What --output writes and --push pushes: the image, or an index with one image per architecture."""
    if not ctx.arch_contexts:
        assert ctx.oci_image is not None
        return ctx.oci_image
    images = []
    for each in ctx.arch_contexts:
        assert each.oci_image is not None
        images.append(oci.ArchImage(each.spec.arch.name, each.oci_image))
    primary = primary_context(ctx)
    index = oci.build_index(images, primary=next(n for n, each in enumerate(ctx.arch_contexts) if each is primary))
    ctx.result.archive = {"index_digest": index.digest,
                          "manifests": {item.arch: item.image.manifest_digest for item in images}}
    ctx.ui.info(f"index {index.digest[:19]} of {', '.join(item.arch for item in images)}")
    return index
