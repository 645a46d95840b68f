"""A corpus of real Debian `-dkms` source packages, fetched once per machine and cached.

Each package is `apt-get download`ed from the host's Debian suite and unpacked with
`dpkg-deb -x` under $KMOD_PY_CACHE/dkms-corpus/<deb>/; its source is the one directory under
usr/src/ (holding dkms.conf). Used by tests/test_dkms_corpus.py and bench/bench_dkms.py.
Not in the corpus on purpose (kept aside as a held-out check): ddcci, dahdi, jool,
xtables-addons, digimend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Fast enough together for a test of a few minutes; the mix covers the MAKE forms seen in
# Debian: none (dkms's default), `make -C $kernel_source_dir M=$dkms_tree/...` with extra
# variables (tp-smapi's HDAPS=1: 3 modules), the package's own Makefile (v4l2loopback,
# dm-writeboost), `KERNELDIR=... make driver` into a subdirectory (openrazer, which fails
# on 6.1.0-5x: both tools must fail), several modules, BUILD_EXCLUSIVE_CONFIG.
PACKAGES = (
    "acpi-call-dkms",
    "bbswitch-dkms",
    "v4l2loopback-dkms",
    "vpoll-dkms",
    "tp-smapi-dkms",
    "rapiddisk-dkms",
    "nat-rtsp-dkms",
    "dm-writeboost-dkms",
    "openrazer-driver-dkms",
)
FETCH_TIMEOUT = 300


class CorpusUnavailable(Exception):
    pass


def corpus_dir() -> Path:
    base = Path(os.environ.get("KMOD_PY_CACHE") or Path.home() / ".cache" / "kmod-py")
    d = base / "dkms-corpus"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cached(root: Path, package: str) -> Path | None:
    for deb in sorted(root.glob(f"{package}_*.deb")):
        src = root / (deb.name + ".d") / "usr" / "src"
        dirs = [d for d in src.iterdir() if (d / "dkms.conf").is_file()] if src.is_dir() else []
        if len(dirs) == 1:
            return dirs[0]
    return None


def fetch(package: str) -> Path:
    """The unpacked source directory (usr/src/NAME-VERSION) of one -dkms package."""
    root = corpus_dir()
    found = _cached(root, package)
    if found:
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise CorpusUnavailable("apt-get and dpkg-deb are needed to fetch the corpus")
    res = subprocess.run(
        ["apt-get", "download", "-q", package],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=FETCH_TIMEOUT,
    )
    if res.returncode != 0:
        raise CorpusUnavailable(f"apt-get download {package}: {res.stderr.strip()[-300:]}")
    for deb in sorted(root.glob(f"{package}_*.deb")):
        out = root / (deb.name + ".d")
        if not out.is_dir():
            tmp = root / (deb.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, timeout=120)
            tmp.rename(out)
    found = _cached(root, package)
    if not found:
        raise CorpusUnavailable(f"{package}: no usr/src/*/dkms.conf in the package")
    return found


def fetch_all() -> dict[str, Path]:
    return {p: fetch(p) for p in PACKAGES}


def fresh_copy(src: Path, parent: Path) -> Path:
    """A writable copy of a package source (the cache stays pristine)."""
    dest = parent / src.name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, symlinks=True)
    return dest


def dkms_build(src: Path, release: str, work: Path, timeout: float = 900) -> tuple[int, set[str]]:
    """A real `dkms build` of a source directory in a private dkms tree (nothing is added to
    /var/lib/dkms or /usr/src). Returns (exit code, module names it built)."""
    name, version = read_name_version(src)
    tree, sources = work / "dkms-tree", work / "dkms-src"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    sources.mkdir(parents=True, exist_ok=True)
    copy = sources / f"{name}-{version}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(src, copy, symlinks=True)
    res = subprocess.run(
        ["dkms", "build", "-m", name, "-v", version, "-k", release,
         "--dkmstree", str(tree), "--sourcetree", str(sources)],
        capture_output=True, text=True, timeout=timeout,
    )
    built = tree / name / version / release
    mods = {
        p.name.split(".ko")[0].replace("-", "_") for p in built.rglob("*.ko*")
    } if built.is_dir() else set()
    return res.returncode, mods


def read_name_version(src: Path) -> tuple[str, str]:
    """PACKAGE_NAME and PACKAGE_VERSION, as bash reads them (tests only: a plain bash)."""
    out = subprocess.run(
        ["bash", "-c", '. ./dkms.conf >/dev/null 2>&1; printf "%s\\n%s\\n" '
         '"${PACKAGE_NAME%$\'\\r\'}" "${PACKAGE_VERSION%$\'\\r\'}"'],
        cwd=src, capture_output=True, text=True, timeout=30,
        env={**os.environ, "kernelver": os.uname().release, "dkms_tree": "/var/lib/dkms"},
    ).stdout.splitlines()
    return out[0], out[1]
