#!/usr/bin/env python3
"""Build a local RPM repository (plus comps.xml and a dnf config) for mkimage tests.

The packages are assembled from files of the build host (its bash, the shared
libraries and dynamic loader bash needs, a static busybox, the C.UTF-8 locale)
plus generated demo content, and are built with ``rpmbuild`` and indexed with
``createrepo_c``.  Output layout (relied upon by the test-suite)::

    OUT/repo/           RPMs and repodata/ (with the comps groups)
    OUT/comps.xml       the comps file
    OUT/yum.conf        dnf config: dnf -c OUT/yum.conf --installroot=ROOT --releasever=/ ...
    OUT/yum.repos.d/    empty directory, so that no host repository is ever read

With several architectures (``--arch x86_64,aarch64``) there is one repository per architecture,
``OUT/repo-ARCH/``, and yum.conf's baseurl is ``file://OUT/repo-$basearch/``, as a distribution's is.

A foreign architecture's programs come from Debian's packages for it (bash, busybox-static, libc6, libtinfo6,
fetched with ``apt-get download PKG:DEBARCH`` and unpacked with ``dpkg-deb -x``; the architecture must be known
to dpkg: ``dpkg --add-architecture arm64 && apt-get update``), its libraries listed from the ELF files
themselves (``ldd`` cannot read a foreign binary), its RPMs built with ``rpmbuild --target ARCH``.  The rpm
variants and the hostile package (this host's rpm, a program compiled here) exist for the host's architecture
only.

Usage::

    scripts/make-test-repo.py --out DIR [--size small|realistic|large] [--arch ARCH[,ARCH...]]

The path of the config file is printed on stdout; progress goes to stderr.
Re-running into the same DIR replaces the previous output.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union
from xml.sax.saxutils import escape

VERSION = "1.0"
RELEASE = "1"
REPO_ID = "mkimage-demo"
MACHINE_ID = "4d6b696d616765646d6f30313233343a"  # 32 hex characters
RELEASE_TEXT = "Demo Linux release 1.4.2 (Core)"

# Top-level usr-merge symlinks shipped by the "filesystem" package (like EL7+).
USR_MERGE_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

BUSYBOX_APPLETS = (
    "echo cat ls id stat find chmod chown grep head tail wc env true false test printf "
    "sed awk readlink sleep mkdir rm touch uname whoami md5sum"
).split()

# Macros that keep rpmbuild fast and free of distribution post-processing.
RPMBUILD_DEFINES = {
    "_build_name_fmt": "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
    "debug_package": "%{nil}",
    "_build_id_links": "none",
    "_missing_build_ids_terminate_build": "0",
    "__spec_install_post": "%{nil}",
    "__os_install_post": "%{nil}",
    "__arch_install_post": "%{nil}",
    "_binaries_in_noarch_packages_terminate_build": "0",
    # rpm flags everything below /usr/share/{doc,man,info,gnome/help} as %doc by
    # default; demo-docs needs them as ordinary files (only an explicit %doc is one).
    "__docdir_path": "%{nil}",
    "_source_payload": "w0.ufdio",
    "_buildhost": "mkimage-demo.invalid",
}

FAST_PAYLOAD = "w1.gzdio"  # small packages: cheap gzip
RAW_PAYLOAD = "w0.ufdio"  # bulk filler data: no compression at all

FILE, DIR, LINK = "file", "dir", "link"


@dataclass
class Generated:
    """File content produced on demand, so that big trees never sit in memory."""

    size: int
    chunks: Callable[[], Iterator[bytes]]


Content = Union[bytes, Path, Generated]

START = time.monotonic()


class BuildError(RuntimeError):
    """A fatal, explained error (printed without a traceback)."""


def log(message: str) -> None:
    print(f"[make-test-repo {time.monotonic() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- model


@dataclass
class Entry:
    """One path in the image: a regular file, a directory or a symlink."""

    path: str
    kind: str
    mode: int = 0o644
    content: Content | None = None
    target: str = ""
    doc: bool = False


@dataclass
class Package:
    name: str
    summary: str
    noarch: bool = True
    requires: list[str] = field(default_factory=lambda: ["filesystem"])
    requires_post: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    """Alternatives: packages that may ship the same paths, never installed together."""
    post: str | None = None
    entries: list[Entry] = field(default_factory=list)

    def file(self, path: str, content: Content, mode: int = 0o644, doc: bool = False) -> None:
        self.entries.append(Entry(path, FILE, mode, content, doc=doc))

    def dir(self, path: str, mode: int = 0o755) -> None:
        self.entries.append(Entry(path, DIR, mode))

    def link(self, path: str, target: str) -> None:
        self.entries.append(Entry(path, LINK, 0o777, target=target))


@dataclass
class Group:
    id: str
    name: str
    default: bool
    members: list[tuple[str, str]]  # (package, "mandatory" | "default" | "optional")


@dataclass
class BuildJob:
    """One spec file / rpmbuild run producing several binary packages."""

    name: str
    packages: list[Package]
    noarch: bool
    payload: str
    target: str | None = None
    """rpmbuild --target for a foreign architecture (never BuildArch:, which rpmbuild refuses for one)."""


# --------------------------------------------------------------------------- helpers


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell); raise BuildError with the output's tail on failure."""
    result = subprocess.run(argv, cwd=cwd, text=True, capture_output=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
        raise BuildError(f"command failed ({result.returncode}): {' '.join(argv)}\n{tail}")
    return result


def find_tool(name: str, extra_dirs: Iterable[str] = ("/usr/sbin", "/sbin")) -> str:
    found = shutil.which(name)
    if found is None:
        found = next((f"{d}/{name}" for d in extra_dirs if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        raise BuildError(f"required tool {name!r} not found (Debian/Ubuntu: apt-get install rpm createrepo-c)")
    return found


def pseudo_text(seed: str, size: int) -> bytes:
    """Deterministic, moderately compressible text of exactly `size` bytes."""
    rng = random.Random(seed)
    words = [hashlib.sha256(f"{seed}{i}".encode()).hexdigest()[: 3 + i % 7] for i in range(64)]
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def usr_merged(path: str) -> str:
    """Map a host path to where it lives in the usr-merged image (/lib/x -> /usr/lib/x)."""
    norm = os.path.normpath(path)
    parts = norm.lstrip("/").split("/", 1)
    if parts[0] in USR_MERGE_LINKS:
        return "/" + USR_MERGE_LINKS[parts[0]] + ("/" + parts[1] if len(parts) > 1 else "")
    return norm


def elf_interpreter(path: Path) -> str | None:
    """PT_INTERP of an ELF executable, or None for static binaries."""
    with path.open("rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF file")
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    for index in range(phnum):
        base = phoff + index * phentsize
        (p_type,) = struct.unpack_from(endian + "I", data, base)
        if p_type != 3:  # PT_INTERP
            continue
        if is64:
            (offset,) = struct.unpack_from(endian + "Q", data, base + 8)
            (size,) = struct.unpack_from(endian + "Q", data, base + 32)
        else:
            (offset,) = struct.unpack_from(endian + "I", data, base + 4)
            (size,) = struct.unpack_from(endian + "I", data, base + 16)
        return data[offset : offset + size].rstrip(b"\0").decode()
    return None


def _elf_segments(data: bytes) -> tuple[str, bool, list[tuple[int, int, int, int]]]:
    """(struct endianness, is 64-bit, [(p_type, p_offset, p_vaddr, p_filesz)]) of an ELF file's program headers."""
    if data[:4] != b"\x7fELF":
        raise BuildError("not an ELF file")
    is64, endian = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
        layout = "IIQQQQ"  # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
        layout = "IIIII"  # p_type, p_offset, p_vaddr, p_paddr, p_filesz
    segments = []
    for index in range(phnum):
        fields = struct.unpack_from(endian + layout, data, phoff + index * phentsize)
        if is64:
            segments.append((fields[0], fields[2], fields[3], fields[5]))
        else:
            segments.append((fields[0], fields[1], fields[2], fields[4]))
    return endian, is64, segments


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF file of any architecture, read from its dynamic segment (what ldd would
    ask the loader, which cannot run a foreign binary)."""
    data = path.read_bytes()
    endian, is64, segments = _elf_segments(data)
    dynamic = next(((offset, size) for kind, offset, _, size in segments if kind == 2), None)  # PT_DYNAMIC
    if dynamic is None:
        return []
    entry = struct.Struct(endian + ("qQ" if is64 else "iI"))
    tags = [entry.unpack_from(data, dynamic[0] + at) for at in range(0, dynamic[1], entry.size)]
    strtab_vaddr = next(value for tag, value in tags if tag == 5)  # DT_STRTAB

    def file_offset(vaddr: int) -> int:
        for kind, offset, start, size in segments:
            if kind == 1 and start <= vaddr < start + size:  # PT_LOAD
                return offset + vaddr - start
        raise BuildError(f"{path}: DT_STRTAB is outside every PT_LOAD segment")

    strtab = file_offset(strtab_vaddr)
    return [data[strtab + value:data.index(b"\0", strtab + value)].decode() for tag, value in tags if tag == 1]


def shared_libraries(binary: Path) -> list[tuple[str, str]]:
    """(soname, host path) pairs from `ldd`, the dynamic loader included."""
    result = run([find_tool("ldd", ("/usr/bin", "/bin")), str(binary)])
    libraries: list[tuple[str, str]] = []
    for raw in result.stdout.splitlines():
        line = raw.strip()
        if "=>" in line:
            soname, rest = (part.strip() for part in line.split("=>", 1))
            if rest.startswith("not found"):
                raise BuildError(f"ldd {binary}: {soname} not found")
            path = rest.split(" (", 1)[0].strip()
        elif line.startswith("/"):
            path = line.split(" (", 1)[0].strip()
            soname = os.path.basename(path)
        else:
            continue  # linux-vdso.so.1 and friends
        if path.startswith("/"):
            libraries.append((soname, path))
    if not libraries:
        raise BuildError(f"ldd found no libraries for {binary}")
    return libraries


def host_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


# --------------------------------------------------------------------------- packages


def filesystem_package() -> Package:
    pkg = Package("filesystem", "Basic directory layout (usr-merged)", noarch=False, requires=[])
    modes = {"/tmp": 0o1777, "/var/tmp": 0o1777, "/root": 0o550, "/proc": 0o555, "/sys": 0o555}
    for path in (
        "/etc /etc/sysconfig /usr /usr/bin /usr/sbin /usr/lib /usr/lib64 /usr/share /usr/share/doc "
        "/usr/share/man /usr/share/info /usr/share/locale /usr/lib/locale /var /var/cache /var/lib "
        "/var/log /var/tmp /tmp /root /home /proc /sys /dev /run /opt /srv /mnt /media"
    ).split():
        pkg.dir(path, modes.get(path, 0o755))
    for name, target in USR_MERGE_LINKS.items():
        pkg.link(f"/{name}", target)
    pkg.link("/var/run", "../run")
    return pkg


def shadow_hash() -> str:
    alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digest = hashlib.sha512(b"mkimage demo root password").digest()
    return "$6$demo$" + "".join(alphabet[(digest[i % 64] + i) % 64] for i in range(86))


def setup_package() -> Package:
    pkg = Package("setup", "System configuration files (users, groups, hosts)")
    passwd = (
        b"root:x:0:0:root:/root:/bin/bash\n"
        b"bin:x:1:1:bin:/bin:/sbin/nologin\n"
        b"daemon:x:2:2:daemon:/sbin:/sbin/nologin\n"
        b"nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n"
    )
    shadow = (
        f"root:{shadow_hash()}:19000:0:99999:7:::\n"
        "bin:*:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n"
        "nobody:*:19000:0:99999:7:::\n"
    ).encode()
    pkg.file("/etc/passwd", passwd)
    pkg.file("/etc/passwd-", passwd)
    pkg.file("/etc/shadow", shadow, 0o000)
    pkg.file("/etc/shadow-", shadow, 0o000)
    pkg.file("/etc/group", b"root:x:0:\nbin:x:1:\ndaemon:x:2:\nnobody:x:65534:\n")
    pkg.file("/etc/gshadow", b"root:::\nbin:::\ndaemon:::\nnobody:::\n", 0o000)
    pkg.file(
        "/etc/hosts",
        b"127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n"
        b"::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n",
    )
    pkg.file("/etc/shells", b"/bin/sh\n/bin/bash\n/usr/bin/sh\n/usr/bin/bash\n")
    pkg.file("/etc/machine-id", f"{MACHINE_ID}\n".encode(), 0o444)
    return pkg


def find_busybox() -> Path:
    """The host's busybox, preferring a statically linked one."""
    names = ("busybox", "busybox.static")
    candidates = [shutil.which(n) for n in names]
    candidates += [f"{d}/{n}" for d in ("/bin", "/usr/bin", "/sbin", "/usr/sbin") for n in names]
    found = [Path(os.path.realpath(c)) for c in candidates if c and os.path.isfile(c)]
    for path in found:
        if elf_interpreter(path) is None:
            return path
    if found:
        log(f"warning: no static busybox found, using dynamic {found[0]}")
        return found[0]
    raise BuildError("busybox not found (Debian/Ubuntu: apt-get install busybox-static; EL: dnf install busybox)")


def loader_system_dirs(loader: str) -> list[str]:
    """The loader's built-in search directories ("System search path" of ld.so --help)."""
    result = subprocess.run([loader, "--help"], text=True, capture_output=True)
    dirs = [
        line.strip().split(" (", 1)[0]
        for line in result.stdout.splitlines()
        if line.strip().endswith("(system search path)")
    ]
    if not dirs:
        log(f"warning: {loader} --help shows no system search path; relying on /etc/ld.so.cache")
    return dirs


def add_library(entries: dict[str, Entry], host_path: str) -> str:
    """Add a host library (and its symlink, if any) at its usr-merged path; return the file's path."""
    real = Path(os.path.realpath(host_path))
    real_image = usr_merged(str(real))
    entries.setdefault(real_image, Entry(real_image, FILE, host_mode(real), real))
    link_image = usr_merged(host_path)
    if link_image != real_image:
        target = os.path.relpath(real_image, os.path.dirname(link_image))
        entries.setdefault(link_image, Entry(link_image, LINK, 0o777, target=target))
    return real_image


def resolves_in_image(entries: dict[str, Entry], path: str) -> bool:
    entry = entries.get(path)
    for _ in range(8):
        if entry is None or entry.kind == FILE:
            return entry is not None
        path = usr_merged(os.path.normpath(os.path.join(os.path.dirname(path), entry.target)))
        entry = entries.get(path)
    return False


def locale_entries(entries: dict[str, Entry]) -> None:
    """Copy the host's C.UTF-8 locale to /usr/lib/locale/C.utf8."""
    source = next((Path(p) for p in ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8") if os.path.isdir(p)), None)
    if source is None:
        log("warning: host has no /usr/lib/locale/C.utf8; LC_ALL=C.UTF-8 will warn inside the image")
        return
    source = Path(os.path.realpath(source))
    base = "/usr/lib/locale/C.utf8"
    entries[base] = Entry(base, DIR, 0o755)
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        image_dir = base if rel == "." else f"{base}/{rel}"
        for name in sorted(dirnames):
            entries[f"{image_dir}/{name}"] = Entry(f"{image_dir}/{name}", DIR, 0o755)
        for name in sorted(filenames):
            host = Path(dirpath, name)
            if host.is_symlink():
                entries[f"{image_dir}/{name}"] = Entry(f"{image_dir}/{name}", LINK, target=os.readlink(host))
            else:
                entries[f"{image_dir}/{name}"] = Entry(f"{image_dir}/{name}", FILE, host_mode(host), host)


def ld_so_cache(entries: dict[str, Entry], conf: bytes, sonames: list[str], scratch: Path) -> bytes:
    """Generate /etc/ld.so.cache with the host's ldconfig against a scratch image tree."""
    root = scratch / "ldconfig-root"
    materialize(root, [Entry(p, LINK, target=t) for p, t in ((f"/{n}", t) for n, t in USR_MERGE_LINKS.items())])
    materialize(root, [Entry("/etc/ld.so.conf", FILE, content=conf), Entry("/etc/ld.so.conf.d", DIR)])
    materialize(root, list(entries.values()))
    run([find_tool("ldconfig"), "-X", "-r", str(root)])
    cache = root / "etc/ld.so.cache"
    listing = run([find_tool("ldconfig"), "-p", "-C", str(cache)]).stdout
    missing = [s for s in sonames if f"{s} " not in listing]
    if missing:
        log(f"warning: ld.so.cache lacks {', '.join(missing)}")
    return cache.read_bytes()


def glibc_package(bash: Path, busybox: Path, scratch: Path) -> Package:
    """The host's dynamic loader, every library bash (and a dynamic busybox) needs, C.UTF-8, ld.so.cache."""
    pkg = Package("glibc", "Host dynamic loader, shared libraries and C.UTF-8 locale", noarch=False)
    libraries = shared_libraries(bash)
    if elf_interpreter(busybox) is not None:
        libraries += shared_libraries(busybox)
    entries: dict[str, Entry] = {}
    for _, host_path in libraries:
        add_library(entries, host_path)
    loader = elf_interpreter(bash)
    assert loader is not None, "bash is expected to be dynamically linked"
    if not resolves_in_image(entries, usr_merged(loader)):
        add_library(entries, loader)
    system_dirs = loader_system_dirs(loader)
    sonames = sorted({s for s, p in libraries if os.path.realpath(p) != os.path.realpath(loader)})
    for soname in sonames:
        if system_dirs and not any(resolves_in_image(entries, usr_merged(f"{d}/{soname}")) for d in system_dirs):
            real = next(usr_merged(os.path.realpath(p)) for s, p in libraries if s == soname)
            link = usr_merged(f"{system_dirs[0]}/{soname}")
            log(f"warning: loader would not find {soname}; adding {link}")
            entries[link] = Entry(link, LINK, target=os.path.relpath(real, os.path.dirname(link)))
    system_image_dirs = {usr_merged(d) for d in system_dirs}
    lib_dirs = sorted({os.path.dirname(p) for p, e in entries.items() if e.kind == FILE} - system_image_dirs)
    # absolute include: a non-root "ldconfig -r" rejects relative ones
    conf = ("include /etc/ld.so.conf.d/*.conf\n" + "".join(f"{d}\n" for d in lib_dirs)).encode()
    locale_entries(entries)
    cache = ld_so_cache(entries, conf, sonames, scratch)
    pkg.entries.extend(entries[p] for p in sorted(entries))
    pkg.file("/etc/ld.so.conf", conf)
    pkg.dir("/etc/ld.so.conf.d")
    pkg.file("/etc/ld.so.cache", cache)
    return pkg


def bash_package(bash: Path) -> Package:
    pkg = Package("bash", "The host's GNU Bourne Again shell", noarch=False, requires=["filesystem", "glibc"])
    pkg.provides = ["/bin/sh", "/bin/bash"]
    pkg.file("/usr/bin/bash", bash, 0o755)
    pkg.link("/usr/bin/sh", "bash")
    return pkg


def busybox_package(busybox: Path, lister: Path) -> Package:
    """busybox with links for its applets; lister: a busybox of the same build configuration that runs here
    (this host's, for a foreign architecture's Debian busybox-static)."""
    pkg = Package("busybox", "A static busybox with common applet links", noarch=False)
    if elf_interpreter(busybox) is not None:
        pkg.requires.append("glibc")
    pkg.file("/usr/bin/busybox", busybox, 0o755)
    available = set(run([str(lister), "--list"]).stdout.split())
    missing = [a for a in BUSYBOX_APPLETS if a not in available]
    if missing:
        log(f"warning: busybox lacks applets: {' '.join(missing)}")
    for applet in BUSYBOX_APPLETS:
        if applet in available:
            pkg.link(f"/usr/bin/{applet}", "busybox")
    return pkg


def release_package() -> Package:
    pkg = Package("demo-release", "Demo Linux release files")
    pkg.provides = ["system-release", "redhat-release", "system-release(releasever) = 1"]
    pkg.file("/etc/demo-release", f"{RELEASE_TEXT}\n".encode())
    pkg.link("/etc/redhat-release", "demo-release")
    pkg.link("/etc/system-release", "demo-release")
    return pkg


def docs_package() -> Package:
    """Ordinary files at every path the mkimage-yum.sh minimisation deletes, plus one %doc file."""
    pkg = Package("demo-docs", "Files that image minimisation must remove")
    paths = [
        ("/usr/share/man/man1/demo.1.gz", 0o644),
        ("/usr/share/doc/demo-docs/README", 0o644),
        ("/usr/share/info/demo.info.gz", 0o644),
        ("/usr/share/gnome/help/demo/index.page", 0o644),
        ("/usr/share/cracklib/pw_dict.pwd", 0o644),
        ("/usr/share/i18n/charmaps/DEMO.gz", 0o644),
        ("/usr/share/locale/de/LC_MESSAGES/demo.mo", 0o644),
        ("/usr/lib/locale/de_DE.utf8/LC_CTYPE", 0o644),
        ("/usr/lib/gconv/DEMO.so", 0o755),
        ("/usr/lib64/gconv/DEMO.so", 0o755),
        ("/usr/bin/localedef", 0o755),
        ("/usr/sbin/build-locale-archive", 0o755),
        ("/usr/sbin/sln", 0o755),
        ("/var/cache/ldconfig/aux-cache", 0o600),
    ]
    for index, (path, mode) in enumerate(paths):
        size = 4096 + (index * 977) % 12288  # 4-16 KiB
        body = pseudo_text(path, size)
        if mode == 0o755 and not path.endswith(".so"):
            body = b"#!/bin/sh\necho 'demo placeholder: " + path.encode() + b"'\n#" + body
        pkg.file(path, body, mode)
    pkg.file("/usr/share/doc/demo-docs/NOTES-nodocs", b"This %doc file is skipped with tsflags=nodocs.\n", doc=True)
    return pkg


def post_package() -> Package:
    pkg = Package("demo-post", "Package with a %post scriptlet")
    pkg.requires_post = ["/bin/sh"]
    pkg.dir("/var/lib/demo-post")
    pkg.post = "echo ran > /var/lib/demo-post/ran"
    return pkg


def machine_package() -> Package:
    """A %post that records the machine it runs on, as the image's own uname sees it (under qemu-user for a
    foreign architecture).  In no group: installed with -p demo-machine."""
    pkg = Package("demo-machine", "Package whose %post records uname -m", requires=["filesystem", "busybox"])
    pkg.requires_post = ["/bin/sh", "busybox"]
    pkg.dir("/var/lib/demo-machine")
    pkg.post = "uname -m > /var/lib/demo-machine/uname"
    return pkg


def script(text: str) -> bytes:
    return f"#!/bin/sh\necho '{text}'\n".encode()


def setuid_package() -> Package:
    pkg = Package("demo-setuid", "Setuid and setgid programs")
    pkg.file("/usr/bin/su", script("demo su"), 0o4755)
    pkg.file("/usr/bin/demo-mount", script("demo mount"), 0o4755)
    pkg.file("/usr/bin/demo-write", script("demo write"), 0o2755)
    return pkg


def marker_package(name: str, summary: str) -> Package:
    pkg = Package(name, summary)
    pkg.file(f"/usr/share/{name}/marker", f"{name}\n".encode())
    return pkg


def hello_package() -> Package:
    pkg = Package("demo-hello", "Prints a greeting", requires=["filesystem", "bash"])
    pkg.file("/usr/bin/hello", script("hello from demo"), 0o755)
    return pkg


def failpost_package() -> Package:
    pkg = marker_package("demo-failpost", "Package whose %post fails")
    pkg.requires_post = ["/bin/sh"]
    pkg.post = 'echo "demo-failpost: failing on purpose" >&2\nexit 1'
    return pkg


def slow_package() -> Package:
    """A %post that says it started, then sleeps: lets tests interrupt a build in the middle of an install."""
    pkg = Package("demo-slow", "Package whose %post takes ten minutes", requires=["filesystem", "busybox"])
    pkg.requires_post = ["/bin/sh", "busybox"]
    pkg.dir("/var/lib/demo-slow")
    pkg.post = "echo started > /var/lib/demo-slow/started\nsleep 600"
    return pkg


def secrets_package() -> Package:
    pkg = Package("demo-secrets", "Host keys and other secrets that must not end up in images")

    def key(kind: str) -> bytes:
        return f"-----BEGIN {kind} PRIVATE KEY-----\nDUMMY-NOT-A-REAL-KEY\n-----END {kind} PRIVATE KEY-----\n".encode()

    pkg.file("/etc/ssh/ssh_host_rsa_key", key("OPENSSH"), 0o600)
    pkg.file("/etc/ssh/ssh_host_rsa_key.pub", b"ssh-rsa AAAADUMMY root@demo\n", 0o644)
    pkg.file("/etc/ssh/ssh_host_ed25519_key", key("OPENSSH"), 0o600)
    pkg.file("/etc/ssh/ssh_host_ed25519_key.pub", b"ssh-ed25519 AAAADUMMY root@demo\n", 0o644)
    pkg.file("/var/lib/systemd/random-seed", hashlib.shake_128(b"random-seed").digest(512), 0o600)
    pkg.file("/etc/pki/tls/private/localhost.key", key("RSA"), 0o600)
    return pkg


def hostile_package(scratch: Path) -> Package:
    """A %post that attacks the build host (scripts/demo-hostile.c, built static): for the sandbox tests.
    In no group: installed only with -p demo-hostile."""
    binary = scratch / "demo-hostile"
    run([find_tool("gcc", ("/usr/bin",)), "-static", "-O2", "-Wall", "-o", str(binary),
         str(Path(__file__).resolve().parent / "demo-hostile.c")])
    pkg = Package("demo-hostile", "Package whose %post attacks the build host", noarch=False)
    pkg.requires_post = ["/bin/sh"]
    pkg.dir("/var/lib/demo-hostile")
    pkg.file("/usr/bin/demo-hostile", binary, 0o755)
    # /dev/null must work in a sandboxed scriptlet, as in any ordinary one: if it does not, the %post fails.
    pkg.post = "echo 'demo-hostile: attacking' >/dev/null || exit 1\n/usr/bin/demo-hostile post"
    return pkg


def worldwritable_package() -> Package:
    pkg = Package("demo-worldwritable", "World-writable files and directories")
    pkg.dir("/var/lib/demo-ww", 0o755)
    pkg.dir("/var/lib/demo-ww/open-dir", 0o777)
    pkg.file("/var/lib/demo-ww/open-file", b"anyone may write here\n", 0o666)
    pkg.dir("/var/lib/demo-ww/sticky-dir", 0o1777)
    return pkg


# --------------------------------------------------------------------------- fillers

RANDOM_POOL_SIZE = 1 << 20
_pools: dict[str, bytes] = {}


def filler_pools() -> tuple[bytes, bytes]:
    if not _pools:
        _pools["random"] = hashlib.shake_128(b"mkimage-filler-random").digest(RANDOM_POOL_SIZE)
        _pools["text"] = pseudo_text("mkimage-filler-text", 256 * 1024)
    return _pools["random"], _pools["text"]


def elf_header(binary: Path) -> bytes:
    """A minimal ELF header (no program/section headers) for the host's class and machine."""
    data = bytearray(binary.read_bytes()[:64])
    if data[4] == 2:  # ELF64: zero e_entry/e_phoff/e_shoff, e_phnum, e_shnum/e_shstrndx
        spans = ((24, 48), (56, 58), (60, 64))
    else:  # ELF32
        data = data[:52]
        spans = ((24, 36), (44, 46), (48, 52))
    for start, end in spans:
        data[start:end] = bytes(end - start)
    data[16:18] = (3).to_bytes(2, "little" if data[5] == 1 else "big")  # ET_DYN
    return bytes(data)


def semi_compressible(seed: str, size: int, header: bytes) -> Generated:
    """`header`, then random and text segments: compresses roughly like real binaries/text.

    The header (ELF or a #! line) lets rpmbuild's libmagic classification finish
    early; headerless mixed data costs it ~0.5 ms per file.
    """

    def generate() -> Iterator[bytes]:
        random_pool, text_pool = filler_pools()
        rng = random.Random(seed)
        yield header[:size]
        left = size - len(header)
        while left > 0:
            length = min(left, rng.randint(256, 4096))
            pool = random_pool if rng.random() < 0.35 else text_pool
            offset = rng.randrange(len(pool) - length)
            yield pool[offset : offset + length]
            left -= length

    return Generated(size, generate)


def incompressible(seed: str, size: int) -> Generated:
    def generate() -> Iterator[bytes]:
        chunk = 8 << 20
        for index in range(0, size, chunk):
            yield hashlib.shake_128(f"{seed}/{index}".encode()).digest(min(chunk, size - index))

    return Generated(size, generate)


def realistic_fillers(elf: bytes, count: int = 150, files: int = 140) -> list[Package]:
    """`count` host-arch packages of `files` files of 1-64 KiB (~1.3 MiB per package).

    Installed with @core: ~22k files, `du -sh` ~250M (~205 MB apparent size).

    A third are fake shared objects under /usr/lib, the rest #! scripts under /usr/share.
    """
    packages = []
    for number in range(1, count + 1):
        name = f"filler-{number:03d}"
        pkg = Package(name, f"Filler package {number} (realistic image size)", noarch=False)
        rng = random.Random(name)
        for index in range(files):
            size = int(1024 * 2 ** (6 * rng.random() ** 2.0))  # 1-64 KiB, mean ~9 KiB
            seed = f"{name}/{index}"
            if index % 3 == 0:
                path = f"/usr/lib/{name}/lib{name}-{index:03d}.so"
                pkg.file(path, semi_compressible(seed, size, elf), 0o755)
            else:
                path = f"/usr/share/{name}/d{index // 50}/f{index:03d}.sh"
                pkg.file(path, semi_compressible(seed, size, b"#!/bin/sh\n# generated filler data\n"))
        packages.append(pkg)
    return packages


def large_fillers(count: int = 8, files: int = 4, size: int = 32 << 20) -> list[Package]:
    """`count` packages of `files` x `size` incompressible bytes (~1 GiB in total)."""
    packages = []
    for number in range(1, count + 1):
        name = f"filler-{number:03d}"
        pkg = Package(name, f"Filler package {number} (large, incompressible)")
        for index in range(files):
            pkg.file(f"/usr/share/{name}/blob-{index}.bin", incompressible(f"{name}/{index}", size))
        packages.append(pkg)
    return packages


# --------------------------------------------------------------------------- tree / spec


def add_parent_dirs(packages: list[Package]) -> None:
    """Make every package own the directories it creates that "filesystem" does not own."""
    base = {e.path for p in packages if p.name == "filesystem" for e in p.entries} | {"/"}
    for pkg in packages:
        if pkg.name == "filesystem":
            continue
        own = {e.path for e in pkg.entries}
        for entry in list(pkg.entries):
            parent = os.path.dirname(entry.path)
            while parent not in base and parent not in own:
                own.add(parent)
                pkg.dir(parent)
                parent = os.path.dirname(parent)


def check_paths(packages: list[Package]) -> None:
    seen: dict[str, tuple[str, Entry]] = {}
    alternatives = {(p.name, other) for p in packages for other in p.conflicts}
    for pkg in packages:
        for entry in pkg.entries:
            first = entry.path.lstrip("/").split("/")[0]
            if pkg.name != "filesystem" and (first in USR_MERGE_LINKS or entry.path.startswith("/var/run/")):
                raise BuildError(f"{pkg.name}: {entry.path} goes through a filesystem symlink")
            if entry.path in seen:
                other, other_entry = seen[entry.path]
                if (pkg.name, other) in alternatives:
                    continue
                if not (entry.kind == DIR and other_entry.kind == DIR and entry.mode == other_entry.mode):
                    raise BuildError(f"{entry.path} is in both {other} and {pkg.name}")
            seen[entry.path] = (pkg.name, entry)


def write_content(dest: Path, content: Content | None) -> None:
    if isinstance(content, Path):
        shutil.copyfile(content, dest)
    elif isinstance(content, bytes):
        dest.write_bytes(content)
    elif content is None:
        dest.write_bytes(b"")
    else:
        with dest.open("wb") as handle:
            for chunk in content.chunks():
                handle.write(chunk)


def materialize(root: Path, entries: Iterable[Entry]) -> None:
    """Write entries below root; on-disk modes stay permissive (%attr sets the real ones)."""
    for entry in entries:
        dest = root / entry.path.lstrip("/")
        if entry.kind == DIR:
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == LINK:
            os.symlink(entry.target, dest)
        else:
            write_content(dest, entry.content)
            dest.chmod(0o755 if entry.mode & 0o111 else 0o644)


def files_line(entry: Entry) -> str:
    if entry.kind == LINK:
        return f"%attr(-,root,root) {entry.path}"
    attr = f"%attr({entry.mode:04o},root,root) {entry.path}"
    if entry.kind == DIR:
        return f"%dir {attr}"
    return f"%doc {attr}" if entry.doc else attr


def package_section(pkg: Package, job: BuildJob) -> str:
    lines = [f"%package -n {pkg.name}", f"Summary: {pkg.summary}", "AutoReqProv: no"]
    if pkg.noarch and not job.noarch:
        lines.append("BuildArch: noarch")
    lines += [f"Requires: {r}" for r in pkg.requires]
    lines += [f"Requires(post): {r}" for r in pkg.requires_post]
    lines += [f"Provides: {p}" for p in pkg.provides]
    lines += [f"Conflicts: {c}" for c in pkg.conflicts]
    lines += ["", f"%description -n {pkg.name}", f"{pkg.summary}.", ""]
    if pkg.post is not None:
        lines += [f"%post -n {pkg.name}", pkg.post, ""]
    lines += [f"%files -n {pkg.name}"] + [files_line(e) for e in pkg.entries] + [""]
    return "\n".join(lines)


def spec_text(job: BuildJob, stage: Path) -> str:
    header = [
        "# Generated by scripts/make-test-repo.py -- do not edit.",
        "%global debug_package %{nil}",
        f"Name: mkimage-demo-{job.name}",
        f"Version: {VERSION}",
        f"Release: {RELEASE}",
        f"Summary: mkimage demo packages ({job.name})",
        "License: MIT",
        "AutoReqProv: no",
    ]
    if job.noarch:
        header.append("BuildArch: noarch")
    header += [
        "",
        "%description",
        "Source package of the mkimage demo repository; no binary package of this name is built.",
        "",
        "%install",
        "mkdir -p %{buildroot}",
        f"cp -al '{stage}/.' %{{buildroot}}/",
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(package_section(p, job) for p in job.packages)


def rpmbuild_job(job: BuildJob, scratch: Path, rpmdir: Path) -> list[Path]:
    """Stage the files, write the spec and run rpmbuild; return the built RPMs (in rpmdir)."""
    topdir = scratch / f"rpmbuild-{job.name}"
    for sub in ("BUILD", "BUILDROOT", "SOURCES", "SPECS", "SRPMS", "tmp"):
        (topdir / sub).mkdir(parents=True, exist_ok=True)
    rpmdir.mkdir(parents=True)
    stage = topdir / "stage"
    started = time.monotonic()
    materialize(stage, (e for p in job.packages for e in p.entries))
    spec = topdir / "SPECS" / f"{job.name}.spec"
    spec.write_text(spec_text(job, stage))
    defines = dict(RPMBUILD_DEFINES, _topdir=str(topdir), _rpmdir=str(rpmdir), _tmppath=str(topdir / "tmp"))
    defines["_binary_payload"] = job.payload
    argv = [find_tool("rpmbuild"), "-bb", "--nodeps", "--quiet"]
    if job.target is not None and not job.noarch:
        argv += ["--target", job.target]
    for name, value in defines.items():
        argv += ["--define", f"{name} {value}"]
    staged = time.monotonic()
    try:
        run(argv + [str(spec)], cwd=topdir)
    finally:
        shutil.rmtree(topdir, ignore_errors=True)
    rpms = sorted(rpmdir.glob("*.rpm"))
    log(
        f"{job.name}: {len(rpms)} packages (staging {staged - started:.1f}s, rpmbuild {time.monotonic() - staged:.1f}s)"
    )
    return rpms


# --------------------------------------------------------------------------- repo


RPM_VARIANTS = {
    # name: (summary, %_dbpath, %_db_backend or None to keep this host's)
    "demo-rpm": ("This host's rpm, configured the EL8 way (/var/lib/rpm)", "%{_var}/lib/rpm", None),
    "demo-rpm-sysimage": ("This host's rpm, configured the Fedora/EL10 way (/usr/lib/sysimage/rpm)",
                          "%{_usr}/lib/sysimage/rpm", None),
    "demo-rpm-bdb": ("This host's rpm, asking for Berkeley DB as EL8's rpm does", "%{_var}/lib/rpm", "bdb"),
}


def rpm_macros(dbpath: str, backend: str | None) -> bytes:
    """This host's /usr/lib/rpm/macros with the image's own %_dbpath (and %_db_backend)."""
    text = Path("/usr/lib/rpm/macros").read_text()
    text, count = re.subn(r"^%_dbpath\s.*$", f"%_dbpath\t\t{dbpath}", text, count=1, flags=re.M)
    if count != 1:
        raise BuildError("/usr/lib/rpm/macros has no %_dbpath line")
    if backend is not None:
        text, count = re.subn(r"^%_db_backend\s.*$", f"%_db_backend\t{backend}", text, count=1, flags=re.M)
        if count != 1:
            raise BuildError("/usr/lib/rpm/macros has no %_db_backend line")
    return text.encode()


def rpm_packages(glibc: Package) -> list[Package]:
    """rpm and rpmdb from this host with the libraries glibc lacks, rpmrc and macros, in three configurations
    (alternatives of each other)."""
    binaries = [Path(find_tool(name, ("/usr/bin", "/bin"))) for name in ("rpm", "rpmdb")]
    libraries: dict[str, Entry] = {}
    for binary in binaries:
        for _, host_path in shared_libraries(binary):
            add_library(libraries, host_path)
    in_glibc = {entry.path for entry in glibc.entries}
    packages = []
    for name, (summary, dbpath, backend) in RPM_VARIANTS.items():
        pkg = Package(name, summary, noarch=False, requires=["filesystem", "glibc"])
        pkg.provides = ["rpm"]
        for binary in binaries:
            pkg.file(f"/usr/bin/{binary.name}", binary, 0o755)
        pkg.entries.extend(libraries[path] for path in sorted(libraries) if path not in in_glibc)
        pkg.conflicts = [other for other in RPM_VARIANTS if other != name]
        pkg.file("/usr/lib/rpm/rpmrc", Path("/usr/lib/rpm/rpmrc"))
        pkg.file("/usr/lib/rpm/macros", rpm_macros(dbpath, backend))
        pkg.dir("/usr/lib/rpm/macros.d")
        if "sysimage" in dbpath:  # as Fedora >= 36 and EL10 ship it: the old place is a link to the new one
            pkg.dir("/usr/lib/sysimage")
            pkg.dir("/usr/lib/sysimage/rpm")
            pkg.link("/var/lib/rpm", "../../usr/lib/sysimage/rpm")
        packages.append(pkg)
    return packages


def host_bash() -> Path:
    return Path(os.path.realpath(find_tool("bash", ("/usr/bin", "/bin"))))


# --------------------------------------------------------------------------- architectures

# rpm's names of the architectures (as --target and $basearch spell them) -> Debian's (dpkg, apt-get PKG:ARCH)
DEBIAN_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "s390x": "s390x",
                 "riscv64": "riscv64"}
FOREIGN_DEBS = ("bash", "busybox-static", "libc6", "libtinfo6")
# Where Debian's loader looks without an ld.so.cache (its system search path, multiarch dirs first).
MULTIARCH_TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
                      "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu"}
BIG_ENDIAN_ARCHES = {"s390x"}


def host_arch() -> str:
    return platform.machine()


@dataclass(frozen=True)
class Programs:
    """Where one architecture's programs come from: this host's own, or Debian's packages for a foreign
    architecture, unpacked into ``root``."""

    arch: str
    bash: Path
    busybox: Path
    root: Path | None = None
    """The unpacked Debian packages (a foreign architecture); None: this host's own files."""

    @property
    def foreign(self) -> bool:
        return self.root is not None


def host_programs() -> Programs:
    return Programs(host_arch(), host_bash(), find_busybox())


def download_debs(arch: str, cache: Path) -> list[Path]:
    """Debian's packages for arch, kept in cache between runs (apt-get download, as root writes into cwd)."""
    debian = DEBIAN_ARCHES.get(arch)
    if debian is None:
        raise BuildError(f"no Debian architecture known for {arch} (known: {', '.join(DEBIAN_ARCHES)})")
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}:{debian}" for name in FOREIGN_DEBS]
    have = {deb.name.split("_", 1)[0] for deb in cache.glob(f"*_{debian}.deb")}
    missing = [name for name in wanted if name.split(":")[0] not in have]
    if missing:
        result = subprocess.run([find_tool("apt-get", ("/usr/bin",)), "download", *missing], cwd=cache, text=True,
                                capture_output=True)
        if result.returncode != 0:
            said = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"apt-get download {' '.join(missing)} failed ({said}); is {debian} known to dpkg? "
                             f"dpkg --add-architecture {debian} && apt-get update")
    return sorted(cache.glob(f"*_{debian}.deb"))


def foreign_programs(arch: str, debs: Path, scratch: Path) -> Programs:
    """Debian's bash, static busybox and their libraries for arch, unpacked with dpkg-deb -x."""
    root = scratch / f"debs-{arch}"
    for deb in download_debs(arch, debs):
        run([find_tool("dpkg-deb", ("/usr/bin",)), "-x", str(deb), str(root)])
    bash, busybox = root / "bin" / "bash", root / "bin" / "busybox"
    for program in (bash, busybox):
        if not program.is_file():
            raise BuildError(f"{program.relative_to(root)} is not in Debian's {arch} packages")
    return Programs(arch, bash, busybox, root)


def resolve_in_tree(root: Path, path: str) -> str:
    """path (absolute, inside root) with every symlink followed inside root: an image path."""
    parts, resolved, hops = path.strip("/").split("/"), "/", 0
    while parts:
        part = parts.pop(0)
        candidate = os.path.normpath(os.path.join(resolved, part))
        host = root / candidate.lstrip("/")
        if host.is_symlink():
            hops += 1
            if hops > 40:
                raise BuildError(f"symlink loop at {path} in {root}")
            target = os.readlink(host)
            parts = target.strip("/").split("/") + parts
            resolved = "/" if target.startswith("/") else resolved
            continue
        resolved = candidate
    return resolved


def find_library(root: Path, arch: str, soname: str) -> str:
    triplet = MULTIARCH_TRIPLETS[arch]
    for directory in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib"):
        if os.path.lexists(root / directory.lstrip("/") / soname):
            return f"{directory}/{soname}"
    raise BuildError(f"{soname} is not in Debian's {arch} packages")


def add_tree_library(entries: dict[str, Entry], root: Path, image_path: str) -> None:
    """A library of the unpacked tree (and the symlink naming it) at its usr-merged path."""
    real = resolve_in_tree(root, image_path)
    real_image = usr_merged(real)
    host = root / real.lstrip("/")
    entries.setdefault(real_image, Entry(real_image, FILE, host_mode(host), host))
    link_image = usr_merged(image_path)
    if link_image != real_image:
        target = os.path.relpath(real_image, os.path.dirname(link_image))
        entries.setdefault(link_image, Entry(link_image, LINK, 0o777, target=target))


def foreign_glibc_package(programs: Programs) -> Package:
    """The loader and every library bash needs (DT_NEEDED, transitively) from Debian's packages for the
    architecture, at Debian's multiarch paths, which its loader searches without an ld.so.cache."""
    assert programs.root is not None
    root, arch = programs.root, programs.arch
    pkg = Package("glibc", f"Debian's {arch} dynamic loader and shared libraries, C.UTF-8 locale", noarch=False)
    entries: dict[str, Entry] = {}
    loader = elf_interpreter(programs.bash)
    assert loader is not None, "bash is expected to be dynamically linked"
    add_tree_library(entries, root, loader)
    pending = [programs.bash] + ([programs.busybox] if elf_interpreter(programs.busybox) else [])
    seen: set[str] = set()
    while pending:
        for soname in elf_needed(pending.pop()):
            if soname in seen:
                continue
            seen.add(soname)
            image_path = find_library(root, arch, soname)
            add_tree_library(entries, root, image_path)
            pending.append(root / resolve_in_tree(root, image_path).lstrip("/"))
    if (arch in BIG_ENDIAN_ARCHES) == (host_arch() in BIG_ENDIAN_ARCHES):  # locale files are in byte order
        locale_entries(entries)
    pkg.entries.extend(entries[p] for p in sorted(entries))
    pkg.file("/etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n")
    pkg.dir("/etc/ld.so.conf.d")
    return pkg


def base_packages(scratch: Path, programs: Programs) -> list[Package]:
    bash, busybox = programs.bash, programs.busybox
    log(f"{programs.arch} bash: {bash}; busybox: {busybox}")
    glibc = foreign_glibc_package(programs) if programs.foreign else glibc_package(bash, busybox, scratch)
    host_only = [] if programs.foreign else [*rpm_packages(glibc), hostile_package(scratch)]
    return [
        filesystem_package(),
        setup_package(),
        glibc,
        bash_package(bash),
        busybox_package(busybox, find_busybox() if programs.foreign else busybox),
        release_package(),
        docs_package(),
        post_package(),
        machine_package(),
        setuid_package(),
        marker_package("demo-default", "Default (non-mandatory) member of core"),
        marker_package("demo-optional", "Optional member of core"),
        marker_package("demo-extra", "Mandatory member of extras"),
        hello_package(),
        failpost_package(),
        slow_package(),
        secrets_package(),
        worldwritable_package(),
        *host_only,
    ]


def filler_packages(size: str, programs: Programs) -> list[Package]:
    if size == "realistic":
        return realistic_fillers(elf_header(programs.bash))
    if size == "large":
        return large_fillers()
    return []


CORE_MANDATORY = "filesystem setup glibc bash busybox demo-release demo-docs demo-post demo-setuid".split()


def groups(fillers: list[Package]) -> list[Group]:
    core = [(n, "mandatory") for n in CORE_MANDATORY] + [(p.name, "mandatory") for p in fillers]
    core += [("demo-default", "default"), ("demo-optional", "optional")]
    return [Group("core", "Core", True, core), Group("extras", "Extras", False, [("demo-extra", "mandatory")])]


def comps_xml(group_list: list[Group]) -> str:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">',
        "<comps>",
    ]
    for group in group_list:
        out += [
            "  <group>",
            f"    <id>{escape(group.id)}</id>",
            f"    <name>{escape(group.name)}</name>",
            f"    <description>{escape(group.name)} packages of the mkimage demo repository</description>",
            f"    <default>{'true' if group.default else 'false'}</default>",
            "    <uservisible>true</uservisible>",
            "    <packagelist>",
        ]
        out += [f'      <packagereq type="{kind}">{escape(name)}</packagereq>' for name, kind in group.members]
        out += ["    </packagelist>", "  </group>"]
    return "\n".join(out + ["</comps>", ""])


def yum_conf(out: Path, repo_dir: str = "repo") -> str:
    """repo_dir: the repository's directory in OUT, possibly with $basearch in it."""
    return (
        "[main]\n"
        "gpgcheck=0\n"
        "installonly_limit=3\n"
        "keepcache=0\n"
        f"reposdir={out / 'yum.repos.d'}\n"
        "\n"
        f"[{REPO_ID}]\n"
        "name=mkimage demo repository\n"
        f"baseurl=file://{out / repo_dir}/\n"
        "enabled=1\n"
        "gpgcheck=0\n"
        "metadata_expire=never\n"
    )


def make_jobs(base: list[Package], fillers: list[Package], arch: str) -> list[BuildJob]:
    """One job for the base packages; fillers split into two jobs per CPU so staging overlaps rpmbuild."""
    target = None if arch == host_arch() else arch
    alternatives = [p for p in base if p.conflicts]  # same paths, other content: a staging tree each
    jobs = [BuildJob(f"base-{arch}", [p for p in base if not p.conflicts], noarch=False, payload=FAST_PAYLOAD,
                     target=target)]
    jobs += [BuildJob(f"{p.name}-{arch}", [p], noarch=False, payload=FAST_PAYLOAD, target=target)
             for p in alternatives]
    chunks = min(len(fillers), 2 * (os.cpu_count() or 1), 16)
    for index in range(chunks):
        part = fillers[index::chunks]
        jobs.append(BuildJob(f"fillers{index + 1}-{arch}", part, all(p.noarch for p in part), RAW_PAYLOAD,
                             target=target))
    return jobs


def build_rpms(jobs: list[BuildJob], scratch: Path, work: Path) -> list[Path]:
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda job: rpmbuild_job(job, scratch, work / "rpms" / job.name), jobs))
    return [rpm for rpms in results for rpm in rpms]


def check_rpms(rpms: list[Path], packages: list[Package]) -> None:
    built = sorted(p.name.rsplit("-", 2)[0] for p in rpms)
    expected = sorted(p.name for p in packages)
    if built != expected:
        raise BuildError(f"built packages {built} differ from the expected {expected}")


def create_repo(rpms: list[Path], comps: Path, repo: Path) -> None:
    repo.mkdir()
    for rpm in rpms:
        os.rename(rpm, repo / rpm.name)
    argv = [find_tool("createrepo_c"), "--quiet", "--no-database", "--groupfile", str(comps)]
    run(argv + ["--workers", str(os.cpu_count() or 1), str(repo)])


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def repo_dirs(arches: list[str]) -> dict[str, str]:
    """Each architecture's repository directory in OUT: 'repo' for one, 'repo-ARCH' for several."""
    return {arch: "repo" if len(arches) == 1 else f"repo-{arch}" for arch in arches}


def publish(work: Path, out: Path, arches: list[str]) -> Path:
    """Swap the freshly built output into place, replacing any previous run's."""
    for stale in [out / "repo", *out.glob("repo-*")]:
        if stale.exists() or stale.is_symlink():
            os.rename(stale, work / f"previous-{stale.name}")
    for directory in repo_dirs(arches).values():
        os.rename(work / directory, out / directory)
    remove_path(out / "comps.xml")
    os.rename(work / "comps.xml", out / "comps.xml")
    repos_d = out / "yum.repos.d"
    remove_path(repos_d)
    repos_d.mkdir()
    config = out / "yum.conf"
    os.replace(work / "yum.conf", config)
    return config


def staged_bytes(packages: list[Package]) -> int:
    """Size of the staged tree's file contents."""
    total = 0
    for entry in (e for p in packages for e in p.entries):
        if isinstance(entry.content, bytes):
            total += len(entry.content)
        elif isinstance(entry.content, Path):
            total += entry.content.stat().st_size
        elif isinstance(entry.content, Generated):
            total += entry.content.size
    return total


def scratch_parent(out: Path, packages: list[Package], size: str) -> Path:
    """Where to stage: tmpfs (/dev/shm) if roomy, as creating many files is slow on some disks."""
    if size == "large":
        return out  # a few huge files: no gain from tmpfs, and it would need >1 GiB of RAM
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:
        return out
    free = stats.f_bavail * stats.f_frsize
    if os.access(shm, os.W_OK) and free > staged_bytes(packages) + (512 << 20):
        return shm
    return out


@dataclass
class ArchBuild:
    arch: str
    packages: list[Package]
    jobs: list[BuildJob]


def plan(arch: str, size: str, work: Path, debs: Path) -> ArchBuild:
    programs = host_programs() if arch == host_arch() else foreign_programs(arch, debs, work)
    base = base_packages(work, programs)
    fillers = filler_packages(size, programs)
    everything = base + fillers
    add_parent_dirs(everything)
    check_paths(everything)
    return ArchBuild(arch, everything, make_jobs(base, fillers, arch))


def build(out: Path, size: str, arches: list[str]) -> Path:
    for stale in out.glob(".build-*"):
        remove_path(stale)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    scratch = work
    try:
        builds = [plan(arch, size, work, out / "debs") for arch in arches]
        everything = [pkg for each in builds for pkg in each.packages]
        parent = scratch_parent(out, everything, size)
        if parent != out:
            scratch = Path(tempfile.mkdtemp(prefix="mkimage-test-repo-", dir=parent))
        log(f"building {len(everything)} packages for {', '.join(arches)} (size={size}, staging in {scratch})")
        rpms = build_rpms([job for each in builds for job in each.jobs], scratch, work)
        directories = repo_dirs(arches)
        for each in builds:
            mine = [rpm for rpm in rpms if rpm.parent.name.endswith(f"-{each.arch}")]
            check_rpms(mine, each.packages)
            comps = work / f"comps-{each.arch}.xml"
            comps.write_text(comps_xml(groups([p for p in each.packages if p.name.startswith("filler-")])))
            create_repo(mine, comps, work / directories[each.arch])
            log(f"createrepo_c: indexed {len(mine)} {each.arch} packages")
        os.rename(work / f"comps-{arches[0]}.xml", work / "comps.xml")
        repo_dir = "repo" if len(arches) == 1 else "repo-$basearch"
        (work / "yum.conf").write_text(yum_conf(out, repo_dir))
        return publish(work, out, arches)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (created; previous output replaced)")
    parser.add_argument("--size", choices=("small", "realistic", "large"), default="small")
    parser.add_argument("--arch", default=host_arch(),
                        help="architectures, comma-separated, as rpm names them (default: this host's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(os.path.abspath(args.out))
    if any(c.isspace() or c == "," for c in str(out)):
        raise SystemExit(f"--out {out}: dnf config values cannot contain whitespace or commas")
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on SIGTERM too
    lock = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs into the same --out take turns
        arches = list(dict.fromkeys(arch for arch in args.arch.split(",") if arch))
        config = build(out, args.size, arches)
    except BuildError as error:
        log(f"error: {error}")
        return 1
    finally:
        os.close(lock)
    log("done")
    print(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
