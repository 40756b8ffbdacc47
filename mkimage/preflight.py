"""Everything that can be checked before any work: privileges, tools, config, name, dirs, profiles.

Every problem is collected and reported at once (exit 2); nothing is created before they are all fixed.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import arch as archs
from . import installer, oci, publish, sandbox
from .installer import config as installer_config
from .installer.config import ConfigAnswer
from .installer.yum import Yum
from .engine import Engine, missing_engine_problem, select_engine
from .context import SMOKE_DEFAULT, ArchTarget, BuildSpec
from .errors import Problems
from .pipeline import TMPFS_SIZE_ENV, parse_size
from .profile import Profile
from .reference import name_problem, split_reference, tag_problem
from .run import run_captured
from .sbom import SbomRequest
from .staging import replaceable_problem


@dataclass(frozen=True)
class Request:
    """What the command line asked for, before it is checked."""

    reference: str | None
    tag: str | None
    config: Path
    pkg_manager: str
    releasever: str
    tmpdir: Path
    rootfs_in_memory: str
    cache_dir: Path | None
    keep_rootfs: bool
    rootfs_only: bool
    smoke_test: bool
    smoke_cmd: tuple[str, ...] | None
    allow_scriptlet_failures: bool
    allow_rpmdb_mismatch: bool
    reproducible: bool
    skip_unchanged: bool
    sboms: tuple[SbomRequest, ...]
    log_file: Path | None
    report: Path | None
    engine: str = "auto"
    outputs: tuple[str, ...] = ()
    push: bool = False
    authfile: Path | None = None
    registry_cert_dir: Path | None = None
    tls_verify: bool = True
    extra_tags: tuple[str, ...] = ()
    keep_replaced: bool = False
    sandbox: bool = True
    arches: tuple[str, ...] = ()
    """--arch as given (repeatable, comma-separated); empty: this host's."""


def default_tmpdir() -> Path:
    return Path(os.environ.get("TMPDIR") or "/tmp")


def reference_problems(reference: str | None, tag: str | None) -> tuple[list[str], str, str | None]:
    """Problems with NAME[:TAG] and -t; returns (problems, name, explicit tag)."""
    if not reference:
        return ["missing image NAME (e.g. mkimage -y /etc/yum.conf centos72)"], "", None
    ref = split_reference(reference)
    problems = [p for p in (name_problem(ref.name),) if p]
    if ref.tag is not None and tag is not None and ref.tag != tag:
        problems.append(f"tag given twice: {reference!r} and -t {tag!r}; give one")
    explicit = tag if tag is not None else ref.tag
    if explicit is not None:
        problems += [p for p in (tag_problem(explicit),) if p]
    return problems, ref.name, explicit


def dir_problem(path: Path, what: str) -> str | None:
    try:
        is_dir = path.is_dir()
    except OSError as err:
        return f"{what} {path} cannot be accessed: {err.strerror}"
    if not is_dir:
        return f"{what} {path} {'is not a directory' if os.path.lexists(path) else 'does not exist'}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{what} {path} is not writable"
    return None


def creatable_dir_problem(path: Path, what: str) -> str | None:
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing != path:
        return dir_problem(existing, f"{what}'s parent")
    return dir_problem(path, what)


def output_file_problem(path: Path | None, what: str) -> str | None:
    """A file mkimage writes: a missing path or a regular file (never a device, FIFO or symlink) in a writable
    directory."""
    if path is None:
        return None
    not_a_file = replaceable_problem(path)
    if not_a_file:
        return f"{what} {path} {not_a_file}"
    return dir_problem(path.parent if str(path.parent) else Path("."), f"{what}'s directory")


def tool_problems(request: Request, profile: Profile) -> list[str]:
    needed = {"rpm": "to list and check the installed packages"}
    if not request.rootfs_only:
        needed["tar"] = "to stream the rootfs into the container engine's import"
    if profile.commands and not request.sandbox:
        needed["chroot"] = "to run the profile's commands inside the rootfs"
    problems = [f"{tool} not found on PATH; it is needed {why}" for tool, why in needed.items()
                if shutil.which(tool) is None]
    if not request.rootfs_only and request.engine != "none":
        problems += [p for p in (missing_engine_problem(request.engine),) if p]
    if request.sandbox:
        problems += [problem for problem in (sandbox.bwrap_problem(),) if problem]
    if not request.rootfs_only and shutil.which("tar") and not _is_gnu_tar():
        problems.append("tar is not GNU tar (needed for --numeric-owner streaming); install GNU tar")
    return problems


def _is_gnu_tar() -> bool:
    result = run_captured(["tar", "--version"], timeout=30)
    return result.ok and "GNU tar" in result.stdout


def sandbox_probe_problem() -> str | None:
    result = run_captured(sandbox.probe_argv(sandbox.host_top_level_links()), timeout=60)
    return sandbox.probe_problem(result.returncode, result.tail)


def config_problems(request: Request, manager: installer.PackageManager,
                    arch: archs.Arch | None = None) -> tuple[ConfigAnswer | None, list[str]]:
    """The package manager's reading of the config (for arch: its $basearch and $arch) and its problems."""
    forcearch = archs.forcearch(arch) if arch is not None else ""
    answer = installer_config.ask(manager, request.config, request.releasever, sandboxed=request.sandbox,
                                  forcearch=forcearch)
    if isinstance(answer, str):
        return None, [answer]
    return answer, installer_config.problems(answer)


def target_problems(request: Request, manager: installer.PackageManager,
                    arches: Sequence[archs.Arch]) -> tuple[tuple[ArchTarget, ...], list[str]]:
    """The config as the package manager reads it for each architecture; the problems, each said once."""
    targets: list[ArchTarget] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=len(arches)) as pool:  # each asks a sandboxed dnf: side by side
        answers = list(pool.map(lambda arch: config_problems(request, manager, arch), arches))
    for arch, (answer, found) in zip(arches, answers):
        if answer is not None:
            targets.append(ArchTarget(arch, answer))
        problems += [problem for problem in found if problem not in problems]
    return tuple(targets), problems


def arch_problems(arches: Sequence[archs.Arch], manager: installer.PackageManager | None,
                  tags: Sequence[str]) -> list[str]:
    """What each asked architecture needs of this host (qemu-user with binfmt F) and of the package manager,
    and the NAME:TAG-ARCH tags of a multi-architecture build."""
    problems = [p for arch in arches for p in (archs.binfmt_problem(arch),) if p]
    if manager is not None:
        problems += [p for arch in arches for p in (archs.package_manager_problem(arch, manager.name),) if p]
    if len(arches) > 1:
        problems += [f"--arch: {problem}" for tag in tags for arch in arches
                     if (problem := tag_problem(f"{tag}-{arch}"))]
    return problems


def option_problems(request: Request) -> list[str]:
    """Options that don't fit together, and MKIMAGE_TMPFS_SIZE."""
    problems = []
    tmpfs_override = os.environ.get(TMPFS_SIZE_ENV)
    if tmpfs_override and parse_size(tmpfs_override) is None:
        problems.append(f"{TMPFS_SIZE_ENV}={tmpfs_override!r} is not a size such as 8G or 512m")
    if request.keep_rootfs and request.rootfs_in_memory == "always":
        problems.append("--keep-rootfs needs the rootfs on disk: drop --rootfs-in-memory always")
    if request.rootfs_only and request.rootfs_in_memory == "always":
        problems.append("--rootfs-only keeps the rootfs, so it must be on disk: drop --rootfs-in-memory always")
    if request.rootfs_only and request.extra_tags:
        problems.append("--extra-tag tags an image, and --rootfs-only makes none: drop one of them")
    problems += [f"--extra-tag: {problem}" for problem in map(tag_problem, request.extra_tags) if problem]
    return problems


def reproducible_problem(request: Request, manager: installer.PackageManager | None, epoch: int | None) -> str | None:
    if request.reproducible and epoch is None and isinstance(manager, Yum):
        return ("--reproducible with yum 3 needs SOURCE_DATE_EPOCH (its rpm 4.11 ignores it anyway: "
                "EL7 builds are not reproducible, see the README)")
    return None


def source_date_epoch() -> tuple[int | None, str | None]:
    """SOURCE_DATE_EPOCH from the environment, or the problem with it."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None, None
    if not value.isdigit():
        return None, f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970 (e.g. $(git log -1 --format=%ct))"
    return int(value), None


def engine_problems(request: Request, profile: Profile) -> tuple[Engine | None, list[str]]:
    """The container engine (None with --rootfs-only), asked whether it works, and what its import
    cannot express."""
    if request.rootfs_only or request.engine == "none":
        return None, []
    engine, problem = select_engine(request.engine)
    if problem or engine is None:
        return engine, [problem or "no container engine"]
    return engine, engine.change_problems(profile.image)


def registry_options(request: Request, name: str) -> publish.RegistryOptions | None:
    if not request.push:
        return None
    host = publish.registry_host(name)
    return publish.RegistryOptions(authfile=publish.resolve_authfile(request.authfile, os.environ, host),
                                   cert_dir=publish.cert_dir_for(host, request.registry_cert_dir),
                                   tls_verify=request.tls_verify)


def output_problems(request: Request, name: str, tags: Sequence[str]) -> tuple[tuple[oci.Output, ...], list[str]]:
    """--output, --push and --engine none, which go together."""
    parsed = [oci.parse_output(spec) for spec in request.outputs]
    outputs = tuple(item for item in parsed if isinstance(item, oci.Output))
    problems = [item for item in parsed if isinstance(item, str)]
    seen = [output.path for output in outputs]
    problems += [f"--output {path} is given twice" for path in sorted(set(seen)) if seen.count(path) > 1]
    if request.rootfs_only and (request.outputs or request.push):
        problems.append("--rootfs-only builds no image: drop --output and --push, or --rootfs-only")
    if request.skip_unchanged and request.push and not tags:
        problems.append("--skip-unchanged with --push compares the registry's NAME:TAG: give the tag (-t or NAME:TAG)")
    if request.engine == "none" and not (request.outputs or request.push) and not request.rootfs_only:
        problems.append("--engine none imports nothing: give --output FORMAT:PATH (or --push)")
    if request.push and name:
        references = [f"{name}:{tag}" for tag in tags] or [f"{name}:latest"]
        problems += publish.push_problems(references, request.authfile, os.environ, request.registry_cert_dir)
        problems += [p for p in (publish.archive_problem(request.tmpdir / "x"),) if p]
    return outputs, problems


def check(request: Request, profile: Profile, profile_problems: Sequence[str] = ()) -> BuildSpec:
    """The BuildSpec, or Problems listing everything that is wrong."""
    name_problems, name, explicit_tag = reference_problems(request.reference, request.tag)
    manager, manager_problem = installer.detect(request.pkg_manager)
    arches, parse_problems = archs.parse(request.arches)
    epoch, epoch_problem = source_date_epoch()
    outputs, outputs_problems = output_problems(request, name, [t for t in (explicit_tag, *request.extra_tags) if t])
    config_problem = installer.config_file_problem(request.config)
    candidates: list[str | None] = [
        None if os.geteuid() == 0 else ("mkimage must run as root (it makes device nodes and installs into a "
                                        "chroot): run it with sudo"),
        *name_problems,
        *profile_problems,
        manager_problem,
        config_problem,
        *tool_problems(request, profile),
        dir_problem(request.tmpdir, "--tmpdir"),
        creatable_dir_problem(request.cache_dir, "--cache-dir") if request.cache_dir else None,
        output_file_problem(request.log_file, "--log-file"),
        output_file_problem(request.report, "--report"),
        *(output_file_problem(wanted.path, "--sbom") for wanted in request.sboms),
        *option_problems(request),
        epoch_problem,
        reproducible_problem(request, manager, epoch),
        *outputs_problems,
        *parse_problems,
        *arch_problems(arches, manager, [t for t in (explicit_tag, *request.extra_tags) if t]),
    ]
    problems = [problem for problem in candidates if problem]
    engine: Engine | None = None
    targets: tuple[ArchTarget, ...] = ()
    if not problems:  # these ask other programs: only worth it once everything else is right
        assert manager is not None
        sandbox_problem = sandbox_probe_problem() if request.sandbox else None
        if sandbox_problem is None:
            targets, problems = target_problems(request, manager, arches)
        engine, engine_problem_list = engine_problems(request, profile)
        problems = [problem for problem in (sandbox_problem,) if problem] + problems + engine_problem_list
    if problems:
        raise Problems(problems)
    assert manager is not None and targets
    answer = targets[0].config_answer
    return BuildSpec(
        name=name, explicit_tag=explicit_tag, config=answer.config, package_manager=manager,
        releasever=request.releasever, config_answer=answer, profile=profile, tmpdir=request.tmpdir,
        rootfs_in_memory=request.rootfs_in_memory, cache_dir=request.cache_dir,
        keep_rootfs=request.keep_rootfs, rootfs_only=request.rootfs_only, smoke_test=request.smoke_test,
        smoke_cmd=request.smoke_cmd or SMOKE_DEFAULT, allow_scriptlet_failures=request.allow_scriptlet_failures,
        allow_rpmdb_mismatch=request.allow_rpmdb_mismatch, source_date_epoch=epoch,
        reproducible=request.reproducible or epoch is not None, skip_unchanged=request.skip_unchanged,
        sboms=request.sboms,
        engine=engine, extra_tags=tuple(dict.fromkeys(request.extra_tags)), keep_replaced=request.keep_replaced,
        sandbox=request.sandbox, outputs=outputs, push=request.push, registry=registry_options(request, name),
        arch=targets[0].arch, targets=targets,
    )
