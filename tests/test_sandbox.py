"""The bubblewrap sandbox: argv tables (dnf and yum 3), the environment allow-list, and real attacks.

The attacks are the demo-hostile package of the test repository (scripts/demo-hostile.c, static): its %post, and
the same program as a profile chroot command, escape the chroot and go for the host: marker files in /tmp, /etc,
/root and the caller's working directory, /etc/shadow and the caller's planted credentials (environment and
home) copied into the image, SIGKILL to a process of the test's, a device node for the host's disk, and a TCP
connection to a listener of the test's on 127.0.0.1.  A control build with --no-sandbox shows the same attacks
succeeding, so the sandboxed build's checks can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, Builder, require

from mkimage import sandbox
from mkimage.installer import InstallRequest, PackageManager
from mkimage.installer.dnf import Dnf
from mkimage.installer.yum import Yum
from mkimage.profile import ProfileProblems, resolve

WORKDIR = Path("/var/tmp/mkimage-abc123")
ROOTFS = WORKDIR / "rootfs"
LINKS = {"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/sbin"}
NEVER_GRANTED = ("CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
                 "CAP_SYS_RAWIO", "CAP_SETPCAP", "CAP_NET_ADMIN", "CAP_NET_RAW")


def request(root: Path = ROOTFS) -> InstallRequest:
    return InstallRequest(config=Path("/srv/repo/yum.conf"), root=root, releasever="/", groups=("Core",),
                          packages=("vim-minimal",))


def pm_argv(argv: list[str], read_only: tuple[str, ...] = ("/srv/repo/yum.conf",)) -> list[str]:
    return sandbox.package_manager_argv(argv, workdir=WORKDIR, rootfs=ROOTFS, read_only=read_only,
                                        top_level_links=LINKS)


def pairs(argv: list[str], option: str) -> list[str]:
    """The values given to an option (its first argument), in order."""
    return [argv[index + 1] for index, arg in enumerate(argv[:argv.index("--")]) if arg == option]


def sandbox_prefix(argv: list[str]) -> list[str]:
    return argv[:argv.index("--")]


# ----------------------------------------------------------------------------------------------- argv
@pytest.mark.parametrize("manager", [Dnf("/usr/bin/dnf"), Yum("/usr/bin/yum")], ids=["dnf", "yum3"])
def test_package_manager_runs_whole_in_the_sandbox(manager: PackageManager) -> None:
    """dnf and yum 3 (EL7, checked by argv where it can't run) get the same wrapper; their own argv is intact."""
    inner = manager.install_argv(request())
    argv = pm_argv(inner)
    assert argv[0] == "bwrap" and argv[argv.index("--") + 1:] == inner
    prefix = sandbox_prefix(argv)
    for flag in ("--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in prefix
    assert "--unshare-net" not in prefix, "dnf keeps the network it downloads with"
    assert "--unshare-user" not in prefix, "rpm must chown files to any uid for real"
    assert pairs(argv, "--proc") == ["/proc"]
    assert pairs(argv, "--dev") == ["/dev", str(ROOTFS / "dev")]
    assert pairs(argv, "--tmpfs")[:1] == ["/tmp"]
    assert pairs(argv, "--bind") == [str(WORKDIR)], "the work dir is the only writable place"
    assert "--remount-ro" in prefix and pairs(argv, "--remount-ro") == ["/"]
    assert pairs(argv, "--chdir") == ["/"], "never the caller's working directory"


def test_only_what_the_package_manager_reads_is_visible() -> None:
    argv = pm_argv(["dnf"])
    visible = pairs(argv, "--ro-bind") + pairs(argv, "--ro-bind-try") + pairs(argv, "--bind")
    assert "/usr" in visible and "/srv/repo/yum.conf" in visible
    for path in ("/etc/resolv.conf", "/etc/hosts", "/etc/pki/rpm-gpg", "/etc/ssl/certs", "/etc/yum", "/etc/dnf"):
        assert path in visible
    for hidden in ("/", "/etc", "/etc/shadow", "/etc/gshadow", "/root", "/home", "/etc/ssl/private",
                   "/etc/pki/tls/private", "/var/run/docker.sock", str(Path.cwd())):
        assert hidden not in visible, hidden
    assert all(not path.startswith("/etc/") or path not in ("/etc/shadow",) for path in visible)
    assert pairs(argv, "--symlink") == ["usr/bin", "usr/lib", "usr/lib64", "usr/sbin"]


def test_a_bind_under_tmp_comes_after_the_private_tmp() -> None:
    """A file:// repository in /tmp stays visible: parents are mounted before children, /tmp first."""
    argv = pm_argv(["dnf"], read_only=("/tmp/repo/repo", "/tmp/repo/yum.conf", "/"))
    assert argv.index("/tmp") < argv.index("/tmp/repo/repo")
    assert "/" not in pairs(argv, "--ro-bind-try"), "a repo at file:/// never exposes the whole host"


def test_capabilities_are_what_rpm_needs() -> None:
    prefix = sandbox_prefix(pm_argv(["dnf"]))
    assert pairs(prefix + ["--"], "--cap-drop") == ["ALL"]
    granted = pairs(prefix + ["--"], "--cap-add")
    for needed in ("CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE", "CAP_SYS_CHROOT", "CAP_SETFCAP"):
        assert needed in granted
    assert not set(granted) & set(NEVER_GRANTED)


@pytest.mark.parametrize("network", [False, True])
def test_chroot_command_has_the_rootfs_as_root(network: bool) -> None:
    argv = sandbox.chroot_argv(("/usr/sbin/useradd", "app"), root=ROOTFS, network=network)
    prefix = sandbox_prefix(argv)
    assert argv[argv.index("--") + 1:] == ["/usr/sbin/useradd", "app"]
    assert prefix[prefix.index("--bind") + 1:prefix.index("--bind") + 3] == [str(ROOTFS), "/"]
    assert ("--unshare-net" in prefix) is (not network)
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"):
        assert flag in prefix
    assert pairs(argv, "--proc") == ["/proc"] and pairs(argv, "--dev") == ["/dev"]
    assert not set(pairs(argv, "--cap-add")) & set(NEVER_GRANTED)


def test_environment_is_an_allow_list() -> None:
    caller = {
        "PATH": "/usr/bin", "LANG": "C", "LC_ALL": "C", "TERM": "xterm", "https_proxy": "http://proxy:3128",
        "NO_PROXY": "localhost", "SOURCE_DATE_EPOCH": "1700000000", "HOME": "/x/home", "TMPDIR": "/x/tmp",
        "MKIMAGE_TMPFS_SIZE": "1G",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t", "REGISTRY_PASSWORD": "pw", "DOCKER_CONFIG": "/root/.docker",
        "DOCKER_HOST": "tcp://x", "SSH_AUTH_SOCK": "/tmp/agent", "GITHUB_TOKEN": "t", "LD_PRELOAD": "/x.so",
    }
    kept = sandbox.sandbox_env(caller)
    assert set(kept) == {"PATH", "LANG", "LC_ALL", "TERM", "https_proxy", "NO_PROXY", "SOURCE_DATE_EPOCH", "HOME",
                         "TMPDIR", "MKIMAGE_TMPFS_SIZE"}


def test_environment_values_never_reach_argv() -> None:
    """A proxy URL may hold a password: the environment is bwrap's own, not --setenv in argv (which is logged)."""
    assert "--setenv" not in pm_argv(["dnf"]) and "--clearenv" not in pm_argv(["dnf"])


def test_a_path_elsewhere_is_mounted_read_only_at_its_place() -> None:
    argv = sandbox.package_manager_argv(["dnf"], workdir=WORKDIR, rootfs=ROOTFS, read_only=(),
                                        top_level_links={}, mounted_at={"/.mkimage-rpmdb": "/w/host-rpmdb"})
    assert "/w/host-rpmdb" in pairs(argv, "--ro-bind")
    position = argv.index("/w/host-rpmdb")
    assert argv[position - 1:position + 2] == ["--ro-bind", "/w/host-rpmdb", "/.mkimage-rpmdb"]


def test_the_read_only_sandbox_writes_nothing(tmp_path: Path) -> None:
    """What asks the package manager about its config: the host read-only, no network."""
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    argv = sandbox.read_only_argv(["/bin/sh", "-c", f"touch {tmp_path}/x || echo refused"])
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.stdout.strip() == "refused" and not (tmp_path / "x").exists()
    assert "--unshare-net" in argv and pairs(argv, "--ro-bind") == ["/"]


def test_top_level_links_follow_the_host(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "lib64").mkdir()
    assert sandbox.host_top_level_links(tmp_path) == {"/bin": "usr/bin"}
    argv = sandbox.package_manager_argv(["dnf"], workdir=WORKDIR, rootfs=ROOTFS, read_only=(),
                                        top_level_links={"/bin": "usr/bin"})
    assert "/lib64" in pairs(argv, "--ro-bind-try") and "/bin" not in pairs(argv, "--ro-bind-try")


def test_profile_chroot_network_is_a_checked_boolean(tmp_path: Path) -> None:
    good = tmp_path / "net.toml"
    good.write_text('[chroot]\nnetwork = true\ncommands = [["/bin/true"]]\n')
    assert resolve([str(good)])[0].chroot_network is True
    assert resolve([])[0].chroot_network is False
    bad = tmp_path / "bad.toml"
    bad.write_text('[chroot]\nnetwork = "yes"\n')
    with pytest.raises(ProfileProblems) as problems:
        resolve([str(bad)])
    assert problems.value.problems == [f"{bad}: chroot.network: expected true or false, got a string"]


# ------------------------------------------------------------------------------------------- preflight
def test_preflight_stops_without_bwrap(tmp_path: Path, repo, as_root: None) -> None:
    """No bwrap on PATH: exit 2 before any work, saying how to fix it, unless --no-sandbox."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dnf", "rpm", "tar", "docker"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(bin_dir)}
    proc = subprocess.run([sys.executable, "-m", "mkimage", "-y", str(repo.config), "--rootfs-only",
                           "--tmpdir", str(tmp_path), "mkimage-test/nobwrap"], capture_output=True, text=True,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "bwrap (bubblewrap) not found on PATH" in proc.stderr and "--no-sandbox" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"], "nothing created"


def test_preflight_stops_where_bwrap_cannot_make_namespaces(tmp_path: Path, repo, as_root: None) -> None:
    """A container that refuses namespaces can't be made here for real: a bwrap that fails as it would there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "mkimage", "-y", str(repo.config), "--rootfs-only",
                           "--tmpdir", str(tmp_path), "mkimage-test/nons"], capture_output=True, text=True,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert ("bwrap cannot make its sandbox here (exit 1: bwrap: No permissions to create new namespace)"
            in proc.stderr), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"], "nothing created"


# -------------------------------------------------------------------------------------- real attacks
MARKER = "mkimage-hostile-marker"
HOST_MARKER_DIRS = (Path("/tmp"), Path("/etc"), Path("/root"))
SECRET = "mkimage-hostile-env-secret-1f3a"
CREDENTIAL = "mkimage-hostile-home-credential-9c2e"
ALWAYS_BLOCKED = ("marker-caller-cwd", "read-caller-environment", "read-caller-home", "signal-host-process",
                  "host-disk")


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    sock: socket.socket
    connections: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.connections.append(conn.recv(64))
                except OSError:
                    self.connections.append(b"")


@dataclass
class Host:
    """What the attacks go for: the caller's cwd and home, its secret, a victim process and a listener."""

    cwd: Path
    home: Path
    victim: subprocess.Popen
    listener: Listener

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "MKIMAGE_HOSTILE_SECRET": SECRET}

    def markers(self) -> list[Path]:
        return [d / MARKER for d in (*HOST_MARKER_DIRS, self.cwd) if (d / MARKER).exists()]


def remove_markers(cwd: Path) -> None:
    for directory in (*HOST_MARKER_DIRS, cwd):
        (directory / MARKER).unlink(missing_ok=True)


@pytest.fixture
def host(tmp_path: Path, as_root: None) -> Iterator[Host]:
    require(shutil.which("bwrap") is not None, "bwrap (bubblewrap) is needed for the sandbox")
    cwd, home, bin_dir = tmp_path / "cwd", tmp_path / "home", tmp_path / "bin"
    for directory in (cwd, home, bin_dir):
        directory.mkdir()
    (cwd / "mkimage-hostile-cwd-here").touch()
    (home / ".mkimage-hostile-credentials").write_text(f"registry-token={CREDENTIAL}\n")
    shutil.copy(shutil.which("sleep"), bin_dir / "mkimage-victim")
    remove_markers(cwd)
    victim = subprocess.Popen([str(bin_dir / "mkimage-victim"), "600"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    listener = Listener(sock)
    threading.Thread(target=listener.serve, daemon=True).start()
    try:
        yield Host(cwd, home, victim, listener)
    finally:
        sock.close()
        victim.kill()
        victim.wait()
        remove_markers(cwd)


def hostile_profile(tmp_path: Path, port: int, network: bool = False) -> Path:
    profile = tmp_path / f"hostile-{network}.toml"
    profile.write_text(f'[chroot]\nnetwork = {str(network).lower()}\n'
                       f'commands = [["/usr/bin/demo-hostile", "command", "{port}"]]\n')
    return profile


def attack_build(build: Builder, host: Host, tmp_path: Path, *extra: str, network: bool = False):
    """A --rootfs-only build with demo-hostile's %post and chroot command; (run, report, rootfs)."""
    report_path = tmp_path / f"report-{len(build.report_paths)}.json"
    argv = [sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir", str(build.tmpdir),
            "--rootfs-only", "-p", "demo-hostile", "--profile", str(hostile_profile(tmp_path, host.listener.port,
                                                                                   network)),
            "--report", str(report_path), *extra, "mkimage-test/hostile"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=host.env(), cwd=host.cwd, timeout=300,
                          stdin=subprocess.DEVNULL)
    report = json.loads(report_path.read_text())
    rootfs = Path(report["rootfs"]) if proc.returncode == 0 else None
    return proc, report, rootfs


def attack_lines(rootfs: Path, mode: str) -> dict[str, str]:
    lines = (rootfs / f"var/lib/demo-hostile/{mode}.txt").read_text().splitlines()
    assert lines[-1] == "done", lines
    return {line.split(":")[0].removeprefix("attack "): line.split(": ", 1)[1]
            for line in lines if line.startswith("attack ")}


def host_secrets() -> list[bytes]:
    shadow = Path("/etc/shadow").read_bytes()
    return [SECRET.encode(), CREDENTIAL.encode(), shadow.splitlines()[0]]


def loot(rootfs: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (rootfs / "var/lib/demo-hostile").iterdir() if path.is_file()}


@pytest.mark.integration
@pytest.mark.parametrize("network", [False, True], ids=["no-network", "network-true"])
def test_hostile_package_and_command_are_contained(build: Builder, host: Host, tmp_path: Path, network) -> None:
    proc, report, rootfs = attack_build(build, host, tmp_path, network=network)
    try:
        assert proc.returncode == 0, proc.stderr  # the %post exits 0: the build's outcome is the scriptlet's
        assert report["sandboxed"] is True and "--no-sandbox" not in proc.stderr
        post, command = attack_lines(rootfs, "post"), attack_lines(rootfs, "command")
        for attack in ALWAYS_BLOCKED:
            assert post[attack].startswith("blocked"), (attack, post[attack])
            assert command[attack].startswith("blocked"), (attack, command[attack])
        for attack in ("marker-host-etc", "marker-host-root", "read-shadow"):
            assert post[attack].startswith("blocked"), (attack, post[attack])
        assert host.markers() == [], "no marker on the host"
        assert host.victim.poll() is None, "the host process lives"
        for name, data in loot(rootfs).items():
            for secret in host_secrets():
                assert secret not in data, f"{name} holds a host secret"
        if network:  # [chroot] network = true: the command shares the host's network, as asked
            assert command["connect-host-listener"].startswith("SUCCEEDED")
            assert len(host.listener.connections) == 1
        else:
            assert command["connect-host-listener"].startswith("blocked")
            assert host.listener.connections == []
    finally:
        if rootfs is not None:
            shutil.rmtree(rootfs.parent)


@pytest.mark.integration
def test_without_the_sandbox_the_same_attacks_succeed(build: Builder, host: Host, tmp_path: Path) -> None:
    """The control: proves the checks above can fail.  --no-sandbox is warned and recorded in the report."""
    proc, report, rootfs = attack_build(build, host, tmp_path, "--no-sandbox")
    try:
        assert proc.returncode == 0, proc.stderr
        assert "warning: --no-sandbox: package scriptlets and profile chroot commands run as root" in proc.stderr
        assert report["sandboxed"] is False and any("--no-sandbox" in w for w in report["warnings"])
        post, command = attack_lines(rootfs, "post"), attack_lines(rootfs, "command")
        for attack in ("marker-host-etc", "marker-host-root", "marker-caller-cwd", "read-shadow",
                       "read-caller-environment", "read-caller-home", "signal-host-process"):
            assert post[attack].startswith("SUCCEEDED"), (attack, post[attack])
        assert sorted(host.markers()) == sorted([*(d / MARKER for d in HOST_MARKER_DIRS), host.cwd / MARKER])
        assert host.victim.wait(timeout=10) is not None
        stolen = b"".join(loot(rootfs).values())
        assert all(secret in stolen for secret in host_secrets())
        assert command["connect-host-listener"].startswith("SUCCEEDED")
    finally:
        if rootfs is not None:
            shutil.rmtree(rootfs.parent)


def test_the_probe_does_not_bind_the_whole_root() -> None:
    """A bind of / races with mounts that come and go (a docker daemon's overlays); the probe needs none of it."""
    argv = sandbox.probe_argv({"/bin": "usr/bin"})
    assert "/" not in pairs(argv, "--ro-bind") and pairs(argv, "--ro-bind") == ["/usr"]
    assert argv[argv.index("--symlink") + 1:argv.index("--symlink") + 3] == ["usr/bin", "/bin"]
    assert subprocess.run(sandbox.probe_argv(sandbox.host_top_level_links())).returncode == 0


def test_a_failure_of_bwrap_itself_is_told_from_the_programs() -> None:
    remount = "bwrap: Can't bind mount /oldroot/ on /newroot/: Unable to apply mount flags: remount: Invalid argument"
    assert sandbox.is_setup_failure(1, ["something", remount])
    assert not sandbox.is_setup_failure(1, ["Error: Config error"])
    assert not sandbox.is_setup_failure(0, [remount])
