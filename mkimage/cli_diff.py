"""`mkimage diff OLD NEW`: the click command (main() in cli.py dispatches to it when `diff` comes first)."""

from __future__ import annotations

import json
import signal
import traceback
from types import FrameType

import click

from .errors import EXIT_BAD_INPUT, MkimageError

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, EXIT_BAD_INPUT
"""As diff(1): 0 the same, 1 different, 2 trouble (bad input, unreadable image, a failing tool, a bug)."""


class DiffTrouble(MkimageError):
    exit_code = EXIT_TROUBLE
    kind = "diff-failed"


class DiffInterrupted(MkimageError):
    """SIGTERM: the temp dirs are removed on the way out (by the finally blocks), then exit 143."""

    kind = "interrupted"

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option("--files", is_flag=True,
              help="Also compare the files (added, removed, changed: size, content, mode, owner, type, link "
                   "target). Images and archives only.")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--arch", default=None, metavar="ARCH",
              help="Which architecture of a multi-architecture archive, layout or report (rpm's name; default "
                   "this host's). A local image is one architecture: NAME:TAG-ARCH.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def diff_command(old: str, new: str, files: bool, as_json: bool, arch: str | None, debug: bool) -> int:
    """Compare two images: the packages added, removed and changed (and with --files, the files).

    \b
    OLD and NEW are each one of:
      - a local image, e.g. base/el9:9.4 (docker's, else podman's)
      - an image archive: docker save output, an oci-archive, an OCI layout directory
      - a JSON report written by `mkimage --report`
      - an SPDX 2.3 or CycloneDX 1.6 JSON SBOM
    A path that exists is read as a file; anything else is looked up as an image.

    \b
    Exit status, as diff(1): 0 the same, 1 different, 2 trouble.
    (To build an image named "diff", put an option before the name: mkimage -y CONF diff.)
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        result = _run(old, new, files, as_json, arch)
    except DiffInterrupted:
        raise
    except MkimageError as err:  # a missing tool is exit 1 for a build, but 1 means "different" here
        if err.exit_code == EXIT_TROUBLE:
            raise
        raise DiffTrouble(err.format_message()) from None
    except Exception as err:  # a bug: diff(1)'s "trouble", never 1 ("different")
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --debug for the traceback)"
        raise DiffTrouble(f"internal error: {err!r}{hint}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return result


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise DiffInterrupted(signum)


def _run(old: str, new: str, files: bool, as_json: bool, arch: str | None = None) -> int:
    from .diff import check_files_possible, classify, compare, load, render_text, to_json

    if arch is not None:
        from .arch import KNOWN
        if arch not in KNOWN:
            raise DiffTrouble(f"--arch {arch}: unknown architecture (known: {', '.join(KNOWN)})")
    old_source, new_source = classify(old, arch), classify(new, arch)
    if files:
        check_files_possible(old_source, new_source)
    result = compare(load(old_source, files, arch), load(new_source, files, arch))
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(result), nl=False)
    return EXIT_SAME if result.same else EXIT_DIFFERENT
