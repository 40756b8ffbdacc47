import json

from mkimage import docker
from mkimage.profile import ImageSettings


def test_import_is_untagged_from_stdin_with_changes() -> None:
    assert docker.import_argv(["CMD [\"/bin/bash\"]"]) == ["docker", "import", "--change", "CMD [\"/bin/bash\"]", "-"]


def test_tar_argv_is_the_scripts() -> None:
    assert docker.tar_argv("/r") == ["tar", "--numeric-owner", "-c", "-C", "/r", "."]


def test_smoke_run_has_no_tty_and_a_name() -> None:
    argv = docker.run_argv("sha256:abc", "mkimage-smoke-1", ["echo", "success"])
    assert argv == ["docker", "run", "--rm", "--name", "mkimage-smoke-1", "--network", "none",
                    "--entrypoint", "echo", "sha256:abc", "success"]
    assert "-t" not in argv and "-i" not in argv


def test_image_changes_quote_values() -> None:
    settings = ImageSettings(entrypoint=("/bin/sh", "-c"), env=(("GREETING", 'say "hi" to $USER'),),
                             labels=(("org.example.team", "platform & security"),), user="app:app",
                             workdir="/srv", expose=("8080", "53/udp"))
    changes = docker.image_changes(settings, ("/bin/bash",), {"mkimage.build-id": "abc"})
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


def test_no_cmd_no_cmd_change() -> None:
    assert docker.image_changes(ImageSettings(), None, {"k": "v"}) == ['LABEL "k"="v"']
