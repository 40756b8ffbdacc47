"""The bubblewrap sandbox for everything that runs code from packages or profiles as root.

A package's %pre/%post scriptlets and a profile's chroot commands run as root; for root a plain chroot is not
a boundary.  So the package manager (and with it rpm and every scriptlet) and every profile chroot command run
under bwrap: in private PID, IPC and UTS namespaces, with the host read-only and mostly invisible, only the
build's work dir (and --cache-dir, mounted inside it) writable, a reduced set of capabilities and an
environment reduced to an allow-list.  This module only builds argv prefixes and environments (pure
functions); mkimage.run starts the processes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from .run import CONFIG_VARIABLE_PREFIXES

BWRAP = "bwrap"
NO_SANDBOX_WARNING = ("--no-sandbox: package scriptlets and profile chroot commands run as root in a plain chroot, "
                      "which does not contain them")

# docker's default capability set, less CAP_MKNOD (a device node for the host's disk) and CAP_NET_RAW.
# rpm needs the file ones (chown, modes, setuid bits, file capabilities) and chroot for its scriptlets.
# Never CAP_SYS_ADMIN (mount), CAP_DAC_READ_SEARCH (open_by_handle_at escapes), CAP_SYS_PTRACE,
# CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SETPCAP (it could clear the no-root-privileges securebit bwrap sets).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETFCAP", "CAP_SETUID", "CAP_SETGID",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE",
)

# Merged-/usr top-level directories: symlinks into /usr on most hosts, real directories on old ones.
TOP_LEVEL_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# What of the host's /etc the package manager reads: never /etc/shadow, never private keys.
HOST_ETC_READ_ONLY = (
    "/etc/yum.conf", "/etc/yum", "/etc/dnf", "/etc/rpm", "/etc/pki/rpm-gpg", "/etc/pki/ca-trust",
    "/etc/pki/tls/certs", "/etc/pki/tls/cert.pem", "/etc/pki/tls/openssl.cnf", "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf", "/etc/ca-certificates", "/etc/crypto-policies", "/etc/resolv.conf", "/etc/hosts",
    "/etc/host.conf", "/etc/gai.conf", "/etc/nsswitch.conf", "/etc/services", "/etc/protocols", "/etc/passwd",
    "/etc/group", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
    "/etc/localtime", "/etc/os-release", "/etc/system-release", "/etc/redhat-release", "/etc/selinux",
    "/etc/python3", "/etc/libdnf",
)

# The environment a sandboxed program may see: everything else from the caller is dropped, credentials too.
ENV_ALLOWED = frozenset({
    "PATH", "LANG", "TERM", "SOURCE_DATE_EPOCH", "HOME", "TMPDIR",
    "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY",
})
ENV_ALLOWED_PREFIXES = ("LC_", "MKIMAGE_", *CONFIG_VARIABLE_PREFIXES)


def sandbox_env(env: Mapping[str, str]) -> dict[str, str]:
    """env reduced to the allow-list.  It becomes bwrap's own environment, which bwrap passes on: values are
    never put in argv (a proxy URL may hold a password, and argv is logged and visible in ps)."""
    return {name: value for name, value in env.items()
            if name in ENV_ALLOWED or name.startswith(ENV_ALLOWED_PREFIXES)}


def bwrap_problem() -> str | None:
    """Why the sandbox can't be used here (for preflight), or None."""
    if shutil.which(BWRAP) is None:
        return ("bwrap (bubblewrap) not found on PATH; it sandboxes package scriptlets and profile chroot "
                "commands: install it (apt-get install bubblewrap / dnf install bubblewrap), or pass "
                "--no-sandbox to run them uncontained")
    return None


def probe_argv(top_level_links: Mapping[str, str]) -> list[str]:
    """A sandbox with every namespace mkimage uses: preflight runs it once, to find a kernel or container that
    refuses them before any work.  It shows /usr and the library dirs only: a bind of the whole root would race
    with mounts that come and go elsewhere (a docker daemon's overlays), and fail for that alone."""
    return [BWRAP, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            *_system_binds(top_level_links), "--proc", "/proc", "--dev", "/dev", "--cap-drop", "ALL",
            "--", "true"]


def _system_binds(top_level_links: Mapping[str, str]) -> list[str]:
    """/usr, and the top-level library dirs as this host has them (real dirs bound, links made as links)."""
    argv = ["--ro-bind", "/usr", "/usr"]
    for directory in TOP_LEVEL_DIRS:
        if directory not in top_level_links:
            argv += ["--ro-bind-try", directory, directory]
    for link, target in sorted(top_level_links.items()):
        argv += ["--symlink", target, link]
    return argv


def is_setup_failure(returncode: int, messages: Sequence[str]) -> bool:
    """bwrap itself failed to make the sandbox (it says so as 'bwrap: ...'), as opposed to the program in it."""
    return returncode == 1 and any(message.startswith("bwrap: ") for message in messages[-3:])


def probe_problem(returncode: int, messages: Sequence[str]) -> str | None:
    if returncode == 0:
        return None
    said = f": {messages[-1]}" if messages else ""
    return (f"bwrap cannot make its sandbox here (exit {returncode}{said}); run mkimage where namespaces are "
            "allowed (a privileged container, or the host), or pass --no-sandbox to run scriptlets uncontained")


# ------------------------------------------------------------------------------------ what is visible
def host_top_level_links(root: Path = Path("/")) -> dict[str, str]:
    """{'/bin': 'usr/bin', ...} for the top-level dirs that are symlinks on this host."""
    links = {}
    for name in TOP_LEVEL_DIRS:
        path = root / name.lstrip("/")
        if path.is_symlink():
            links[name] = os.readlink(path)
    return links


# ------------------------------------------------------------------------------------------------ argv
def _common_argv() -> list[str]:
    argv = [BWRAP, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", "mkimage", "--cap-drop", "ALL"]
    for capability in CAPABILITIES:
        argv += ["--cap-add", capability]
    return argv


def _mount_order(path: str) -> int:
    return len(PurePosixPath(path).parts)


def package_manager_argv(argv: Sequence[str], *, workdir: Path, rootfs: Path, read_only: Iterable[str],
                         top_level_links: Mapping[str, str],
                         mounted_at: Mapping[str, str] | None = None) -> list[str]:
    """bwrap ... -- argv, for the package manager (dnf or yum, so rpm and every scriptlet).

    Visible: /usr and the top-level library dirs, the few /etc files the package manager reads, and read_only
    (what the config makes it open: the config, repo files, vars, file:// repos, keys), all read-only; mounted_at
    ({sandbox path: host path}, read-only) puts a host path elsewhere (the release database a host without one
    is shown).  Writable: the work dir (rootfs, tmp, home; --cache-dir is a bind mount inside the rootfs, and
    binds are recursive).  Its own /proc, /dev and a private /tmp; the rest of the root is read-only and empty.
    The rootfs's /dev, where scriptlets find /dev/null, is bwrap's minimal one too (binds are nodev, so the
    image's own nodes could not be opened; and the host's console is not among bwrap's).  dnf keeps the host's
    network to download.
    """
    binds: list[tuple[str, str, str]] = [("--ro-bind-try", path, path)
                                         for path in (*HOST_ETC_READ_ONLY, *read_only) if path != "/"]
    binds += [("--ro-bind", source, target) for target, source in (mounted_at or {}).items()]
    binds.append(("--bind", str(workdir), str(workdir)))
    prefix = [*_common_argv(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
              "--tmpfs", "/run", *_system_binds(top_level_links)]
    # Parents before children, so that a bind under /tmp (a file:// repo, say) is not hidden by another.
    for option, source, target in sorted(binds, key=lambda item: _mount_order(item[2])):
        prefix += [option, source, target]
    prefix += ["--dev", str(rootfs / "dev"), "--remount-ro", "/", "--chdir", "/", "--"]
    return [*prefix, *argv]


def read_only_argv(argv: Sequence[str]) -> list[str]:
    """bwrap ... -- argv, for a program that only reads the host (the package manager asked about its config):
    the whole host read-only (its /tmp too: a config may live there), no network, its own /proc and /dev, no
    capability but reading any file."""
    return [BWRAP, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--cap-drop", "ALL", "--cap-add", "CAP_DAC_OVERRIDE", "--ro-bind", "/", "/",
            "--proc", "/proc", "--dev", "/dev", "--chdir", "/", "--", *argv]


def chroot_argv(argv: Sequence[str], *, root: Path, network: bool = False) -> list[str]:
    """bwrap ... -- argv, run with the rootfs as its root (a profile chroot command): its own /proc, a minimal
    /dev (null, zero, full, random, urandom, tty, ptmx, pts, shm), no network unless asked for."""
    prefix = [*_common_argv(), *([] if network else ["--unshare-net"]),
              "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--chdir", "/", "--"]
    return [*prefix, *argv]
