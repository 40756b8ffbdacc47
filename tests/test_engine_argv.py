"""Every argv an engine builds, for docker and podman, and how --engine auto picks one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mkimage import engine as engine_module
from mkimage.engine import Engine, full_image_id, missing_engine_problem, select_engine, tar_argv
from mkimage.profile import ImageSettings
from mkimage.replaced import keep_reason, replaced_ids

DOCKER = Engine("docker", "docker")
PODMAN = Engine("podman", "podman")
BOTH = pytest.mark.parametrize("engine", [DOCKER, PODMAN], ids=["docker", "podman"])


def test_tar_argv_is_the_scripts() -> None:
    assert tar_argv(Path("/r")) == ["tar", "--numeric-owner", "-c", "-C", "/r", "."]


@BOTH
def test_import_is_untagged_from_stdin_with_changes(engine: Engine) -> None:
    assert engine.import_argv(['CMD ["/bin/bash"]']) == [engine.name, "import", "--change", 'CMD ["/bin/bash"]', "-"]


def test_the_binary_is_what_runs() -> None:
    custom = Engine("podman", "/opt/podman/bin/podman")
    assert custom.tag_argv("sha256:a", "x:1")[0] == "/opt/podman/bin/podman"
    assert custom.is_podman


def test_docker_smoke_run_has_no_tty_and_a_name() -> None:
    argv = DOCKER.run_argv("sha256:abc", "mkimage-smoke-1", ["echo", "success"])
    assert argv == ["docker", "run", "--rm", "--name", "mkimage-smoke-1", "--network", "none",
                    "--entrypoint", "echo", "sha256:abc", "success"]
    assert "-t" not in argv and "-i" not in argv


def test_podman_smoke_run_gives_the_entrypoint_as_json() -> None:
    """podman parses an --entrypoint that looks like JSON; a JSON array makes every program name exact."""
    argv = PODMAN.run_argv("sha256:abc", "mkimage-smoke-1", ["[odd", "a b"])
    assert argv == ["podman", "run", "--rm", "--name", "mkimage-smoke-1", "--network", "none",
                    "--entrypoint", '["[odd"]', "sha256:abc", "a b"]
    assert "-t" not in argv and "-i" not in argv


@pytest.mark.parametrize("engine, argv", [
    (DOCKER, ["docker", "tag", "sha256:a", "reg:5000/x/y:1"]),
    (PODMAN, ["podman", "tag", "sha256:a", "reg:5000/x/y:1"]),
])
def test_tag(engine: Engine, argv: list[str]) -> None:
    assert engine.tag_argv("sha256:a", "reg:5000/x/y:1") == argv


@BOTH
def test_rmi_forced_only_for_the_builds_own_images(engine: Engine) -> None:
    assert engine.rmi_argv(["sha256:a", "sha256:b"]) == [engine.name, "image", "rm", "--force", "sha256:a", "sha256:b"]
    assert engine.rmi_argv(["sha256:a"], force=False) == [engine.name, "image", "rm", "sha256:a"]


@BOTH
def test_images_with_label(engine: Engine) -> None:
    assert engine.images_with_label_argv(("mkimage.build-id", "abc")) == [
        engine.name, "image", "ls", "--quiet", "--no-trunc", "--filter", "label=mkimage.build-id=abc"]


@BOTH
def test_image_inspect(engine: Engine) -> None:
    assert engine.image_inspect_argv("x:1", "{{.Size}}") == [engine.name, "image", "inspect", "--format",
                                                             "{{.Size}}", "x:1"]


@BOTH
def test_load(engine: Engine) -> None:
    assert engine.load_argv(Path("/o/image.tar")) == [engine.name, "load", "-i", "/o/image.tar"]


def test_remove_container_kills_at_once() -> None:
    assert DOCKER.remove_container_argv("mkimage-smoke-1") == ["docker", "rm", "--force", "mkimage-smoke-1"]
    assert PODMAN.remove_container_argv("mkimage-smoke-1") == ["podman", "rm", "--force", "--time", "0",
                                                               "mkimage-smoke-1"]


def test_containers_of_every_state_and_tool() -> None:
    assert DOCKER.containers_argv() == ["docker", "ps", "--all", "--quiet", "--no-trunc"]
    assert PODMAN.containers_argv() == ["podman", "ps", "--all", "--quiet", "--no-trunc", "--external"]
    for engine in (DOCKER, PODMAN):
        assert engine.container_images_argv(["c1", "c2"]) == [engine.name, "container", "inspect", "--format",
                                                              "{{.Image}}", "c1", "c2"]


def test_engine_checks() -> None:
    assert DOCKER.check_argv() == ["docker", "version", "--format", "{{.Server.Version}}"]
    assert PODMAN.check_argv() == ["podman", "info", "--format", "{{.Store.GraphDriverName}}"]


SETTINGS = ImageSettings(entrypoint=("/bin/sh", "-c"), env=(("GREETING", 'say "hi" to $USER'),),
                         labels=(("org.example.team", "platform & security"),), user="app:app",
                         workdir="/srv", expose=("8080", "53/udp"))


def test_docker_changes_quote_values_the_dockerfile_way() -> None:
    changes = DOCKER.image_changes(SETTINGS, ("/bin/bash",), {"mkimage.build-id": "abc"})
    assert changes == [
        'CMD ["/bin/bash"]',
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'ENV GREETING="say \\"hi\\" to \\$USER"',
        'LABEL "org.example.team"="platform & security"',
        'LABEL "mkimage.build-id"="abc"',
        "USER app:app",
        "WORKDIR /srv",
        "EXPOSE 8080",
        "EXPOSE 53/udp",
    ]
    assert json.loads(changes[0][4:]) == ["/bin/bash"]


def test_podman_changes_are_literal_inside_one_pair_of_quotes() -> None:
    """podman strips one '"' from each end and keeps the rest as it is: no escapes, no $ substitution."""
    changes = PODMAN.image_changes(SETTINGS, ("/bin/bash",), {"mkimage.build-id": "abc"})
    assert changes == [
        'CMD ["/bin/bash"]',
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'ENV GREETING="say "hi" to $USER"',
        'LABEL "org.example.team"="platform & security"',
        'LABEL "mkimage.build-id"="abc"',
        "USER app:app",
        "WORKDIR /srv",
        "EXPOSE 8080",
        "EXPOSE 53/udp",
    ]


@BOTH
def test_no_cmd_no_cmd_change(engine: Engine) -> None:
    assert engine.image_changes(ImageSettings(), None, {"k": "v"}) == ['LABEL "k"="v"']


def test_podman_cannot_expose_sctp() -> None:
    settings = ImageSettings(expose=("80", "53/udp", "9/sctp"))
    assert DOCKER.change_problems(settings) == []
    assert PODMAN.change_problems(settings) == [
        "image.expose '9/sctp': podman import accepts only tcp and udp ports; use --engine docker"]


def test_full_image_id() -> None:
    assert full_image_id("abc\n") == "sha256:abc"
    assert full_image_id("sha256:abc") == "sha256:abc"


# ------------------------------------------------------------------------------------ --engine auto
@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch):
    """Which engines are installed and which work, without touching the real ones."""
    state = {"installed": {"docker", "podman"}, "working": {"docker", "podman"}, "asked": []}

    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in state["installed"] else None

    def problem(self: Engine) -> str | None:
        state["asked"].append(self.name)
        return None if self.name in state["working"] else f"{self.name} is broken"

    monkeypatch.setattr(engine_module.shutil, "which", which)
    monkeypatch.setattr(Engine, "problem", problem)
    return state


def test_auto_prefers_a_docker_whose_daemon_answers(fake_engines) -> None:
    assert select_engine("auto") == (DOCKER, None)
    assert fake_engines["asked"] == ["docker"]


def test_auto_falls_back_to_podman(fake_engines) -> None:
    fake_engines["working"] = {"podman"}
    assert select_engine("auto") == (PODMAN, None)
    fake_engines["installed"] = {"podman"}
    assert select_engine("auto") == (PODMAN, None)


def test_auto_with_a_dead_daemon_and_no_podman(fake_engines) -> None:
    fake_engines["installed"], fake_engines["working"] = {"docker"}, set()
    engine, problem = select_engine("auto")
    assert engine is None and problem is not None
    assert problem.startswith("docker is broken; or install podman")


def test_an_explicit_engine_is_asked_alone(fake_engines) -> None:
    fake_engines["working"] = {"docker"}
    assert select_engine("podman") == (PODMAN, "podman is broken")
    assert fake_engines["asked"] == ["podman"]


def test_missing_binaries(fake_engines) -> None:
    fake_engines["installed"] = {"docker"}
    assert missing_engine_problem("auto") is None and missing_engine_problem("docker") is None
    assert missing_engine_problem("podman") == ("podman not found on PATH; it is needed to import and test the "
                                                "image (--engine podman)")
    fake_engines["installed"] = set()
    assert "neither docker nor podman found on PATH" in (missing_engine_problem("auto") or "")


# -------------------------------------------------------------------------------- replaced images
def test_replaced_ids_are_distinct_and_not_the_new_one() -> None:
    previous = {"x:1": "sha256:old", "x:latest": "sha256:old", "x:nightly": "sha256:new", "x:b": "sha256:older"}
    assert replaced_ids(previous, "sha256:new") == ["sha256:old", "sha256:older"]


@pytest.mark.parametrize("tags, containers, reason", [
    ([], set(), None),
    ([], {"sha256:other"}, None),
    (["x:other"], set(), "still tagged x:other"),
    ([], {"sha256:old"}, "a container uses it"),
    (None, set(), "cannot inspect it"),
    ([], None, "cannot list the containers"),
])
def test_keep_reason(tags, containers, reason) -> None:
    assert keep_reason("sha256:old", tags, containers) == reason
