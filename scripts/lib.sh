# shellcheck shell=bash
# Shared set-up for scripts/test, scripts/demo, scripts/bench and scripts/fresh-machine: idempotent, for a
# fresh Debian/Ubuntu box.
# Source it; it defines functions and changes nothing until they are called.

MKIMAGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$MKIMAGE_ROOT/.venv"
APT_PACKAGES=(dnf rpm createrepo-c docker.io busybox-static python3 python3-venv tar coreutils util-linux iptables
              skopeo docker-registry apache2-utils openssl podman runc uidmap slirp4netns fuse-overlayfs
              containernetworking-plugins conmon catatonit isal bubblewrap gcc libc6-dev gnupg diffoscope-minimal
              qemu-user-static binfmt-support)
# The architecture the tests build besides this host's (rpm's name), run under qemu-user through binfmt_misc; its
# programs come from Debian's packages for it (scripts/make-test-repo.py --arch), so dpkg must know it.
if [ "$(uname -m)" = aarch64 ]; then FOREIGN_ARCH=x86_64; FOREIGN_DEB_ARCH=amd64; else FOREIGN_ARCH=aarch64; FOREIGN_DEB_ARCH=arm64; fi
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/mkimage-dockerd.log}
STARTED_DOCKERD_PID=""

say() { printf '==> %s\n' "$*" >&2; }

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: run this as root (sudo $0): mkimage makes device nodes and installs into a chroot" >&2
        exit 2
    fi
}

ensure_packages() {  # ensure_packages PACKAGE...: installs those that are missing
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "error: missing ${missing[*]}; install them with your package manager" >&2
        exit 2
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian's own interpreter (/usr/bin/python3, from the apt package python3), not whichever python3 comes first
# on PATH (a pyenv shim, a /usr/local build): the venv, and so mkimage and its tests, run on the Python a
# fresh machine has. Only a host without it (not Debian) takes PATH's python3.
venv_python() {
    if [ -x /usr/bin/python3 ]; then
        printf '/usr/bin/python3\n'
    else
        command -v python3
    fi
}

# Was $VENV made by this interpreter? Its pyvenv.cfg says: `executable` (the resolved interpreter, Python
# 3.11+), else `home` (the interpreter's directory).
venv_made_by() {  # venv_made_by PYTHON
    local cfg="$VENV/pyvenv.cfg" executable home
    [ -f "$cfg" ] || return 1
    executable=$(sed -n 's/^executable *= *//p' "$cfg")
    home=$(sed -n 's/^home *= *//p' "$cfg")
    if [ -n "$executable" ]; then
        [ "$(readlink -f "$executable")" = "$(readlink -f "$1")" ]
    else
        [ "$home" = "$(dirname "$1")" ] || [ "$home" = "$(dirname "$(readlink -f "$1")")" ]
    fi
}

ensure_foreign_dpkg_arch() {
    dpkg --print-foreign-architectures | grep -qx "$FOREIGN_DEB_ARCH" && return 0
    say "dpkg --add-architecture $FOREIGN_DEB_ARCH (the $FOREIGN_ARCH test repository is made from Debian's packages)"
    dpkg --add-architecture "$FOREIGN_DEB_ARCH"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
}

ensure_binfmt() {
    # qemu-user-static registers its interpreters with flags PF, but only where binfmt_misc is mounted and
    # update-binfmts could run (not in a fresh container or chroot): do both here.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        say "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if ! head -n 1 "/proc/sys/fs/binfmt_misc/qemu-$FOREIGN_ARCH" 2>/dev/null | grep -qx enabled; then
        say "update-binfmts --enable qemu-$FOREIGN_ARCH"
        update-binfmts --enable "qemu-$FOREIGN_ARCH"
    fi
}

ensure_venv() {
    local python
    python=$(venv_python)
    if [ -x "$VENV/bin/python" ] && ! venv_made_by "$python"; then
        say "$VENV was made by another Python than $python: making it anew"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV with $python"
        "$python" -m venv "$VENV"
    fi
    say "pip install -e .[test]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${MKIMAGE_ROOT}[test]"
}

docker_ready() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

stop_started_dockerd() {
    if [ -n "$STARTED_DOCKERD_PID" ]; then
        say "stopping the dockerd this script started"
        kill "$STARTED_DOCKERD_PID" 2>/dev/null || true
        wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
        STARTED_DOCKERD_PID=""
    fi
}

ensure_dockerd() {
    docker_ready && return 0
    say "starting dockerd (log: $DOCKERD_LOG)"
    dockerd >"$DOCKERD_LOG" 2>&1 &
    STARTED_DOCKERD_PID=$!
    trap stop_started_dockerd EXIT
    local waited=0
    until docker_ready; do
        if ! kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || [ $waited -ge 60 ]; then
            echo "error: dockerd did not start; its log:" >&2
            tail -n 30 "$DOCKERD_LOG" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

setup_all() {
    require_root
    ensure_foreign_dpkg_arch
    ensure_packages "${APT_PACKAGES[@]}"
    ensure_binfmt
    ensure_venv
    ensure_dockerd
}
