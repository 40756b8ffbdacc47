"""Container engines (docker, podman): import, run, tag, remove, load, inspect.

An `Engine` builds argv in pure methods; the few methods that run a command go through mkimage.run.
The engines differ in argv only (and in how `--change` values are quoted); a build without an engine
(--rootfs-only) has `engine = None`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from .profile import ImageSettings
from .run import BuildLog, CommandResult, run_captured

if TYPE_CHECKING:
    from .arch import Arch

DOCKER = "docker"
PODMAN = "podman"
ENGINE_NAMES = (DOCKER, PODMAN)
ENGINE_CHOICES = ("auto", *ENGINE_NAMES)
PODMAN_EXPOSE_PROTOCOLS = ("tcp", "udp")


def _docker_quoted(value: str) -> str:
    """A Dockerfile double-quoted string: JSON escaping, plus '$' so nothing is substituted."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def _podman_quoted(value: str) -> str:
    """podman's --change parser strips one '"' from each end and takes the rest literally: no escapes,
    no substitution. Always wrapping keeps a value that starts or ends with '"' (or a space) exact."""
    return f'"{value}"'


def full_image_id(image_id: str) -> str:
    """'sha256:HEX' whatever the engine printed (podman's inspect gives the bare HEX)."""
    image_id = image_id.strip()
    return image_id if image_id.startswith("sha256:") or not image_id else f"sha256:{image_id}"


def tar_argv(root: Path, options: Sequence[str] = ()) -> list[str]:
    return ["tar", "--numeric-owner", *options, "-c", "-C", str(root), "."]


@dataclass(frozen=True)
class Engine:
    name: str
    """docker or podman: decides the argv dialect."""
    binary: str
    """The program to run (the name, or a path)."""

    @property
    def is_podman(self) -> bool:
        return self.name == PODMAN

    # ------------------------------------------------------------------------------- pure: argv
    def image_changes(self, settings: ImageSettings, cmd: Sequence[str] | None,
                      labels: Mapping[str, str]) -> list[str]:
        """The Dockerfile instructions given to `import --change`, quoted the way this engine parses them."""
        quoted = _podman_quoted if self.is_podman else _docker_quoted
        changes: list[str] = []
        if cmd:
            changes.append(f"CMD {json.dumps(list(cmd))}")
        if settings.entrypoint:
            changes.append(f"ENTRYPOINT {json.dumps(list(settings.entrypoint))}")
        changes += [f"ENV {key}={quoted(value)}" for key, value in settings.env]
        merged = {**dict(settings.labels), **labels}  # mkimage's own labels win over a profile's
        changes += [f"LABEL {quoted(key)}={quoted(value)}" for key, value in merged.items()]
        if settings.user:
            changes.append(f"USER {settings.user}")
        if settings.workdir:
            changes.append(f"WORKDIR {settings.workdir}")
        changes += [f"EXPOSE {port}" for port in settings.expose]
        return changes

    def change_problems(self, settings: ImageSettings) -> list[str]:
        """What this engine's import cannot express (checked in preflight)."""
        if not self.is_podman:
            return []
        return [f"image.expose {port!r}: podman import accepts only tcp and udp ports; use --engine docker"
                for port in settings.expose if port.partition("/")[2] not in ("", *PODMAN_EXPOSE_PROTOCOLS)]

    def import_argv(self, changes: Sequence[str], arch: Arch | None = None) -> list[str]:
        """Import from stdin, untagged: the tag is set only after the smoke test passed.  arch: another
        architecture's image, which podman's import marks as told (docker 20.10's cannot: it gets a load)."""
        argv = [self.binary, "import"]
        if arch is not None and self.is_podman:
            argv += ["--arch", arch.goarch, *(["--variant", arch.variant] if arch.variant else [])]
        for change in changes:
            argv += ["--change", change]
        return [*argv, "-"]

    def run_argv(self, image_id: str, container_name: str, command: Sequence[str],
                 platform: str | None = None) -> list[str]:
        """No TTY, no network, removed afterwards; named so an interrupted run can still be removed.
        The command runs as given, whatever ENTRYPOINT the image has (podman reads a JSON array there,
        so a program name is never parsed).  platform: another architecture's image (linux/arm64), which
        docker runs without a warning only when told."""
        program, *args = command
        entrypoint = json.dumps([program]) if self.is_podman else program
        chosen = ["--platform", platform] if platform and not self.is_podman else []
        return [self.binary, "run", "--rm", "--name", container_name, "--network", "none", *chosen,
                "--entrypoint", entrypoint, image_id, *args]

    def tag_argv(self, image_id: str, reference: str) -> list[str]:
        return [self.binary, "tag", image_id, reference]

    def rmi_argv(self, image_ids: Sequence[str], force: bool = True) -> list[str]:
        """--force for this build's own images; never for an image someone else may use."""
        return [self.binary, "image", "rm", *(["--force"] if force else []), *image_ids]

    def images_with_label_argv(self, label: tuple[str, str]) -> list[str]:
        key, value = label
        return [self.binary, "image", "ls", "--quiet", "--no-trunc", "--filter", f"label={key}={value}"]

    def references_with_label_argv(self, name: str, label: tuple[str, str]) -> list[str]:
        key, value = label
        return [self.binary, "image", "ls", "--filter", f"reference={name}", "--filter", f"label={key}={value}",
                "--format", "{{.Repository}}:{{.Tag}}"]

    def image_inspect_argv(self, reference: str, template: str) -> list[str]:
        return [self.binary, "image", "inspect", "--format", template, reference]

    def remove_container_argv(self, name: str) -> list[str]:
        """Killed at once, as docker's --force does (podman would wait 10 s for a SIGTERM first)."""
        return [self.binary, "rm", "--force", *(["--time", "0"] if self.is_podman else []), name]

    def containers_argv(self) -> list[str]:
        """Every container, in any state (podman: also those of buildah and other tools)."""
        return [self.binary, "ps", "--all", "--quiet", "--no-trunc", *(["--external"] if self.is_podman else [])]

    def container_images_argv(self, container_ids: Sequence[str]) -> list[str]:
        """The image id of each container (exact, unlike `ps --filter ancestor=`)."""
        return [self.binary, "container", "inspect", "--format", "{{.Image}}", *container_ids]

    def load_argv(self, path: Path) -> list[str]:
        return [self.binary, "load", "-i", str(path)]

    def check_argv(self) -> list[str]:
        """docker: the daemon answers; podman (no daemon): its storage and runtime can be set up."""
        if self.is_podman:
            return [self.binary, "info", "--format", "{{.Store.GraphDriverName}}"]
        return [self.binary, "version", "--format", "{{.Server.Version}}"]

    # -------------------------------------------------------------------------- running commands
    def images_with_label(self, label: tuple[str, str], log: BuildLog | None = None) -> list[str]:
        result = run_captured(self.images_with_label_argv(label), log=log, timeout=60)
        return sorted({full_image_id(line) for line in result.stdout.split()}) if result.ok else []

    def references_with_label(self, name: str, label: tuple[str, str], log: BuildLog | None = None) -> list[str]:
        """NAME:TAG of the engine's tagged images of NAME that carry the label."""
        result = run_captured(self.references_with_label_argv(name, label), log=log, timeout=60)
        references = result.stdout.split() if result.ok else []
        return sorted(ref for ref in references if not ref.endswith(":<none>"))

    def _inspect(self, reference: str, template: str, log: BuildLog | None) -> str | None:
        result = run_captured(self.image_inspect_argv(reference, template), log=log, timeout=60)
        return result.stdout.strip() if result.ok else None

    def image_id(self, reference: str, log: BuildLog | None = None) -> str | None:
        """The id NAME:TAG points to now, or None when there is no such image."""
        found = self._inspect(reference, "{{.Id}}", log)
        return full_image_id(found) if found else None

    def image_tags(self, image_id: str, log: BuildLog | None = None) -> list[str] | None:
        """The tags an image still has; None when it cannot be inspected (gone, or the engine failed)."""
        found = self._inspect(image_id, "{{json .RepoTags}}", log)
        try:
            return list(json.loads(found) or []) if found is not None else None
        except ValueError:
            return None

    def layer_diff_ids(self, image_id: str, log: BuildLog | None = None) -> list[str]:
        """The image's layers, as the engine hashed them (the uncompressed tars' sha256)."""
        found = self._inspect(image_id, "{{json .RootFS.Layers}}", log)
        try:
            return [str(layer) for layer in json.loads(found or "[]") or []]
        except ValueError:
            return []

    def image_size(self, image_id: str, log: BuildLog | None = None) -> int | None:
        found = self._inspect(image_id, "{{.Size}}", log)
        try:
            return int(found) if found is not None else None
        except ValueError:
            return None

    def container_image_ids(self, log: BuildLog | None = None) -> set[str] | None:
        """The image of every container in any state; None when the containers cannot be listed."""
        listed = run_captured(self.containers_argv(), log=log, timeout=60)
        if not listed.ok:
            return None
        container_ids = listed.stdout.split()
        if not container_ids:
            return set()
        # A container removed between the two commands makes inspect fail for it alone: keep the others.
        inspected = run_captured(self.container_images_argv(container_ids), log=log, timeout=60)
        return {full_image_id(line) for line in inspected.stdout.split()}

    def remove_container(self, name: str, log: BuildLog | None = None) -> CommandResult:
        return run_captured(self.remove_container_argv(name), log=log, timeout=60)

    def problem(self) -> str | None:
        """Why this engine can't be used, or None."""
        result = run_captured(self.check_argv(), timeout=60)
        if result.ok and result.stdout.strip():
            return None
        said = next((line.strip() for line in result.tail if line.strip()), "no answer")
        if self.is_podman:
            return f"podman does not work here ({said}): see `podman info`, or use --engine docker or --rootfs-only"
        return f"cannot talk to the docker daemon ({said}): start dockerd, or use --rootfs-only"


def engine_named(name: str) -> Engine:
    return Engine(name=name, binary=name)


def missing_engine_problem(choice: str) -> str | None:
    """Cheap and local (PATH only), so preflight reports it with every other problem."""
    wanted = ENGINE_NAMES if choice == "auto" else (choice,)
    if any(shutil.which(name) for name in wanted):
        return None
    if choice == "auto":
        return "neither docker nor podman found on PATH; one is needed to import and test the image " \
               "(or use --rootfs-only)"
    return f"{choice} not found on PATH; it is needed to import and test the image (--engine {choice})"


def select_engine(choice: str) -> tuple[Engine | None, str | None]:
    """The engine for --engine CHOICE and the problem with it (one line), found by asking the engine.
    auto: docker when its daemon answers, else podman."""
    if choice != "auto":
        engine = engine_named(choice)
        return engine, engine.problem()
    docker, podman = engine_named(DOCKER), engine_named(PODMAN)
    docker_problem = docker.problem() if shutil.which(DOCKER) else "docker is not installed"
    if docker_problem is None:
        return docker, None
    if shutil.which(PODMAN) is None:
        return None, f"{docker_problem}; or install podman (--engine auto uses it when docker does not answer)"
    return podman, podman.problem()
