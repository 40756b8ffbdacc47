"""Push a built image (an oci-archive) to a registry with skopeo, every tag or none.

Order, so that nothing a user sees changes before auth, TLS, the network and the permission to write are proven:

1. read the digest each tag points to now (proves pull access, TLS and the network; kept for a restore);
2. push blobs and manifest **by digest** (`REPO@sha256:...`): proves the right to write, moves no tag;
3. move each tag with a registry-side `skopeo copy docker://REPO@DIGEST docker://REPO:TAG` (blobs are already
   there, so this sends only the manifest), then read the tag's digest back: it must be the one built;
4. if step 3 fails for any tag, the tags already moved are put back to the digest recorded in step 1.

Credentials are never on a command line: skopeo gets `--authfile PATH` (a path, not a secret), chosen here from
where users keep their logins (see `resolve_authfile`). Failures are classified from skopeo's own message into
auth, tls, network or registry; network failures and 5xx/429 answers are retried a bounded number of times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from .arch import Arch
    from .context import BuildContext
from .errors import MkimageError, PushError
from .reference import split_reference
from .run import BuildLog, CommandResult, run_captured, run_streaming

SKOPEO = "skopeo"
DOCKER_HUB = "docker.io"
CERTS_ROOTS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
INSPECT_TIMEOUT = 300.0
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 1.0
MESSAGE_MAX = 240
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryOptions:
    authfile: Path | None = None
    """Passed to skopeo as --authfile; None: no credentials (anonymous)."""
    cert_dir: Path | None = None
    """skopeo's --cert-dir (*.crt CAs, *.cert/*.key client certificate); None: the system's CAs only."""
    tls_verify: bool = True
    retries: int = DEFAULT_RETRIES
    """Extra attempts after a transient failure (network, 5xx, 429); 0 disables retrying."""
    retry_delay: float = DEFAULT_RETRY_DELAY
    """Seconds before the first retry; doubled for each next one."""


@dataclass(frozen=True)
class Target:
    """One NAME:TAG to push; NAME includes the registry host."""

    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def host(self) -> str:
        return registry_host(self.repository)

    def at(self, digest: str) -> str:
        return f"{self.repository}@{digest}"


# --- names, credentials, certificates ------------------------------------------------------------------------

def registry_host(name: str) -> str:
    """Docker's rule: the first path part is a registry host if it has a '.' or ':' or is 'localhost'."""
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def has_explicit_host(name: str) -> bool:
    first, sep, _ = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def parse_targets(references: Sequence[str]) -> list[Target]:
    targets = []
    for reference in references:
        ref = split_reference(reference)
        if ref.tag is None:
            raise MkimageError(f"internal error: push reference {reference!r} has no tag")
        targets.append(Target(ref.name, ref.tag))
    return list(dict.fromkeys(targets))


def default_authfiles(env: Mapping[str, str], uid: int | None = None) -> list[Path]:
    """Where containers tools and docker keep logins, in the order containers/image reads them."""
    uid = os.geteuid() if uid is None else uid
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    candidates.append(Path(f"/run/containers/{uid}/auth.json"))
    candidates.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    candidates.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return list(dict.fromkeys(candidates))


def _auth_keys(path: Path) -> tuple[set[str], bool] | None:
    """The registries an auth file has entries for (auths, credHelpers), and whether it names a credsStore
    (which answers for every registry). Reads keys only, never the credentials. None if unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    keys: set[str] = set()
    for section in ("auths", "credHelpers"):
        entries = document.get(section)
        if isinstance(entries, dict):
            keys.update(str(key) for key in entries)
    return keys, bool(document.get("credsStore"))


def _key_matches(key: str, host: str) -> bool:
    """'https://registry:5000/v1/', 'registry:5000' and 'registry:5000/team' all match host 'registry:5000'."""
    bare = re.sub(r"^https?://", "", key).rstrip("/")
    if host == DOCKER_HUB and bare in ("index.docker.io/v1", "index.docker.io", "registry-1.docker.io"):
        return True
    return bare == host or bare.startswith(host + "/")


def authfile_covers(path: Path, host: str) -> bool:
    found = _auth_keys(path)
    if found is None:
        return False
    keys, has_store = found
    return has_store or any(_key_matches(key, host) for key in keys)


def resolve_authfile(explicit: Path | None, env: Mapping[str, str], host: str | None = None,
                     uid: int | None = None) -> Path | None:
    """The auth file skopeo should use: --authfile, else $REGISTRY_AUTH_FILE, else the first default file
    that has an entry for HOST (or, without HOST, the first that exists); None when there is none."""
    if explicit is not None:
        return explicit
    if env.get("REGISTRY_AUTH_FILE"):
        return Path(env["REGISTRY_AUTH_FILE"])
    existing = [path for path in default_authfiles(env, uid) if path.is_file()]
    if host is None:
        return existing[0] if existing else None
    return next((path for path in existing if authfile_covers(path, host)), None)


def cert_dir_for(host: str, explicit: Path | None, roots: Sequence[Path] = CERTS_ROOTS) -> Path | None:
    """--registry-cert-dir, else /etc/containers/certs.d/HOST:PORT, else /etc/docker/certs.d/HOST:PORT."""
    if explicit is not None:
        return explicit
    return next((root / host for root in roots if (root / host).is_dir()), None)


def tls_warning(options: RegistryOptions, host: str) -> str | None:
    if options.tls_verify:
        return None
    return (f"--tls-verify=false: the certificate of {host} is not checked (and plain HTTP is allowed); "
            "anyone on the path can read the credentials and replace the image")


# --- preflight checks (pure, for the lead's preflight) ---------------------------------------------------------

def push_reference_problem(reference: str) -> str | None:
    ref = split_reference(reference)
    if not has_explicit_host(ref.name):
        return (f"--push needs a registry host in NAME (e.g. registry.example.com:5000/{ref.name}); "
                f"{ref.name!r} has none")
    return None


def authfile_problem(path: Path, what: str = "--authfile") -> str | None:
    if path.exists() and not path.is_file():  # a FIFO would block the read
        return f"{what} {path} is not a regular file (an auth.json or docker config.json is expected)"
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except FileNotFoundError:
        return f"{what} {path} does not exist: log in with `skopeo login HOST --authfile {path}`"
    except OSError as err:
        return f"{what} {path} cannot be read: {err.strerror}"
    except ValueError:  # not UTF-8 (UnicodeDecodeError), or not JSON
        return f"{what} {path} is not JSON (an auth.json or docker config.json is expected)"
    if not isinstance(document, dict):
        return f"{what} {path} is not an auth.json (expected a JSON object with \"auths\")"
    return None


def cert_dir_problem(path: Path) -> str | None:
    if not path.is_dir():
        return f"--registry-cert-dir {path} is not a directory"
    if not any(entry.suffix in (".crt", ".cert") for entry in path.iterdir()):
        return f"--registry-cert-dir {path} holds no *.crt (CA) or *.cert (client) file"
    return None


def push_problems(references: Sequence[str], explicit_authfile: Path | None, env: Mapping[str, str],
                  explicit_cert_dir: Path | None) -> list[str]:
    """Everything --push needs that can be checked before a build: skopeo, NAME's host, auth file, cert dir."""
    problems = []
    if shutil.which(SKOPEO, path=env.get("PATH")) is None:
        problems.append("--push needs skopeo: apt-get install skopeo (or dnf install skopeo)")
    problems += [p for p in map(push_reference_problem, references) if p]
    if explicit_authfile is not None:
        problems += [p for p in (authfile_problem(explicit_authfile),) if p]
    elif env.get("REGISTRY_AUTH_FILE"):
        problems += [p for p in (authfile_problem(Path(env["REGISTRY_AUTH_FILE"]), "REGISTRY_AUTH_FILE"),) if p]
    if explicit_cert_dir is not None:
        problems += [p for p in (cert_dir_problem(explicit_cert_dir),) if p]
    return problems


def archive_problem(archive: Path) -> str | None:
    """skopeo reads `oci-archive:PATH[:NAME]`: a ':' in PATH would be taken for the image name."""
    if ":" in str(archive):
        return f"the oci-archive path {archive} contains ':', which skopeo cannot take; use another --tmpdir"
    return None


# --- argv (pure; never a credential: only the auth file's path) -----------------------------------------------

def _tls_args(options: RegistryOptions, prefix: str) -> list[str]:
    args = [f"--{prefix}cert-dir={options.cert_dir}"] if options.cert_dir is not None else []
    if not options.tls_verify:
        args.append(f"--{prefix}tls-verify=false")
    return args


def _authfile_args(options: RegistryOptions, prefix: str = "") -> list[str]:
    return [f"--{prefix}authfile={options.authfile}"] if options.authfile is not None else []


def inspect_argv(reference: str, options: RegistryOptions, *, config: bool = False,
                 arch: Arch | None = None) -> list[str]:
    """The raw manifest (to hash), or with config=True the image's config JSON (labels); arch: the config of
    that architecture's image, when the reference is an index."""
    return [SKOPEO, "inspect", "--config" if config else "--raw", *override_args(arch),
            *_authfile_args(options), *_tls_args(options, ""), f"docker://{reference}"]


def override_args(arch: Arch | None) -> list[str]:
    """skopeo's choice of one architecture's image in an index (none: this host's)."""
    if arch is None:
        return []
    return ["--override-arch", arch.goarch, *(["--override-variant", arch.variant] if arch.variant else [])]


def push_archive_argv(archive: Path, destination: str, options: RegistryOptions) -> list[str]:
    """Blobs and manifest from the archive, unchanged (--preserve-digests), to REPO@DIGEST: no tag moves."""
    return [SKOPEO, "copy", "--all", "--preserve-digests", *_authfile_args(options, "dest-"),
            *_tls_args(options, "dest-"), f"oci-archive:{archive}", f"docker://{destination}"]


def retag_argv(source: str, destination: str, options: RegistryOptions) -> list[str]:
    """Point a tag at a manifest already in the registry (REPO@DIGEST -> REPO:TAG); blobs are not sent again."""
    return [SKOPEO, "copy", "--all", "--preserve-digests", *_authfile_args(options), *_tls_args(options, "src-"),
            *_tls_args(options, "dest-"), f"docker://{source}", f"docker://{destination}"]


# --- classifying skopeo's failures ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    cause: str
    """auth, tls, network or registry."""
    reason: str
    """skopeo's own words, on one line."""
    transient: bool = False
    permission: bool = False
    not_found: bool = False


_FATAL_RE = re.compile(r'level=fatal msg="(?P<msg>(?:[^"\\]|\\.)*)"')
_GO_ESCAPE_RE = re.compile(r"\\(.)")
_GO_ESCAPES = {"n": "\n", "t": "\t"}
_PERMISSION = ("requested access to the resource is denied", "denied:", "403 forbidden", "status 403",
               "insufficient_scope")
_AUTH = ("unauthorized", "authentication required", "invalid username/password", "status 401", "401 unauthorized",
         "no basic auth credentials")
_NETWORK_FIRST = ("tls handshake timeout", "i/o timeout", "timed out", "connection reset by peer")
_TLS = ("x509:", "certificate", "tls:", "server gave http response to https client")
_NETWORK = ("connection refused", "no such host", "network is unreachable", "no route to host", "timeout",
            "unexpected eof", "broken pipe", "temporary failure in name resolution")
_TRANSIENT_STATUS_RE = re.compile(r"\b(5\d\d|429)\b|too many requests|toomanyrequests|service unavailable|"
                                  r"bad gateway|gateway timeout|internal server error")


def tool_reason(lines: Sequence[str]) -> str:
    """skopeo's fatal message on one line, without the 'Error parsing image name "...": ' preamble."""
    text = "\n".join(lines)
    matches = list(_FATAL_RE.finditer(text))
    if matches:
        message = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES.get(m.group(1), m.group(1)), matches[-1].group("msg"))
    else:
        message = next((line for line in reversed(lines) if line.strip()), "no output")
    message = re.sub(r'^Error parsing image name "[^"]*": ', "", message).replace("errors:\n", "")
    one_line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    # Go wraps errors outside-in ("trying to reuse blob ...: pinging ...: dial tcp ...: connection refused"):
    # the cause is at the end
    return one_line if len(one_line) <= MESSAGE_MAX else "..." + one_line[-(MESSAGE_MAX - 3):]


def classify(lines: Sequence[str]) -> Failure:
    reason = tool_reason(lines)
    text = "\n".join(lines).lower()
    if "manifest unknown" in text or "name unknown" in text:
        return Failure("registry", reason, not_found=True)
    if any(p in text for p in _PERMISSION):
        return Failure("auth", reason, permission=True)
    if any(p in text for p in _AUTH):
        return Failure("auth", reason)
    if any(p in text for p in _NETWORK_FIRST):
        return Failure("network", reason, transient=True)
    if any(p in text for p in _TLS):
        return Failure("tls", reason)
    if any(p in text for p in _NETWORK):
        return Failure("network", reason, transient=True)
    return Failure("registry", reason, transient=bool(_TRANSIENT_STATUS_RE.search(text)))


def failure_message(failure: Failure, repository: str, options: RegistryOptions, attempts: int) -> str:
    """One line that says what failed, why (auth, tls, network, registry) and what to do."""
    host = registry_host(repository)
    head = f"push to {repository} failed ({failure.cause})"
    if failure.permission:
        return (f"{head}: the credentials{_credentials_source(options)} may not push to {repository} "
                f"({failure.reason})")
    if failure.cause == "auth":
        if options.authfile is None:
            return (f"{head}: no credentials for {host} were found; run `skopeo login {host}` or give --authfile "
                    f"({failure.reason})")
        return f"{head}: {host} rejected the credentials from {options.authfile} ({failure.reason})"
    if failure.cause == "tls":
        return (f"{head}: the TLS certificate of {host} could not be verified; put its CA in "
                f"/etc/containers/certs.d/{host}/ca.crt or give --registry-cert-dir ({failure.reason})")
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if failure.cause == "network":
        return f"{head}: cannot reach {host}{tries} ({failure.reason})"
    return f"{head}: the registry answered with an error{tries} ({failure.reason})"


def _credentials_source(options: RegistryOptions) -> str:
    return f" from {options.authfile}" if options.authfile is not None else " (anonymous)"


# --- running skopeo ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    result: CommandResult
    failure: Failure | None
    attempts: int


def with_retries(run: Callable[[], CommandResult], options: RegistryOptions, log: BuildLog,
                 sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Run, and again after a transient failure, at most 1 + options.retries times, backing off."""
    attempts = 0
    while True:
        result = run()
        attempts += 1
        if result.ok:
            return Outcome(result, None, attempts)
        failure = classify(result.tail)
        if not failure.transient or attempts > options.retries:
            return Outcome(result, failure, attempts)
        delay = options.retry_delay * 2 ** (attempts - 1)
        log.write(f"mkimage: transient {failure.cause} failure ({failure.reason}); "
                  f"retry {attempts}/{options.retries} in {delay:g}s\n")
        log.flush()
        sleep(delay)


def _inspect(reference: str, options: RegistryOptions, log: BuildLog, *, config: bool = False,
             arch: Arch | None = None) -> Outcome:
    argv = inspect_argv(reference, options, config=config, arch=arch)
    return with_retries(lambda: run_captured(argv, log=log, timeout=INSPECT_TIMEOUT), options, log)


def _copy(argv: list[str], options: RegistryOptions, log: BuildLog) -> Outcome:
    return with_retries(lambda: run_streaming(argv, log=log), options, log)


def _fail(outcome: Outcome, repository: str, options: RegistryOptions, log: BuildLog,
          details: Sequence[str] = ()) -> PushError:
    assert outcome.failure is not None
    return PushError(outcome.failure.cause, failure_message(outcome.failure, repository, options, outcome.attempts),
                     details=details, log_path=log.path)


def manifest_digest_of(raw_manifest: str) -> str:
    return "sha256:" + hashlib.sha256(raw_manifest.encode("utf-8")).hexdigest()


def current_digest(target: Target, options: RegistryOptions, log: BuildLog) -> str | None:
    """The manifest digest TAG points to in the registry now; None when the tag does not exist."""
    outcome = _inspect(target.reference, options, log)
    if outcome.failure is None:
        return manifest_digest_of(outcome.result.stdout)
    if outcome.failure.not_found:
        return None
    raise _fail(outcome, target.repository, options, log)


def remote_labels(reference: str, options: RegistryOptions, log: BuildLog,
                  arch: Arch | None = None) -> dict[str, str] | None:
    """The labels of the image REFERENCE (NAME:TAG) in the registry (of arch's image, when it is an index);
    None when the tag does not exist.  Raises PushError when the registry cannot be asked (auth, TLS, network)."""
    outcome = _inspect(reference, options, log, config=True, arch=arch)
    if outcome.failure is not None:
        if outcome.failure.not_found:
            return None
        raise _fail(outcome, split_reference(reference).name, options, log)
    try:
        config = json.loads(outcome.result.stdout)
    except ValueError:
        raise PushError("registry", f"the registry sent an image config for {reference} that is not JSON",
                        log_path=log.path) from None
    labels = (config.get("config") or {}).get("Labels") or {}
    return {str(key): str(value) for key, value in labels.items()}


# --- push ---------------------------------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _no_progress(step: str) -> None:
    pass


def push(archive: Path, manifest_digest: str, references: Sequence[str], options: RegistryOptions,
         log: BuildLog, on_progress: Progress = _no_progress, manifests: Sequence[str] = ()) -> list[str]:
    """Push the oci-archive to every NAME:TAG; returns one 'NAME:TAG@sha256:...' line per tag.
    On failure raises PushError, with every tag pointing where it pointed before (details say otherwise).
    on_progress gets one short sentence per step ('pushing REPO@sha256:...', 'tagging NAME:TAG').
    manifests: when manifest_digest is an index's, the digests of the manifests it lists, each read back."""
    pushed = _push_tags(archive, manifest_digest, references, options, log, on_progress)
    for repository in dict.fromkeys(split_reference(reference).name for reference in references):
        verify_manifests(repository, manifest_digest, manifests, options, log, on_progress)
    return pushed


def verify_manifests(repository: str, index_digest: str, expected: Sequence[str], options: RegistryOptions,
                     log: BuildLog, on_progress: Progress = _no_progress) -> None:
    """The registry's index lists exactly the built manifests, and each one reads back with its digest."""
    if not expected:
        return
    on_progress(f"reading back the {len(expected)} manifests of {repository}@{index_digest}")
    outcome = _inspect(f"{repository}@{index_digest}", options, log)
    if outcome.failure is not None:
        raise _fail(outcome, repository, options, log)
    try:
        listed = [item["digest"] for item in json.loads(outcome.result.stdout)["manifests"]]
    except (ValueError, KeyError, TypeError):
        listed = []
    if listed != list(expected):
        raise PushError("registry", f"push to {repository} failed (registry): its index {index_digest} lists "
                        f"{', '.join(listed) or 'no manifest'}, not the built {', '.join(expected)}", log_path=log.path)
    for digest in expected:
        outcome = _inspect(f"{repository}@{digest}", options, log)
        if outcome.failure is not None:
            raise _fail(outcome, repository, options, log)
        if manifest_digest_of(outcome.result.stdout) != digest:
            raise PushError("registry", f"push to {repository} failed (registry): the manifest read back as "
                            f"{digest} has another digest", log_path=log.path)


def _push_tags(archive: Path, manifest_digest: str, references: Sequence[str], options: RegistryOptions,
               log: BuildLog, on_progress: Progress) -> list[str]:
    if not DIGEST_RE.match(manifest_digest):
        raise MkimageError(f"internal error: {manifest_digest!r} is not a sha256 manifest digest")
    problem = archive_problem(archive)
    if problem:
        raise PushError("registry", problem, log_path=log.path)
    targets = parse_targets(references)
    if len(targets) == 1:
        return [_push_one(archive, manifest_digest, targets[0], options, log, on_progress)]
    on_progress("reading the tags' current digests")
    previous = {target: current_digest(target, options, log) for target in targets}
    log.write("mkimage: tags before the push: "
              + ", ".join(f"{t.reference}={previous[t] or 'absent'}" for t in targets) + "\n")
    for repository in dict.fromkeys(target.repository for target in targets):
        on_progress(f"pushing {repository}@{manifest_digest}")
        outcome = _copy(push_archive_argv(archive, f"{repository}@{manifest_digest}", options), options, log)
        if outcome.failure is not None:
            raise _fail(outcome, repository, options, log, ["no tag was changed"])
    _move_tags(targets, previous, manifest_digest, options, log, on_progress)
    return [f"{target.reference}@{manifest_digest}" for target in targets]


def _push_one(archive: Path, digest: str, target: Target, options: RegistryOptions, log: BuildLog,
              on_progress: Progress) -> str:
    """One tag: push straight to it (the registry moves a tag only with the manifest, the last request, so a
    failed push leaves it as it was), then read its digest back."""
    on_progress(f"pushing {target.reference}@{digest}")
    outcome = _copy(push_archive_argv(archive, target.reference, options), options, log)
    if outcome.failure is not None:
        raise _fail(outcome, target.repository, options, log, ["no tag was changed"])
    now = current_digest(target, options, log)
    if now != digest:
        raise PushError("registry", f"push to {target.repository} failed (registry): {target.reference} is "
                        f"{now or 'absent'} in the registry after the push, not the built {digest}", log_path=log.path)
    return f"{target.reference}@{digest}"


def _move_tags(targets: Sequence[Target], previous: Mapping[Target, str | None], digest: str,
               options: RegistryOptions, log: BuildLog, on_progress: Progress) -> None:
    touched: list[Target] = []
    for target in targets:
        try:
            if previous[target] != digest:
                on_progress(f"tagging {target.reference}")
                touched.append(target)
                outcome = _copy(retag_argv(target.at(digest), target.reference, options), options, log)
                if outcome.failure is not None:
                    raise _fail(outcome, target.repository, options, log)
            now = current_digest(target, options, log)
            if now != digest:
                raise PushError("registry", f"push to {target.repository} failed (registry): {target.reference} "
                                f"is {now or 'absent'} in the registry after the push, not the built {digest}",
                                log_path=log.path)
        except PushError as err:
            notes = restore_tags(touched, previous, digest, options, log)
            raise PushError(err.cause, err.message, details=[*err.details, *notes], log_path=log.path) from None


def restore_tags(touched: Sequence[Target], previous: Mapping[Target, str | None], digest: str,
                 options: RegistryOptions, log: BuildLog) -> list[str]:
    """Put tags back where they pointed before the push; what could not be put back, one line each."""
    notes = []
    for target in reversed(touched):
        old = previous[target]
        try:
            now = current_digest(target, options, log)
        except PushError as err:
            notes.append(f"could not check {target.reference} (it should be {old or 'absent'}): {err.message}")
            continue
        if now == old:
            continue
        if old is None:
            notes.append(f"{target.reference} did not exist before and now points to {now}; "
                         "the registry API cannot remove just a tag: delete it there if unwanted")
            continue
        outcome = _copy(retag_argv(target.at(old), target.reference, options), options, log)
        if outcome.failure is None:
            notes.append(f"{target.reference} was put back to {old}")
        else:
            notes.append(f"could not put {target.reference} back to {old}: {outcome.failure.reason}")
    return notes


# ------------------------------------------------------------------------------------------- the stage
def push_stage(ctx: BuildContext) -> None:
    """Push the image mkimage wrote (the one whose layer the engine smoke-tested) to every tag of NAME; with
    several architectures, the index with all their images."""
    from .oci import ImageIndex
    published = ctx.published
    assert published is not None and ctx.push_archive is not None and ctx.spec.registry is not None
    options = ctx.spec.registry
    warning = tls_warning(options, registry_host(ctx.spec.name))
    if warning:
        ctx.ui.warn(warning)
        ctx.result.warnings.append(warning)
    manifests = [item.image.manifest_digest for item in published.images] if isinstance(published, ImageIndex) else []
    ctx.result.pushed = push(ctx.push_archive, published.digest, ctx.references, options, ctx.log,
                             on_progress=ctx.ui.info, manifests=manifests)
