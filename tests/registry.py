"""A real registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1, over TLS from a CA made
here with openssl, with either htpasswd (bcrypt) auth or token auth from a tiny token server in this module.

Token auth is how "a user who may pull but not push" is made for real: htpasswd lets every user write every
repository, while distribution's token auth grants exactly the actions in the JWT the token server signs.
The token server signs RS256 JWTs with `openssl dgst` (no Python crypto dependency) and names its key by
libtrust's key ID, which is what distribution looks up in its `rootcertbundle`.

Also here: `make_oci_archive`, a real oci-archive with gzip layers (busybox-static tree -> `docker import` ->
`skopeo copy docker-daemon: oci-archive:`), and its manifest digest read from index.json.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

REGISTRY_BIN = "docker-registry"
DOCKER_CERTS = Path("/etc/docker/certs.d")
BUSYBOX = Path("/bin/busybox")
TEST_IMAGE_PREFIX = "mkimage-h-push-test"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")  # fast to make, unlike RSA


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


@dataclass(frozen=True)
class Ca:
    """A CA and one server certificate it signed for IP:127.0.0.1."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def cert_dir(self) -> Path:
        """A directory as skopeo's --cert-dir wants it (only the CA: *.crt)."""
        return self.directory / "trust"


def make_ca(directory: Path, name: str = "mkimage test CA") -> Ca:
    directory.mkdir(parents=True, exist_ok=True)
    ca = Ca(directory)
    key = directory / "ca.key"
    _openssl("req", "-x509", *EC_KEY, "-nodes", "-keyout", str(key), "-out", str(ca.cert),
             "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr = directory / "server.csr"
    _openssl("req", *EC_KEY, "-nodes", "-keyout", str(ca.server_key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(key), "-CAcreateserial",
             "-out", str(ca.server_cert), "-days", "2", "-extfile", str(ext))
    ca.cert_dir.mkdir()
    shutil.copy(ca.cert, ca.cert_dir / "ca.crt")
    return ca


def write_authfile(path: Path, host: str, user: str, password: str) -> Path:
    """A containers auth.json holding one login, as `skopeo login` writes it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
    return path


# --- token auth -------------------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(spki_der: bytes) -> str:
    """libtrust's KeyID: base32 of the first 240 bits of sha256(SPKI DER), in 12 groups of 4 joined by ':'."""
    encoded = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenIssuer:
    """Signs distribution's bearer tokens (RS256 JWTs) with a key whose certificate the registry trusts."""

    directory: Path
    service: str = "mkimage-test-registry"
    issuer: str = "mkimage-test-token-server"

    def __post_init__(self) -> None:
        self.key = self.directory / "token.key"
        self.cert = self.directory / "token.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out",
                 str(self.cert), "-days", "2", "-subj", "/CN=mkimage test token signer")
        spki = _openssl("pkey", "-in", str(self.key), "-pubout", "-outform", "DER")
        self.key_id = libtrust_key_id(spki)

    def token(self, subject: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _openssl("dgst", "-sha256", "-sign", str(self.key), input=signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"


def granted_access(scopes: list[str], allowed: Mapping[str, set[str]]) -> list[dict]:
    """What a token grants: for each requested 'repository:NAME:ACTIONS' scope, the actions the policy allows."""
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository":
            continue
        granted = [action for action in actions.split(",") if action in allowed.get(name, set())]
        if granted:
            access.append({"type": "repository", "name": name, "actions": granted})
    return access


@dataclass
class TokenServer:
    """HTTPS token endpoint: basic auth against `users`, grants per `policy[user][repository] = {actions}`."""

    issuer: TokenIssuer
    ca: Ca
    users: dict[str, str]
    policy: dict[str, dict[str, set[str]]]
    port: int = field(default_factory=free_port)

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = server.authenticate(self.headers.get("Authorization"))
                if user is False:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"wrong user name or password"}]}')
                    return
                allowed = server.policy.get(user, {}) if user else {}
                token = server.issuer.token(user or "", granted_access(query.get("scope", []), allowed))
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca.server_cert, self.ca.server_key)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def authenticate(self, header: str | None) -> str | None | bool:
        """The user name; None for an anonymous request; False for wrong credentials."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(value).decode(errors="replace").partition(":")
        known = self.users.get(user)
        return user if known is not None and secrets.compare_digest(known, password) else False

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --- the registry -----------------------------------------------------------------------------------------------

@dataclass
class Registry:
    """One docker-registry process; `stop()`/`start()` keep its storage, as a restarted registry does."""

    directory: Path
    ca: Ca
    auth: dict
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def config(self) -> dict:
        return {
            "version": 0.1,
            "log": {"level": "info", "fields": {"service": "registry"}},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "mkimage-test",
                     "tls": {"certificate": str(self.ca.server_cert), "key": str(self.ca.server_key)}},
            "auth": self.auth,
        }

    def start(self) -> None:
        config = self.directory / "config.yml"
        config.write_text(json.dumps(self.config()))  # JSON is YAML
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self._proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    with context.wrap_socket(sock, server_hostname="127.0.0.1"):
                        return
            except (OSError, ssl.SSLError):
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.host}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None

    def skopeo_args(self, authfile: Path | None, prefix: str = "") -> list[str]:
        """Trust and login options for skopeo; prefix 'src-' for a `skopeo copy` from this registry."""
        return [f"--{prefix}cert-dir={self.ca.cert_dir}", *([f"--{prefix}authfile={authfile}"] if authfile else [])]

    def digest(self, reference: str, authfile: Path | None) -> str | None:
        """The manifest digest REFERENCE points to now, or None when it does not exist."""
        proc = subprocess.run(["skopeo", "inspect", "--raw", *self.skopeo_args(authfile), f"docker://{reference}"],
                              capture_output=True)
        if proc.returncode != 0:
            if b"manifest unknown" in proc.stderr:
                return None
            raise RuntimeError(proc.stderr.decode(errors="replace"))
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()

    def copy_in(self, archive: Path, reference: str, authfile: Path) -> None:
        """Put an image in the registry without mkimage (the 'old' image a failed push must leave alone)."""
        subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", f"--dest-cert-dir={self.ca.cert_dir}",
                        f"--dest-authfile={authfile}", f"oci-archive:{archive}", f"docker://{reference}"],
                       check=True, capture_output=True)


def htpasswd_file(path: Path, users: Mapping[str, str]) -> Path:
    """bcrypt entries (htpasswd -B), passwords on stdin, never on a command line."""
    for index, (user, password) in enumerate(users.items()):
        args = ["htpasswd", "-B", "-i", *(["-c"] if index == 0 else []), str(path), user]
        subprocess.run(args, input=password.encode(), check=True, capture_output=True)
    return path


def htpasswd_registry(directory: Path, ca: Ca, users: Mapping[str, str]) -> Registry:
    directory.mkdir(parents=True, exist_ok=True)
    passwords = htpasswd_file(directory / "htpasswd", users)
    return Registry(directory, ca, {"htpasswd": {"realm": "mkimage-test", "path": str(passwords)}})


def token_registry(directory: Path, ca: Ca, server: TokenServer) -> Registry:
    directory.mkdir(parents=True, exist_ok=True)
    issuer = server.issuer
    return Registry(directory, ca, {"token": {"realm": server.realm, "service": issuer.service,
                                              "issuer": issuer.issuer, "rootcertbundle": str(issuer.cert)}})


@contextlib.contextmanager
def docker_trusts(registry: Registry) -> Iterator[Path]:
    """/etc/docker/certs.d/HOST:PORT/ca.crt for the daemon while the test runs; removed afterwards."""
    target = DOCKER_CERTS / registry.host
    target.mkdir(parents=True, exist_ok=False)
    try:
        shutil.copy(registry.ca.cert, target / "ca.crt")
        yield target
    finally:
        (target / "ca.crt").unlink(missing_ok=True)
        target.rmdir()
        if DOCKER_CERTS.exists() and not any(DOCKER_CERTS.iterdir()):
            DOCKER_CERTS.rmdir()


@contextlib.contextmanager
def serving(registry: Registry) -> Iterator[Registry]:
    """The registry running, and trusted by the docker daemon, for as long as the block runs."""
    registry.start()
    try:
        with docker_trusts(registry):
            yield registry
    finally:
        registry.stop()


# --- a real oci-archive ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Archive:
    path: Path
    digest: str
    marker: str


def manifest_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    (manifest,) = index["manifests"]
    return manifest["digest"]


def make_oci_archive(directory: Path, marker: str, labels: Mapping[str, str] | None = None,
                     filler_bytes: int = 0) -> Archive:
    """A busybox image whose /marker holds MARKER, as an oci-archive with gzip layers."""
    tree = directory / f"tree-{marker}"
    (tree / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "bin" / "busybox")
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "marker").write_text(marker + "\n")
    if filler_bytes:
        with open(tree / "filler", "wb") as filler:
            for _ in range(filler_bytes // (1 << 20)):
                filler.write(os.urandom(1 << 20))
    image = f"{TEST_IMAGE_PREFIX}-{os.getpid()}:{marker}"
    changes = ['CMD ["/bin/sh"]', *[f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in (labels or {}).items()]]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    argv = ["docker", "import", *[arg for change in changes for arg in ("--change", change)], "-", image]
    subprocess.run(argv, stdin=tar.stdout, check=True, capture_output=True)
    assert tar.wait() == 0
    shutil.rmtree(tree)
    archive = directory / f"{marker}.oci.tar"
    try:
        subprocess.run(["skopeo", "copy", "--quiet", f"docker-daemon:{image}", f"oci-archive:{archive}"],
                       check=True, capture_output=True)
    finally:
        subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True)
    return Archive(archive, manifest_digest(archive), marker)
