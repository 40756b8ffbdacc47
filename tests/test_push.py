"""mkimage.publish: argv, credentials, classification (unit), and pushes to a real registry (integration):
Debian's docker-registry over TLS from a CA made here, htpasswd (bcrypt) auth, and token auth for a user who
may pull but not push. Every failure must leave the tags in the registry as they were."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import require
from mkimage import publish
from mkimage.arch import KNOWN
from mkimage.errors import EXIT_PUSH, PushError
from mkimage.publish import Failure, RegistryOptions
from mkimage.run import BuildLog, CommandResult
from registry import (Archive, Ca, Registry, TokenIssuer, TokenServer, htpasswd_registry, serving,
                      make_ca, make_oci_archive, token_registry, write_authfile)

PASSWORD = "correct horse battery staple"
REGISTRY_TOOLS = ("skopeo", "docker-registry", "htpasswd", "openssl", "docker")
CREDENTIAL_FLAGS = ("--creds", "--src-creds", "--dest-creds", "--username", "--password", "--registry-token",
                    "--src-registry-token", "--dest-registry-token")

# skopeo 1.9's own messages, as the integration tests below provoke them.
UNAUTHORIZED = ('time="2026-11-22T21:39:15Z" level=fatal msg="Error parsing image name \\"docker://127.0.0.1:1/t:v1'
                '\\": reading manifest v1 in 127.0.0.1:1/t: unauthorized: authentication required"')
DENIED = ('time="2026-11-22T21:39:16Z" level=fatal msg="writing manifest: uploading manifest v2 to 127.0.0.1:1/t/app: '
          'errors:\\ndenied: requested access to the resource is denied\\nunauthorized: authentication required\\n"')
BAD_TOKEN_LOGIN = ('level=fatal msg="Error parsing image name \\"docker://h:1/t:v1\\": unable to retrieve auth token: '
                   'invalid username/password: unauthorized: wrong user name or password"')
UNKNOWN_CA = ('level=fatal msg="trying to reuse blob sha256:35 at destination: pinging container registry '
              '127.0.0.1:1: Get \\"https://127.0.0.1:1/v2/\\": x509: certificate signed by unknown authority"')
REFUSED = ('level=fatal msg="pinging container registry 127.0.0.1:1: Get \\"https://127.0.0.1:1/v2/\\": '
           'dial tcp 127.0.0.1:1: connect: connection refused"')
NO_HOST = ('level=fatal msg="pinging container registry nosuch.invalid:5000: Get \\"https://nosuch.invalid:5000/v2/\\":'
           ' dial tcp: lookup nosuch.invalid on 10.0.0.1:53: no such host"')
HANDSHAKE_TIMEOUT = 'level=fatal msg="pinging container registry r:1: Get \\"https://r:1/v2/\\": net/http: TLS handshake timeout"'
MANIFEST_UNKNOWN = ('level=fatal msg="Error parsing image name \\"docker://h:1/t:nope\\": reading manifest nope in '
                    'h:1/t: manifest unknown: manifest unknown"')
UNAVAILABLE = 'level=fatal msg="writing blob: received unexpected HTTP status: 503 Service Unavailable"'
PLAIN_HTTP = ('level=fatal msg="pinging container registry r:1: Get \\"https://r:1/v2/\\": http: server gave HTTP '
              'response to HTTPS client"')
OTHER = 'level=fatal msg="writing manifest: manifest invalid: manifest invalid"'


# --- unit ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, host", [
    ("registry.example.com:5000/base/el9", "registry.example.com:5000"),
    ("127.0.0.1:5000/base", "127.0.0.1:5000"),
    ("localhost/base", "localhost"),
    ("quay.io/team/base", "quay.io"),
    ("team/base", "docker.io"),
    ("base", "docker.io"),
])
def test_registry_host(name: str, host: str) -> None:
    assert publish.registry_host(name) == host


@pytest.mark.parametrize("reference, problem", [
    ("registry.example.com:5000/base/el9:9.4", None),
    ("localhost/base:1", None),
    ("base/el9:9.4", "--push needs a registry host in NAME"),
    ("el9", "--push needs a registry host in NAME"),
])
def test_push_reference_problem(reference: str, problem: str | None) -> None:
    found = publish.push_reference_problem(reference)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


FULL = RegistryOptions(authfile=Path("/run/user/0/containers/auth.json"), cert_dir=Path("/etc/docker/certs.d/r:5"),
                       tls_verify=True)
INSECURE = RegistryOptions(tls_verify=False)
ANONYMOUS = RegistryOptions()
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("argv, expected", [
    (publish.inspect_argv("r:5/base:1", FULL),
     ["skopeo", "inspect", "--raw", "--authfile=/run/user/0/containers/auth.json",
      "--cert-dir=/etc/docker/certs.d/r:5", "docker://r:5/base:1"]),
    (publish.inspect_argv("r:5/base:1", INSECURE, config=True),
     ["skopeo", "inspect", "--config", "--tls-verify=false", "docker://r:5/base:1"]),
    (publish.push_archive_argv(Path("/tmp/b/img.tar"), f"r:5/base@{DIGEST}", FULL),
     ["skopeo", "copy", "--all", "--preserve-digests", "--dest-authfile=/run/user/0/containers/auth.json",
      "--dest-cert-dir=/etc/docker/certs.d/r:5", "oci-archive:/tmp/b/img.tar", f"docker://r:5/base@{DIGEST}"]),
    (publish.push_archive_argv(Path("/tmp/b/img.tar"), f"r:5/base@{DIGEST}", ANONYMOUS),
     ["skopeo", "copy", "--all", "--preserve-digests", "oci-archive:/tmp/b/img.tar", f"docker://r:5/base@{DIGEST}"]),
    (publish.inspect_argv("r:5/base:1", ANONYMOUS, config=True, arch=KNOWN["aarch64"]),
     ["skopeo", "inspect", "--config", "--override-arch", "arm64", "--override-variant", "v8",
      "docker://r:5/base:1"]),
    (publish.retag_argv(f"r:5/base@{DIGEST}", "r:5/base:1", FULL),
     ["skopeo", "copy", "--all", "--preserve-digests", "--authfile=/run/user/0/containers/auth.json",
      "--src-cert-dir=/etc/docker/certs.d/r:5", "--dest-cert-dir=/etc/docker/certs.d/r:5",
      f"docker://r:5/base@{DIGEST}", "docker://r:5/base:1"]),
    (publish.retag_argv(f"r:5/base@{DIGEST}", "r:5/base:1", INSECURE),
     ["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
      f"docker://r:5/base@{DIGEST}", "docker://r:5/base:1"]),
])
def test_argv(argv: list[str], expected: list[str]) -> None:
    assert argv == expected
    assert not [arg for arg in argv if arg.split("=")[0] in CREDENTIAL_FLAGS]


@pytest.mark.parametrize("line, cause, transient, permission, not_found", [
    (UNAUTHORIZED, "auth", False, False, False),
    (BAD_TOKEN_LOGIN, "auth", False, False, False),
    (DENIED, "auth", False, True, False),
    (UNKNOWN_CA, "tls", False, False, False),
    (PLAIN_HTTP, "tls", False, False, False),
    (REFUSED, "network", True, False, False),
    (NO_HOST, "network", True, False, False),
    (HANDSHAKE_TIMEOUT, "network", True, False, False),
    ("skopeo timed out after 300s", "network", True, False, False),
    (UNAVAILABLE, "registry", True, False, False),
    (OTHER, "registry", False, False, False),
    (MANIFEST_UNKNOWN, "registry", False, False, True),
])
def test_classify(line: str, cause: str, transient: bool, permission: bool, not_found: bool) -> None:
    failure = publish.classify(["Getting image source signatures", line])
    assert (failure.cause, failure.transient, failure.permission, failure.not_found) == \
        (cause, transient, permission, not_found)
    assert "\n" not in failure.reason and "level=fatal" not in failure.reason


def test_tool_reason_is_skopeos_sentence_on_one_line() -> None:
    assert publish.tool_reason([DENIED]) == ("writing manifest: uploading manifest v2 to 127.0.0.1:1/t/app: "
                                             "denied: requested access to the resource is denied; "
                                             "unauthorized: authentication required")
    assert publish.tool_reason([UNKNOWN_CA]).endswith(
        'Get "https://127.0.0.1:1/v2/": x509: certificate signed by unknown authority')
    assert publish.tool_reason([MANIFEST_UNKNOWN]).startswith("reading manifest nope in h:1/t")


@pytest.mark.parametrize("failure, options, says", [
    (Failure("auth", "unauthorized"), FULL, "(auth): r:5 rejected the credentials from /run/user/0/"),
    (Failure("auth", "unauthorized"), ANONYMOUS, "(auth): no credentials for r:5 were found; run `skopeo login r:5`"),
    (Failure("auth", "denied", permission=True), FULL, "(auth): the credentials from /run/user/0/containers/"
                                                       "auth.json may not push to r:5/base"),
    (Failure("tls", "x509"), FULL, "(tls): the TLS certificate of r:5 could not be verified; put its CA in "
                                   "/etc/containers/certs.d/r:5/ca.crt or give --registry-cert-dir"),
    (Failure("network", "refused", transient=True), FULL, "(network): cannot reach r:5 after 3 attempts"),
    (Failure("registry", "503", transient=True), FULL, "(registry): the registry answered with an error after 3"),
])
def test_failure_message_is_one_line_with_its_cause(failure: Failure, options: RegistryOptions, says: str) -> None:
    message = publish.failure_message(failure, "r:5/base", options, attempts=3)
    assert message.startswith("push to r:5/base failed (")
    assert says in message and "\n" not in message


def test_push_error_has_its_exit_code() -> None:
    err = PushError("tls", "push to r:5/base failed (tls): x")
    assert (err.exit_code, err.kind, err.cause) == (EXIT_PUSH, "push-failed", "tls") and EXIT_PUSH == 7


def _auth(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_resolve_authfile_order(tmp_path: Path) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    docker_cfg = _auth(home / ".docker" / "config.json", {"auths": {"https://r:5/v1/": {"auth": "eDp5"}}})
    assert publish.resolve_authfile(None, env, "r:5", uid=4242) == docker_cfg
    user_cfg = _auth(home / ".config" / "containers" / "auth.json", {"auths": {"r:5/team": {"auth": "eDp5"}}})
    assert publish.resolve_authfile(None, env, "r:5", uid=4242) == user_cfg
    runtime_cfg = _auth(runtime / "containers" / "auth.json", {"auths": {"other:5": {"auth": "eDp5"}}})
    assert publish.resolve_authfile(None, env, "r:5", uid=4242) == user_cfg, "a file without r:5 is skipped"
    assert publish.resolve_authfile(None, env, "other:5", uid=4242) == runtime_cfg
    assert publish.resolve_authfile(None, env, "nowhere:5", uid=4242) is None
    assert publish.resolve_authfile(None, env, None, uid=4242) == runtime_cfg
    assert publish.resolve_authfile(None, {**env, "REGISTRY_AUTH_FILE": "/x/a.json"}, "r:5") == Path("/x/a.json")
    assert publish.resolve_authfile(Path("/y/b.json"), {**env, "REGISTRY_AUTH_FILE": "/x"}, "r:5") == Path("/y/b.json")


def test_default_authfiles_for_root_without_runtime_dir() -> None:
    assert publish.default_authfiles({"HOME": "/root"}, uid=0) == [
        Path("/run/containers/0/auth.json"), Path("/root/.config/containers/auth.json"),
        Path("/root/.docker/config.json")]


def test_a_creds_store_answers_for_every_registry(tmp_path: Path) -> None:
    store = _auth(tmp_path / ".docker" / "config.json", {"auths": {}, "credsStore": "pass"})
    assert publish.resolve_authfile(None, {"HOME": str(tmp_path)}, "r:5", uid=4242) == store


def test_cert_dir_for(tmp_path: Path) -> None:
    containers, docker = tmp_path / "containers", tmp_path / "docker"
    roots = (containers, docker)
    assert publish.cert_dir_for("r:5", None, roots) is None
    (docker / "r:5").mkdir(parents=True)
    assert publish.cert_dir_for("r:5", None, roots) == docker / "r:5"
    (containers / "r:5").mkdir(parents=True)
    assert publish.cert_dir_for("r:5", None, roots) == containers / "r:5"
    assert publish.cert_dir_for("r:5", tmp_path, roots) == tmp_path


def test_push_problems_are_all_reported(tmp_path: Path) -> None:
    bad_json = tmp_path / "auth.json"
    bad_json.write_text("{nope")
    no_certs = tmp_path / "certs"
    no_certs.mkdir()
    problems = publish.push_problems(["base/el9:1", "r:5/base:1"], bad_json, {"PATH": "/nonexistent"}, no_certs)
    assert problems == [
        "--push needs skopeo: apt-get install skopeo (or dnf install skopeo)",
        "--push needs a registry host in NAME (e.g. registry.example.com:5000/base/el9); 'base/el9' has none",
        f"--authfile {bad_json} is not JSON (an auth.json or docker config.json is expected)",
        f"--registry-cert-dir {no_certs} holds no *.crt (CA) or *.cert (client) file",
    ]
    missing = tmp_path / "missing.json"
    assert publish.push_problems(["r:5/base:1"], None, {"REGISTRY_AUTH_FILE": str(missing)}, None) == [
        f"REGISTRY_AUTH_FILE {missing} does not exist: log in with `skopeo login HOST --authfile {missing}`"]


def test_tls_warning() -> None:
    assert publish.tls_warning(FULL, "r:5") is None
    assert "not checked" in (publish.tls_warning(INSECURE, "r:5") or "")


def test_retries_are_bounded_and_only_for_transient_failures(tmp_path: Path) -> None:
    """Error path that a real registry cannot produce on demand: a 503 (the real 'registry down' is below)."""
    log = BuildLog(tmp_path / "log")
    calls: list[int] = []
    slept: list[float] = []

    def unavailable() -> CommandResult:
        calls.append(1)
        return CommandResult(["skopeo"], 1, [UNAVAILABLE])

    outcome = publish.with_retries(unavailable, RegistryOptions(retries=2, retry_delay=0.5), log, slept.append)
    assert (len(calls), outcome.attempts, slept) == (3, 3, [0.5, 1.0])
    assert outcome.failure is not None and outcome.failure.cause == "registry"
    calls.clear()
    denied = publish.with_retries(lambda: calls.append(1) or CommandResult(["skopeo"], 1, [DENIED]),
                                  RegistryOptions(retries=2), log, slept.append)
    assert (len(calls), denied.attempts) == (1, 1)


def test_archive_path_with_a_colon_is_refused() -> None:
    assert publish.archive_problem(Path("/tmp/a:b/img.tar")) is not None
    assert publish.archive_problem(Path("/tmp/ab/img.tar")) is None


# --- integration: a real registry ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry_tools(docker_daemon: None) -> None:
    missing = [tool for tool in REGISTRY_TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing tools: {', '.join(missing)} (apt-get install skopeo docker-registry "
                         "apache2-utils openssl)")
    require(Path("/bin/busybox").exists(), "missing /bin/busybox (apt-get install busybox-static)")


@pytest.fixture(scope="module")
def work(registry_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("push")


@pytest.fixture(scope="module")
def ca(work: Path) -> Ca:
    return make_ca(work / "ca")


@pytest.fixture(scope="module")
def archives(work: Path) -> dict[str, Archive]:
    """Two different images: 'old' (already in the registry) and 'new' (what a build pushes)."""
    return {marker: make_oci_archive(work, marker, {"mkimage.inputs": f"inputs-{marker}"})
            for marker in ("old", "new")}


@pytest.fixture(scope="module")
def registry(work: Path, ca: Ca) -> Iterator[Registry]:
    with serving(htpasswd_registry(work / "htpasswd-registry", ca, {"alice": PASSWORD})) as reg:
        yield reg


@pytest.fixture(scope="module")
def good_auth(work: Path, registry: Registry) -> Path:
    return write_authfile(work / "good-auth.json", registry.host, "alice", PASSWORD)


def options_for(reg: Registry, authfile: Path | None, **overrides: object) -> RegistryOptions:
    values: dict = {"authfile": authfile, "cert_dir": reg.ca.cert_dir, "retries": 1, "retry_delay": 0.1}
    values.update(overrides)
    return RegistryOptions(**values)


def seed(reg: Registry, archive: Archive, references: list[str], authfile: Path) -> None:
    """Put the old image in the registry without mkimage; the failing pushes below must leave it there."""
    for reference in references:
        reg.copy_in(archive.path, reference, authfile)
        assert reg.digest(reference, authfile) == archive.digest


def assert_one_line(err: PushError, cause: str) -> None:
    assert err.exit_code == EXIT_PUSH and err.cause == cause
    assert err.message.startswith("push to ") and f"failed ({cause})" in err.message
    assert "\n" not in err.message


def logged(log: BuildLog) -> str:
    log.flush()
    return log.path.read_text()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BuildLog]:
    build_log = BuildLog(tmp_path / "build.log")
    yield build_log
    build_log.close()


@pytest.mark.integration
def test_push_every_tag_then_pull_back_by_digest_and_run(registry: Registry, archives: dict[str, Archive],
                                                         good_auth: Path, log: BuildLog, tmp_path: Path) -> None:
    old, new = archives["old"], archives["new"]
    repo = f"{registry.host}/base/el9"
    seed(registry, old, [f"{repo}:latest"], good_auth)
    steps: list[str] = []

    lines = publish.push(new.path, new.digest, [f"{repo}:9.4", f"{repo}:latest"], options_for(registry, good_auth),
                         log, steps.append)

    assert lines == [f"{repo}:9.4@{new.digest}", f"{repo}:latest@{new.digest}"]
    assert steps == ["reading the tags' current digests", f"pushing {repo}@{new.digest}", f"tagging {repo}:9.4",
                     f"tagging {repo}:latest"]
    for tag in ("9.4", "latest"):
        assert registry.digest(f"{repo}:{tag}", good_auth) == new.digest
    text = logged(log)
    assert PASSWORD not in text and "alice" not in text
    assert f"{repo}:latest={old.digest}" in text, "the previous digest is recorded before anything moves"

    # skopeo: pull back by digest; the manifest it gets is the one built.
    pulled = tmp_path / "pulled"
    subprocess.run(["skopeo", "copy", *registry.skopeo_args(good_auth, "src-"), f"docker://{repo}@{new.digest}",
                    f"dir:{pulled}"], check=True, capture_output=True)
    assert "sha256:" + hashlib.sha256((pulled / "manifest.json").read_bytes()).hexdigest() == new.digest

    # docker: log in (password on stdin, config in a private dir), pull by digest, run.
    config = tmp_path / "docker-config"
    subprocess.run(["docker", "--config", str(config), "login", "--username", "alice", "--password-stdin",
                    registry.host], input=PASSWORD, text=True, check=True, capture_output=True)
    pinned = f"{repo}@{new.digest}"
    try:
        subprocess.run(["docker", "--config", str(config), "pull", "--quiet", pinned], check=True,
                       capture_output=True)
        ran = subprocess.run(["docker", "run", "--rm", "--network", "none", pinned, "/bin/busybox", "cat",
                              "/marker"], capture_output=True, text=True, timeout=120)
        assert (ran.returncode, ran.stdout) == (0, "new\n"), ran.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "--force", pinned], capture_output=True)


@pytest.mark.integration
def test_pushing_the_same_digest_again_moves_no_tag(registry: Registry, archives: dict[str, Archive],
                                                    good_auth: Path, log: BuildLog) -> None:
    new = archives["new"]
    reference = f"{registry.host}/again/el9:1"
    options = options_for(registry, good_auth)
    assert publish.push(new.path, new.digest, [reference], options, log) == [f"{reference}@{new.digest}"]
    steps: list[str] = []
    assert publish.push(new.path, new.digest, [reference], options, log, steps.append) == [f"{reference}@{new.digest}"]
    assert not [step for step in steps if step.startswith("tagging")]


@pytest.mark.integration
@pytest.mark.parametrize("credentials, says", [
    ("wrong", "rejected the credentials from"),
    (None, "no credentials for"),
])
def test_bad_credentials_leave_the_old_tag(registry: Registry, archives: dict[str, Archive], good_auth: Path,
                                           log: BuildLog, tmp_path: Path, credentials: str | None, says: str) -> None:
    old, new = archives["old"], archives["new"]
    reference = f"{registry.host}/auth/el9:9"
    seed(registry, old, [reference], good_auth)
    authfile = write_authfile(tmp_path / "bad.json", registry.host, "alice", "wrong") if credentials else None

    with pytest.raises(PushError) as caught:
        publish.push(new.path, new.digest, [reference], options_for(registry, authfile), log)

    assert_one_line(caught.value, "auth")
    assert says in caught.value.message
    assert registry.digest(reference, good_auth) == old.digest


@pytest.mark.integration
def test_unknown_ca_is_a_tls_failure(registry: Registry, archives: dict[str, Archive], good_auth: Path,
                                     log: BuildLog, work: Path) -> None:
    old, new = archives["old"], archives["new"]
    reference = f"{registry.host}/tls/el9:9"
    seed(registry, old, [reference], good_auth)
    stranger = make_ca(work / "other-ca", "some other CA")

    with pytest.raises(PushError) as caught:
        publish.push(new.path, new.digest, [reference], options_for(registry, good_auth, cert_dir=stranger.cert_dir),
                     log)

    assert_one_line(caught.value, "tls")
    assert "x509: certificate signed by unknown authority" in caught.value.message
    assert registry.digest(reference, good_auth) == old.digest


@pytest.mark.integration
def test_tls_verify_false_pushes_without_the_ca(registry: Registry, archives: dict[str, Archive], good_auth: Path,
                                                log: BuildLog) -> None:
    new = archives["new"]
    reference = f"{registry.host}/insecure/el9:9"
    options = RegistryOptions(authfile=good_auth, cert_dir=None, tls_verify=False)
    assert publish.push(new.path, new.digest, [reference], options, log) == [f"{reference}@{new.digest}"]
    assert publish.tls_warning(options, registry.host) is not None


@pytest.mark.integration
def test_registry_down_is_a_network_failure_retried_then_the_old_tag_is_still_there(
        registry: Registry, archives: dict[str, Archive], good_auth: Path, log: BuildLog) -> None:
    old, new = archives["old"], archives["new"]
    reference = f"{registry.host}/down/el9:9"
    seed(registry, old, [reference], good_auth)
    registry.stop()
    try:
        with pytest.raises(PushError) as caught:
            publish.push(new.path, new.digest, [reference], options_for(registry, good_auth, retries=2), log)
    finally:
        registry.start()

    assert_one_line(caught.value, "network")
    assert f"cannot reach {registry.host} after 3 attempts" in caught.value.message
    assert "connection refused" in caught.value.message
    assert logged(log).count("mkimage: transient network failure") == 2
    assert registry.digest(reference, good_auth) == old.digest


@pytest.mark.integration
def test_remote_labels(registry: Registry, archives: dict[str, Archive], good_auth: Path, log: BuildLog) -> None:
    reference = f"{registry.host}/labels/el9:9"
    options = options_for(registry, good_auth)
    assert publish.remote_labels(reference, options, log) is None
    seed(registry, archives["old"], [reference], good_auth)
    assert publish.remote_labels(reference, options, log) == {"mkimage.inputs": "inputs-old"}
    with pytest.raises(PushError) as caught:
        publish.remote_labels(reference, options_for(registry, None), log)
    assert_one_line(caught.value, "auth")


# --- token auth: a user who may pull but not push ----------------------------------------------------------------

@pytest.fixture(scope="module")
def token_server(work: Path, ca: Ca) -> Iterator[TokenServer]:
    server = TokenServer(TokenIssuer(work), ca, users={"writer": PASSWORD, "reader": PASSWORD},
                         policy={"writer": {"team/app": {"pull", "push"}, "team/other": {"pull", "push"}},
                                 "reader": {"team/app": {"pull"}}})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_reg(work: Path, ca: Ca, token_server: TokenServer) -> Iterator[Registry]:
    reg = token_registry(work / "token-registry", ca, token_server)
    reg.start()
    yield reg
    reg.stop()


@pytest.mark.integration
def test_a_user_who_may_not_push_gets_an_auth_failure(token_reg: Registry, archives: dict[str, Archive],
                                                      log: BuildLog, tmp_path: Path) -> None:
    old, new = archives["old"], archives["new"]
    writer = write_authfile(tmp_path / "writer.json", token_reg.host, "writer", PASSWORD)
    reader = write_authfile(tmp_path / "reader.json", token_reg.host, "reader", PASSWORD)
    reference = f"{token_reg.host}/team/app:9"
    seed(token_reg, old, [reference], writer)
    assert token_reg.digest(reference, reader) == old.digest, "the reader may pull"

    with pytest.raises(PushError) as caught:
        publish.push(new.path, new.digest, [reference], options_for(token_reg, reader), log)

    assert_one_line(caught.value, "auth")
    assert f"may not push to {token_reg.host}/team/app" in caught.value.message
    assert "requested access to the resource is denied" in caught.value.message
    assert caught.value.details == ["no tag was changed"]
    assert token_reg.digest(reference, writer) == old.digest


@pytest.mark.integration
def test_a_failure_after_a_tag_moved_puts_it_back(token_reg: Registry, token_server: TokenServer,
                                                  archives: dict[str, Archive], log: BuildLog,
                                                  tmp_path: Path) -> None:
    """Push rights on the second repository are revoked after the first tag moved (a real 'denied' from the
    registry, mid-push): the first tag must go back to the old image."""
    old, new = archives["old"], archives["new"]
    writer = write_authfile(tmp_path / "writer.json", token_reg.host, "writer", PASSWORD)
    first, second = f"{token_reg.host}/team/app:mid", f"{token_reg.host}/team/other:mid"
    seed(token_reg, old, [first, second], writer)
    policy = token_server.policy["writer"]

    def revoke_before_second_tag(step: str) -> None:
        if step == f"tagging {second}":
            policy["team/other"] = {"pull"}

    try:
        with pytest.raises(PushError) as caught:
            publish.push(new.path, new.digest, [first, second], options_for(token_reg, writer), log,
                         revoke_before_second_tag)
    finally:
        policy["team/other"] = {"pull", "push"}

    assert_one_line(caught.value, "auth")
    assert caught.value.details == [f"{first} was put back to {old.digest}"]
    assert token_reg.digest(first, writer) == old.digest
    assert token_reg.digest(second, writer) == old.digest
