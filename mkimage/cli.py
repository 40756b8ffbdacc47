"""The command line: `mkimage [OPTIONS] NAME[:TAG]`, compatible with mkimage-yum.sh's flags.

stdout carries the result alone (the image reference, or the rootfs path with --rootfs-only);
everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_OK, BadInput, Interrupted, MkimageError, Problems, ReportError, Unchanged

if TYPE_CHECKING:  # the heavier modules are imported when a build runs, so --help stays fast
    from .context import BuildContext, BuildSpec
    from .preflight import Request
    from .result import BuildResult
    from .sbom import SbomRequest

PATH_TYPE = click.Path(path_type=Path)


def _verbosity(verbose: int, quiet: bool) -> int:
    from .ui import NORMAL, QUIET, VERBOSE
    return QUIET if quiet else (VERBOSE if verbose else NORMAL)


def _overrides(groups: Sequence[str], packages: Sequence[str], excludes: Sequence[str]) -> dict[str, Any]:
    """The command line's packages, merged after the profiles.  With no -g the group is Core, as in the script."""
    return {"packages": {"groups": list(groups) or ["Core"], "install": list(packages), "exclude": list(excludes)}}


def _list_profiles() -> None:
    from .profile import DEFAULT_PROFILE, describe_builtin
    for name, description in describe_builtin():
        marker = " (default)" if name == DEFAULT_PROFILE else ""
        click.echo(f"{name}{marker}\n    {description}")


def _smoke_argv(smoke_cmd: str | None) -> tuple[str, ...] | None:
    if smoke_cmd is None:
        return None
    try:
        argv = tuple(shlex.split(smoke_cmd))
    except ValueError as err:
        raise BadInput(f"--smoke-cmd {smoke_cmd!r}: {err}") from None
    if not argv:
        raise BadInput("--smoke-cmd is empty")
    return argv


def _log_path(tmpdir: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "image"
    return tmpdir / f"mkimage-{safe_name}-{stamp}-{os.getpid()}.log"


# --help, grouped by topic: (heading, parameter names in order).  A parameter not listed goes under "Other".
HELP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What to install", ("config", "packages", "groups", "excludes", "arches", "releasever", "pkg_manager",
                         "cache_dir")),
    ("Profiles", ("profiles", "list_profiles", "show_profile")),
    ("Name and tags", ("tag", "extra_tags")),
    ("Engine, smoke test and outputs", ("engine", "outputs", "no_smoke_test", "smoke_cmd", "keep_replaced",
                                        "rootfs_only", "keep_rootfs")),
    ("Publishing", ("push", "authfile", "registry_cert_dir", "tls_verify")),
    ("Supply chain", ("sboms", "sbom_format", "reproducible", "skip_unchanged")),
    ("Safety", ("no_sandbox", "allow_scriptlet_failures", "allow_rpmdb_mismatch")),
    ("Build host", ("tmpdir", "rootfs_in_memory")),
    ("Logs and reports", ("log_file", "report", "verbose", "quiet", "debug", "version", "help")),
)


class SectionedCommand(click.Command):
    """A click command whose --help lists its options under topic headings."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        help_option = self.get_help_option(ctx)
        records = {("help" if param is help_option else param.name): param.get_help_record(ctx)
                   for param in self.get_params(ctx) if isinstance(param, click.Option)}
        listed: set[str | None] = set()
        for heading, names in (*HELP_SECTIONS, ("Other", tuple(str(n) for n in records))):
            rows = [records[name] for name in names if name in records and name not in listed and records[name]]
            listed.update(names)
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)  # type: ignore[arg-type]


@click.command(cls=SectionedCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("reference", metavar="NAME[:TAG]", required=False)
@click.option("-y", "--yum-config", "config", type=PATH_TYPE, default=None,
              help="yum/dnf config (default /etc/yum.conf; /etc/dnf/dnf.conf where only that exists).")
@click.option("-p", "--package", "packages", multiple=True, metavar="PKG", help="Package to install (repeatable).")
@click.option("-g", "--group", "groups", multiple=True, metavar="GROUP",
              help="Group to install (repeatable; default: Core).")
@click.option("-x", "--exclude", "excludes", multiple=True, metavar="PKG",
              help="Package (or glob) never to install (repeatable).")
@click.option("--arch", "arches", multiple=True, metavar="ARCH",
              help="Architecture to build, as rpm names it (x86_64, aarch64, ppc64le, s390x); repeatable or "
                   "comma-separated: one image per architecture, one index (default: this host's).")
@click.option("-t", "--tag", default=None, help="Tag instead of the version found in the image.")
@click.option("--releasever", default="/", show_default=True,
              help="Release version for $releasever ('/' detects it from this host).")
@click.option("--pkg-manager", type=click.Choice(["auto", "yum", "dnf"]), default="auto", show_default=True)
@click.option("--profile", "profiles", multiple=True, metavar="NAME|PATH",
              help="Profile applied after the default 'minimal' (repeatable; 'none' starts from nothing).")
@click.option("--list-profiles", is_flag=True, help="List the built-in profiles and exit.")
@click.option("--show-profile", is_flag=True,
              help="Print the resolved profile (with -g/-p/-x merged) as JSON and exit; builds nothing.")
@click.option("--tmpdir", type=PATH_TYPE, default=None, help="Where the temp rootfs goes (default $TMPDIR or /tmp).")
@click.option("--rootfs-in-memory", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Build the rootfs in a private tmpfs (auto: when memory allows).")
@click.option("--cache-dir", type=PATH_TYPE, default=None,
              help="Persistent package cache, so nightly rebuilds download each package once.")
@click.option("--keep-rootfs", is_flag=True, help="Keep the rootfs (on disk) and print its path.")
@click.option("--rootfs-only", is_flag=True,
              help="Build the tree only: no import, no smoke test; prints the rootfs path.")
@click.option("--no-smoke-test", is_flag=True, help="Do not run the image before tagging it.")
@click.option("--smoke-cmd", default=None, metavar="CMD",
              help="Smoke-test command instead of 'echo success' (must exit 0).")
@click.option("--engine", type=click.Choice(["auto", "docker", "podman", "none"]), default="auto",
              show_default=True, help="Container engine that imports, tests and tags the image (auto: docker when "
                                      "its daemon answers, else podman; none: no engine, no smoke test, --output only).")
@click.option("--output", "outputs", multiple=True, metavar="FORMAT:PATH",
              help="Also write the image as oci-archive:PATH, oci:DIR or docker-archive:PATH (repeatable), "
                   "from the same stream.")
@click.option("--push", is_flag=True,
              help="After the smoke test, push every tag of NAME (which names the registry) with skopeo; stdout "
                   "is then NAME:TAG@sha256:... per tag.")
@click.option("--authfile", type=PATH_TYPE, default=None,
              help="Registry credentials (default: $REGISTRY_AUTH_FILE, containers' auth.json, "
                   "~/.docker/config.json).")
@click.option("--registry-cert-dir", type=PATH_TYPE, default=None,
              help="CA (*.crt) and client certificates for the registry (default: /etc/containers/certs.d/HOST, "
                   "/etc/docker/certs.d/HOST).")
@click.option("--tls-verify", type=click.BOOL, default=True, show_default=True, metavar="BOOL",
              help="Verify the registry's certificate; --tls-verify=false is warned.")
@click.option("--extra-tag", "extra_tags", multiple=True, metavar="TAG",
              help="Another tag for the same image, set after the smoke test (repeatable).")
@click.option("--keep-replaced", is_flag=True,
              help="Keep the image NAME:TAG pointed to before, even when nothing else uses it.")
@click.option("--allow-scriptlet-failures", is_flag=True,
              help="Accept packages whose %post etc. failed (dnf exits 0 for them); default: fail.")
@click.option("--allow-rpmdb-mismatch", is_flag=True,
              help="Accept an image whose own rpm cannot read the package database this host's rpm wrote "
                   "(a backend mkimage could not convert); default: fail.")
@click.option("--reproducible", is_flag=True,
              help="Byte-identical layers from the same inputs: SOURCE_DATE_EPOCH if set, else the newest "
                   "package build time of the repositories.")
@click.option("--skip-unchanged", is_flag=True,
              help="Do nothing when NAME[:TAG] was already built from the same inputs (mkimage.inputs label).")
@click.option("--sbom", "sboms", multiple=True, metavar="[FORMAT:]PATH",
              help="Write an SBOM of the image's packages (repeatable; FORMAT spdx or cyclonedx).")
@click.option("--sbom-format", type=click.Choice(["spdx", "cyclonedx"]), default="spdx", show_default=True,
              help="Format of --sbom paths given without one: SPDX 2.3 or CycloneDX 1.6 JSON.")
@click.option("--no-sandbox", is_flag=True,
              help="Run package scriptlets and profile chroot commands without the bwrap sandbox (warned, reported).")
@click.option("--log-file", type=PATH_TYPE, default=None,
              help="Keep the full log here (default: a file in the tmpdir, kept only when the build fails).")
@click.option("--report", type=PATH_TYPE, default=None, help="Write a JSON report of the build here.")
@click.option("-v", "--verbose", count=True, help="Stream the package manager's output.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, "--version")
def cli(reference: str | None, config: Path | None, packages: tuple[str, ...], groups: tuple[str, ...],
        excludes: tuple[str, ...], arches: tuple[str, ...], tag: str | None, releasever: str, pkg_manager: str, profiles: tuple[str, ...],
        list_profiles: bool, show_profile: bool, tmpdir: Path | None, rootfs_in_memory: str,
        cache_dir: Path | None, keep_rootfs: bool, rootfs_only: bool, no_smoke_test: bool,
        smoke_cmd: str | None, engine: str, outputs: tuple[str, ...], push: bool, authfile: Path | None,
        registry_cert_dir: Path | None, tls_verify: bool, extra_tags: tuple[str, ...], keep_replaced: bool,
        allow_scriptlet_failures: bool, allow_rpmdb_mismatch: bool, reproducible: bool, skip_unchanged: bool,
        sboms: tuple[str, ...], sbom_format: str, no_sandbox: bool, log_file: Path | None, report: Path | None,
        verbose: int, quiet: bool, debug: bool) -> None:
    """Build a minimal base image NAME[:TAG] from RPM repositories and import it into docker or podman.

    \b
    Example, on an EL host:  sudo mkimage -y /etc/yum.conf centos72
    prints 'centos72:7.2.1511' on stdout once the image is imported, tested and tagged.

    \b
    mkimage diff OLD NEW compares two images (see mkimage diff --help).
    To build an image named "diff", put an option before it: mkimage -y CONF diff
    """
    from . import installer, preflight
    from .profile import Profile, ProfileProblems, resolve
    from .sbom import parse_request

    if list_profiles:
        _list_profiles()
        return
    started = time.monotonic()
    profile_problems: list[str] = _empty_name_problems(groups, packages, excludes)
    try:
        profile, merged = resolve(profiles, _overrides(groups, packages, excludes))
    except ProfileProblems as err:
        profile, merged, profile_problems = None, {}, [*profile_problems, *err.problems]
    if show_profile:
        if profile_problems:
            raise Problems(profile_problems)
        click.echo(json.dumps(merged, indent=2))
        return
    # Every path is made absolute here, once, against the caller's directory: preflight checks what the build
    # uses, and dnf (which runs in the sandbox with / as its directory) gets absolute paths.
    request = preflight.Request(
        reference=reference, tag=tag, config=_absolute(config or installer.default_config()),
        pkg_manager=pkg_manager, releasever=releasever, tmpdir=_absolute(tmpdir or preflight.default_tmpdir()),
        rootfs_in_memory=rootfs_in_memory, cache_dir=_absolute(cache_dir), keep_rootfs=keep_rootfs,
        rootfs_only=rootfs_only, smoke_test=not no_smoke_test, smoke_cmd=_smoke_argv(smoke_cmd),
        allow_scriptlet_failures=allow_scriptlet_failures, allow_rpmdb_mismatch=allow_rpmdb_mismatch,
        reproducible=reproducible, skip_unchanged=skip_unchanged,
        sboms=tuple(_absolute_sbom(parse_request(text, sbom_format)) for text in sboms),
        log_file=_absolute(log_file), report=_absolute(report),
        engine=engine, extra_tags=extra_tags, keep_replaced=keep_replaced, outputs=outputs, push=push,
        authfile=_absolute(authfile), registry_cert_dir=_absolute(registry_cert_dir), tls_verify=tls_verify,
        sandbox=not no_sandbox, arches=arches,
    )
    try:
        spec = preflight.check(request, profile or Profile(), profile_problems)
    except Problems as err:
        _report_bad_input(request.report, reference, err)
        raise
    run_build(spec, request, _verbosity(verbose, quiet), preflight_seconds=time.monotonic() - started)


def _absolute(path: Path | None) -> Path | None:
    """path against the caller's directory, normalised ('..' resolved by name, symlinks left alone)."""
    return Path(os.path.abspath(path)) if path is not None else None


def _absolute_sbom(request: SbomRequest) -> SbomRequest:
    from .sbom import SbomRequest
    return SbomRequest(request.format, Path(os.path.abspath(request.path)))


def _empty_name_problems(groups: Sequence[str], packages: Sequence[str], excludes: Sequence[str]) -> list[str]:
    """-p '', -g '' and -x '' would reach dnf; they are bad input."""
    named = (("-g", "group", groups), ("-p", "package", packages), ("-x", "package pattern", excludes))
    return [f"{flag} {value!r}: empty {what} name" for flag, what, values in named for value in values
            if not value.strip()]


def _report_bad_input(path: Path | None, reference: str | None, err: Problems) -> None:
    """Pipelines parse the report whatever happened; for bad input it lists the problems."""
    if path is None:
        return
    from .result import BuildResult
    result = BuildResult(name=reference or "", status="failed", exit_code=err.exit_code, error=err.message,
                         error_kind=err.kind, problems=err.problems, finished_at=time.time())
    try:
        result.write_report(path)  # never over a device, FIFO or symlink: those are among the problems
    except OSError:
        pass  # an unwritable --report is itself one of the problems reported


def _note_config(spec: BuildSpec, result: Any, ui: Any) -> None:
    """What the package manager made of the config, in the report and the log."""
    from .installer.config import ignored_options
    answer = spec.config_answer
    result.releasever, result.cachedir = answer.releasever, answer.cachedir
    result.ignored_options = ignored_options(answer)
    ui.detail(f"{answer.package_manager} reads {answer.config}: repositories {', '.join(sorted(answer.enabled_ids))}; "
              f"release version {answer.releasever or 'none'}; cache {answer.cachedir}")
    if result.ignored_options:
        ui.detail(f"{answer.package_manager} ignores these options of the config: {', '.join(result.ignored_options)}")


def run_build(spec: BuildSpec, request: Request, verbosity: int, preflight_seconds: float) -> None:
    from .context import BuildContext
    from .pipeline import build
    from .result import BuildResult
    from .run import BuildLog
    from .ui import make_reporter

    ui = make_reporter(verbosity)
    result = BuildResult(name=spec.name, tag=spec.explicit_tag, package_manager=spec.package_manager.name,
                         engine=spec.engine.name if spec.engine else None)
    result.stages["preflight"] = preflight_seconds
    result.profile.applied = list(spec.profile.applied)
    result.sandboxed = spec.sandbox
    _note_config(spec, result, ui)
    log_path = request.log_file or _log_path(spec.tmpdir, spec.name)
    log = BuildLog(log_path)
    ctx = BuildContext(spec=spec, ui=ui, log=log, result=result)
    ctx.delivery.report_path = request.report
    printed, failure = None, None
    if not spec.sandbox:
        from .sandbox import NO_SANDBOX_WARNING
        ui.warn(NO_SANDBOX_WARNING)
        result.warnings.append(NO_SANDBOX_WARNING)
    try:
        build(ctx)
        result.status, result.exit_code = "success", EXIT_OK
    except Unchanged as unchanged:
        result.status, result.exit_code, printed = "unchanged", EXIT_OK, unchanged.reference
        inputs = result.inputs or ", ".join(f"{arch} {each.inputs}" for arch, each in result.architectures.items())
        ui.info(f"{unchanged.reference} was built from the same inputs ({inputs}): nothing to do")
    except MkimageError as err:
        result.status = "interrupted" if isinstance(err, Interrupted) else "failed"
        result.exit_code, result.error, result.error_kind = err.exit_code, err.message, err.kind
        if err.log_path is None:  # the log is kept whenever a build does not succeed: say where
            err.log_path = log_path
        failure = err
        raise
    except BaseException as err:
        result.status, result.exit_code, result.error = "failed", EXIT_INTERNAL, repr(err)
        raise
    finally:
        result.finished_at = time.time()
        result.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        log.close()
        if result.exit_code == EXIT_OK and request.log_file is None:
            log_path.unlink(missing_ok=True)
        else:
            result.log_file = str(log_path)
        ui.close()
        report_problem = _write_report(ctx, request.report)
        if report_problem and failure is not None and not isinstance(failure, ReportError):
            failure.details.append(report_problem)
    if report_problem:  # the build succeeded and published everything: only its report is missing
        raise ReportError(report_problem, details=[f"published: {item}" for item in _published(result)])
    ui.summary(result)
    for each in (result, *result.architectures.values()):
        if each.rootfs_kept:
            ui.info(f"rootfs kept at {each.rootfs}")
    if result.pushed and not printed:
        printed = "\n".join(result.pushed)
    click.echo(printed or (_rootfs_lines(result) if spec.rootfs_only else result.reference))


def _rootfs_lines(result: Any) -> str:
    """--rootfs-only prints the tree's path; with several architectures, one line each."""
    if result.architectures:
        return "\n".join(str(each.rootfs) for each in result.architectures.values())
    return str(result.rootfs)


def _write_report(ctx: BuildContext, path: Path | None) -> str | None:
    """The report, into the space the delivery reserved for it (when it got that far); the problem, if any."""
    if path is None:
        return None
    from .fullfs import reason
    try:
        ctx.result.write_report(path, ctx.delivery.report)
    except OSError as err:
        return f"cannot write the report {path}: {reason(err, path)}"
    finally:
        ctx.delivery.report = None
    return None


def _published(result: BuildResult) -> list[str]:
    return [*(f"tag {tag}" for tag in result.tags), *(f"output {output}" for output in result.outputs),
            *(f"sbom {path}" for path in result.sboms), *(f"push {line}" for line in result.pushed)]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: turns mkimage's errors into one-line messages and exit codes; a traceback only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command, prog_name = cli, "mkimage"
    if args[:1] == ["diff"]:  # only as the very first argument: `mkimage -y CONF diff` builds an image "diff"
        from .cli_diff import diff_command
        command, prog_name, args = diff_command, "mkimage diff", args[1:]
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # a bug: say so in one line unless asked for the traceback
        if debug:
            traceback.print_exc()
        else:
            click.echo(f"Error: internal error: {err!r} (run with --debug for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
