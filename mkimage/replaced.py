"""The images a rebuild's tags pointed to before: removed when nothing else uses them (no other tag, no
container in any state), never forced, so the engine itself refuses whatever started using one meanwhile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .engine import Engine
from .run import BuildLog, run_captured


@dataclass
class ReplacedOutcome:
    removed: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    """(image id, why it stays)."""
    surprises: list[str] = field(default_factory=list)
    """Kept for a reason worth a warning: the engine refused, or could not be asked."""


def previous_images(engine: Engine, references: Iterable[str], log: BuildLog | None = None) -> dict[str, str]:
    """What each reference points to now, before tagging: {reference: image id}; absent ones are left out."""
    found = {reference: engine.image_id(reference, log) for reference in references}
    return {reference: image_id for reference, image_id in found.items() if image_id}


def replaced_ids(previous: Mapping[str, str], new_ids: str | Iterable[str]) -> list[str]:
    """The distinct old images that are not a new one, in reference order."""
    new = {new_ids} if isinstance(new_ids, str) else set(new_ids)
    return [image_id for image_id in dict.fromkeys(previous.values()) if image_id not in new]


CANNOT_INSPECT = "cannot inspect it"
CANNOT_LIST_CONTAINERS = "cannot list the containers"


def keep_reason(image_id: str, tags: list[str] | None, container_images: set[str] | None) -> str | None:
    """Why the old image must stay, or None when nothing uses it."""
    if tags is None:
        return CANNOT_INSPECT
    if tags:
        return f"still tagged {', '.join(tags)}"
    if container_images is None:
        return CANNOT_LIST_CONTAINERS
    if image_id in container_images:
        return "a container uses it"
    return None


def remove_unused(engine: Engine, image_ids: list[str], log: BuildLog | None = None) -> ReplacedOutcome:
    outcome = ReplacedOutcome()
    if not image_ids:
        return outcome
    container_images = engine.container_image_ids(log)
    reasons = {image_id: keep_reason(image_id, engine.image_tags(image_id, log), container_images)
               for image_id in image_ids}
    unused = [image_id for image_id, reason in reasons.items() if reason is None]
    if unused:  # each removal deletes a tree in the engine's storage: several (one per architecture) side by side
        with ThreadPoolExecutor(max_workers=len(unused)) as pool:
            reasons.update(zip(unused, pool.map(lambda image_id: _remove(engine, image_id, log), unused)))
    for image_id in image_ids:
        reason = reasons[image_id]
        if reason is None:
            outcome.removed.append(image_id)
            continue
        if image_id not in unused and reason not in (CANNOT_INSPECT, CANNOT_LIST_CONTAINERS):
            outcome.kept.append((image_id, reason))
            continue
        outcome.kept.append((image_id, reason))
        outcome.surprises.append(f"kept the replaced image {image_id}: {reason}")
    return outcome


def _remove(engine: Engine, image_id: str, log: BuildLog | None) -> str | None:
    """None when removed; else why not (another build or a container took it meanwhile, say)."""
    result = run_captured(engine.rmi_argv([image_id], force=False), log=log, timeout=120)
    if result.ok:
        return None
    said = next((line.strip() for line in result.tail if line.strip()), f"exit code {result.returncode}")
    return f"{engine.name} refused to remove it: {said}"
