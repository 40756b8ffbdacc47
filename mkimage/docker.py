"""docker import/run/tag/rmi: argv built by pure functions, run through mkimage.run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from .profile import ImageSettings
from .run import BuildLog, CommandResult, run_captured

DOCKER = "docker"


def _quoted(value: str) -> str:
    """A Dockerfile double-quoted string: JSON escaping, plus '$' so nothing is substituted."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def image_changes(settings: ImageSettings, cmd: Sequence[str] | None, labels: Mapping[str, str]) -> list[str]:
    """The Dockerfile instructions given to `docker import --change`."""
    changes: list[str] = []
    if cmd:
        changes.append(f"CMD {json.dumps(list(cmd))}")
    if settings.entrypoint:
        changes.append(f"ENTRYPOINT {json.dumps(list(settings.entrypoint))}")
    changes += [f"ENV {key}={_quoted(value)}" for key, value in settings.env]
    merged = {**dict(settings.labels), **labels}  # mkimage's own labels win over a profile's
    changes += [f"LABEL {_quoted(key)}={_quoted(value)}" for key, value in merged.items()]
    if settings.user:
        changes.append(f"USER {settings.user}")
    if settings.workdir:
        changes.append(f"WORKDIR {settings.workdir}")
    changes += [f"EXPOSE {port}" for port in settings.expose]
    return changes


def import_argv(changes: Sequence[str]) -> list[str]:
    """Import from stdin, untagged: the tag is set only after the smoke test passed."""
    argv = [DOCKER, "import"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, "-"]


def tar_argv(root: Path, options: Sequence[str] = ()) -> list[str]:
    return ["tar", "--numeric-owner", *options, "-c", "-C", str(root), "."]


def run_argv(image_id: str, container_name: str, command: Sequence[str]) -> list[str]:
    """No TTY, no network, removed afterwards; named so an interrupted run can still be removed.
    The command runs as given, whatever ENTRYPOINT the image has."""
    program, *args = command
    return [DOCKER, "run", "--rm", "--name", container_name, "--network", "none", "--entrypoint", program,
            image_id, *args]


def tag_argv(image_id: str, reference: str) -> list[str]:
    return [DOCKER, "tag", image_id, reference]


def rmi_argv(image_ids: Sequence[str]) -> list[str]:
    return [DOCKER, "image", "rm", "--force", *image_ids]


def images_with_label(label: tuple[str, str], log: BuildLog | None = None) -> list[str]:
    key, value = label
    result = run_captured([DOCKER, "image", "ls", "--quiet", "--no-trunc", "--filter", f"label={key}={value}"],
                          log=log, timeout=60)
    return sorted(set(result.stdout.split())) if result.ok else []


def references_with_label(name: str, label: tuple[str, str], log: BuildLog | None = None) -> list[str]:
    """NAME:TAG of the engine's tagged images of NAME that carry the label."""
    key, value = label
    result = run_captured([DOCKER, "image", "ls", "--filter", f"reference={name}", "--filter",
                           f"label={key}={value}", "--format", "{{.Repository}}:{{.Tag}}"], log=log, timeout=60)
    references = result.stdout.split() if result.ok else []
    return sorted(reference for reference in references if not reference.endswith(":<none>"))


def image_size(image_id: str, log: BuildLog | None = None) -> int | None:
    result = run_captured([DOCKER, "image", "inspect", "--format", "{{.Size}}", image_id], log=log, timeout=60)
    try:
        return int(result.stdout.strip()) if result.ok else None
    except ValueError:
        return None


def remove_container(name: str, log: BuildLog | None = None) -> CommandResult:
    return run_captured([DOCKER, "rm", "--force", name], log=log, timeout=60)


def daemon_problem() -> str | None:
    """Why the docker daemon can't be used, or None."""
    result = run_captured([DOCKER, "version", "--format", "{{.Server.Version}}"], timeout=30)
    if result.ok and result.stdout.strip():
        return None
    said = next((line for line in result.tail if line.strip()), "no answer")
    return f"cannot talk to the docker daemon ({said.strip()}): start dockerd, or use --rootfs-only"
