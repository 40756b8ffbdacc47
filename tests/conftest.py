"""Fixtures: a real local RPM repository, the real docker daemon, and checks that builds leave nothing behind.

In CI (CI=true) a missing tool or daemon fails the run; elsewhere the integration tests are skipped with the reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE_REPO = ROOT / "scripts" / "make-test-repo.py"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
INTEGRATION_TOOLS = ("dnf", "rpm", "rpmbuild", "createrepo_c", "docker", "tar", "chroot")
DEMO_VERSION = "1.4.2"
CORE_MANDATORY = ("filesystem", "setup", "glibc", "bash", "busybox", "demo-release", "demo-docs", "demo-post",
                  "demo-setuid")


def require(condition: bool, reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def as_root() -> None:
    require(os.geteuid() == 0, "needs root (device nodes, mounts, builds)")


@pytest.fixture(scope="session")
def tools() -> None:
    missing = [tool for tool in INTEGRATION_TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing tools: {', '.join(missing)}")
    require(os.geteuid() == 0, "integration tests build images and must run as root")


@pytest.fixture(scope="session")
def docker_daemon(tools: None) -> None:
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    require(result.returncode == 0, f"no docker daemon: {result.stderr.strip()}")


# podman as the tests run it, set here for the whole session (every podman, skopeo and mkimage the tests start
# inherits it) and never in mkimage's defaults. This VM's work-arounds: no CAP_SYS_RESOURCE and mixed cgroups
# break crun, so runc and lower ulimits. And a storage of the session's own in its temp dir with the vfs
# driver, which works on any filesystem: also inside a container (scripts/fresh-machine), where overlay
# storage on the container's own overlayfs cannot be mounted. The test images are small, so vfs's copies
# cost little, and nothing is left in the host's /var/lib/containers.
PODMAN_CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
PODMAN_STORAGE_CONF = """[storage]
driver = "vfs"
graphroot = "{root}/graph"
runroot = "{root}/run"
"""


@pytest.fixture(scope="session", autouse=True)
def podman_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """CONTAINERS_CONF and CONTAINERS_STORAGE_CONF for this session, in os.environ while it runs."""
    root = tmp_path_factory.mktemp("podman")
    (root / "containers.conf").write_text(PODMAN_CONTAINERS_CONF)
    (root / "storage.conf").write_text(PODMAN_STORAGE_CONF.format(root=root))
    settings = {"CONTAINERS_CONF": str(root / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(root / "storage.conf")}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield settings
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)  # the session's images: vfs copies of every layer


@dataclass(frozen=True)
class Repo:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "yum.conf"


@pytest.fixture(scope="session")
def repo(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """The small local test repository, built once per session with rpmbuild + createrepo_c."""
    out = tmp_path_factory.mktemp("repo")
    subprocess.run([sys.executable, str(MAKE_REPO), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return Repo(out)


FOREIGN_ARCH = "aarch64" if os.uname().machine != "aarch64" else "x86_64"
"""The other architecture the tests build for (qemu-user through binfmt_misc)."""


@pytest.fixture(scope="session")
def foreign_arch(tools: None) -> str:
    """An architecture this host runs only under qemu-user, registered with binfmt F (scripts/lib.sh sets it up)."""
    from mkimage.arch import KNOWN, binfmt_problem
    problem = binfmt_problem(KNOWN[FOREIGN_ARCH])
    require(problem is None, problem or "")
    return FOREIGN_ARCH


@pytest.fixture(scope="session")
def multiarch_repo(foreign_arch: str, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """The test repository for this host's architecture and the foreign one: OUT/repo-ARCH/, baseurl with
    $basearch (the foreign packages from Debian's, as scripts/make-test-repo.py says)."""
    out = tmp_path_factory.mktemp("multiarch-repo")
    arches = f"{os.uname().machine},{foreign_arch}"
    subprocess.run([sys.executable, str(MAKE_REPO), "--out", str(out), "--arch", arches], check=True,
                   stdout=subprocess.DEVNULL)
    return Repo(out)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        errors = [line for line in self.stderr.splitlines() if line.startswith("Error:")]
        return errors[0] if errors else ""


def mkimage(*args: str, timeout: float = 600, env: dict | None = None, wrapper: Sequence[str] = ()) -> Run:
    """The real CLI in a child process (no TTY), as a pipeline runs it; wrapper: argv it runs under
    (tests/hostview.py, say)."""
    proc = subprocess.run([*wrapper, sys.executable, "-m", "mkimage", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Builder:
    """Builds images from the test repository into a private tmpdir; afterwards removes every image its
    builds made (found by their mkimage.build-id label, so that images a rebuild untagged go too)."""

    repo: Repo
    tmpdir: Path
    reports: Path
    created: list[str] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)

    def __call__(self, *args: str, name: str | None = None, timeout: float = 600, config: Path | None = None,
                 env: dict | None = None, wrapper: Sequence[str] = ()) -> Run:
        argv = ["-y", str(config or self.repo.config), "--tmpdir", str(self.tmpdir), *args]
        if "--report" in args:
            self.report_paths.append(Path(args[args.index("--report") + 1]))
        else:
            self.report_paths.append(self.reports / f"{len(self.report_paths)}.json")
            argv += ["--report", str(self.report_paths[-1])]
        if name is not None:
            argv.append(name)
            self.created.append(name)
        return mkimage(*argv, timeout=timeout, env={**os.environ, **env} if env else None, wrapper=wrapper)

    def remove_images(self) -> None:
        for name in self.created:
            remove_image_refs(name)
        reports = [json.loads(path.read_text()) for path in self.report_paths if path.exists()]
        build_ids = [report.get("build_id") for report in reports]
        build_ids += [each.get("build_id") for report in reports for each in (report.get("architectures") or {}).values()]
        remove_images_of_builds(build_ids)

    def leftovers(self) -> list[str]:
        """What a build left in its tmpdir other than kept logs and reports."""
        return sorted(p.name for p in self.tmpdir.iterdir() if not p.name.endswith((".log", ".json")))


@pytest.fixture
def build(repo: Repo, docker_daemon: None, tmp_path: Path) -> Iterator[Builder]:
    tmpdir, reports = tmp_path / "tmp", tmp_path / "reports"
    tmpdir.mkdir()
    reports.mkdir()
    builder = Builder(repo, tmpdir, reports)
    yield builder
    builder.remove_images()


def remove_images_of_builds(build_ids: Sequence[str | None]) -> None:
    for build_id in filter(None, build_ids):
        ids = docker_out("image", "ls", "-q", "--filter", f"label=mkimage.build-id={build_id}").split()
        if ids:
            subprocess.run(["docker", "image", "rm", "--force", *set(ids)], capture_output=True)


def repository_of(name: str) -> str:
    """NAME[:TAG] -> NAME, where NAME may hold a registry's port (127.0.0.1:5000/base:9 -> 127.0.0.1:5000/base)."""
    repository, _, tag = name.rpartition(":")
    return repository if repository and "/" not in tag else name


def remove_image_refs(name: str) -> None:
    refs = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository_of(name)],
                          capture_output=True, text=True).stdout.split()
    if refs:
        subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True)


def docker_out(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def image_id(reference: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_config(reference: str) -> dict:
    return json.loads(docker_out("image", "inspect", reference))[0]["Config"]


def run_in_image(reference: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", reference, *command],
                          capture_output=True, text=True, timeout=120)


def image_rpm_qa(reference: str, scratch: Path, dbpath: str = "/var/lib/rpm") -> list[str]:
    """The packages the image's rpm database at dbpath lists (NAME-VERSION-RELEASE.ARCH, sorted), read with this
    host's rpm from a copy taken out of the image: the image needs no rpm of its own."""
    container = docker_out("create", reference).strip()
    try:
        subprocess.run(["docker", "cp", f"{container}:{dbpath}", str(scratch)], check=True, capture_output=True)
    finally:
        docker_out("rm", container)
    query = ["rpm", "--dbpath", str(scratch), "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"]
    listed = subprocess.run(query, check=True, capture_output=True, text=True)
    return sorted(listed.stdout.split())


@dataclass
class Layer:
    """The single layer of an imported image, as docker save gives it."""

    members: dict[str, tarfile.TarInfo]
    data: dict[str, bytes]

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self.members

    def __getitem__(self, path: str) -> tarfile.TarInfo:
        return self.members[_norm(path)]

    def text(self, path: str) -> str:
        return self.data[_norm(path)].decode()

    def under(self, directory: str) -> list[str]:
        prefix = _norm(directory) + "/"
        return sorted(name for name in self.members if name.startswith(prefix))


def _norm(path: str) -> str:
    """'./usr/bin/', '/usr/bin' -> 'usr/bin'; the layer's root '.' -> ''."""
    name = path.strip("/").removeprefix("./")
    return "" if name == "." else name


def image_layer_bytes(reference: str) -> bytes:
    """The single layer of an image, uncompressed, as `docker save` gives it."""
    saved = subprocess.run(["docker", "save", reference], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers = manifest[0]["Layers"]
        assert len(layers) == 1, "an imported image has exactly one layer"
        return archive.extractfile(layers[0]).read()  # type: ignore[union-attr]


def image_layer(reference: str, read: Sequence[str] = ()) -> Layer:
    layer_bytes = image_layer_bytes(reference)
    members: dict[str, tarfile.TarInfo] = {}
    data: dict[str, bytes] = {}
    wanted = {_norm(p) for p in read}
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer:
        for member in layer.getmembers():
            name = _norm(member.name)
            members[name] = member
            if name in wanted and member.isfile():
                data[name] = layer.extractfile(member).read()  # type: ignore[union-attr]
    return Layer(members, data)


def labelled_images() -> list[str]:
    """Images mkimage imported but did not finish (every mkimage image carries mkimage.build-id)."""
    out = docker_out("image", "ls", "--quiet", "--filter", "label=mkimage.build-id", "--filter", "dangling=true")
    return out.split()


def smoke_containers(build_id: str = "", command: str = "") -> list[str]:
    """Smoke containers of one build (other builds may share this daemon), or of any build; with command, only
    those running it."""
    listed = docker_out("ps", "--all", "--no-trunc", "--format", "{{.ID}}\t{{.Command}}", "--filter",
                        f"name=mkimage-smoke-{build_id}")
    return [line.split("\t")[0] for line in listed.splitlines() if command in line.partition("\t")[2]]


def host_mounts_mentioning(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]
