"""Debian kernel images (linux-image-<release>): fetched once, cached per user.

cache_dir()/kernels/<release>/ holds the unpacked package: boot/vmlinuz-<release>
and lib/modules/<release>/ (the kernel's own modules). Fetching prefers the host's
apt (which also knows security updates), then the suites of the Debian mirror.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.debian import archive as debian
from kbuild_py.errors import MirrorError
from kbuild_py.paths import cache_dir


@dataclass(frozen=True)
class KernelImage:
    release: str
    root: Path  # the unpacked package

    @property
    def vmlinuz(self) -> Path:
        classic = self.root / "boot" / f"vmlinuz-{self.release}"
        split = self.modules_dir / "vmlinuz"  # 7.x linux-binary-R: /usr/lib/modules/R/vmlinuz
        return split if not classic.is_file() and split.is_file() else classic

    @property
    def modules_dir(self) -> Path:
        for base in ("lib", "usr/lib"):
            d = self.root / base / "modules" / self.release
            if d.is_dir():
                return d
        return self.root / "lib" / "modules" / self.release

    def module_files(self) -> list[Path]:
        """Every in-tree module file (.ko, .ko.xz, .ko.zst, .ko.gz), sorted."""
        kernel = self.modules_dir / "kernel"
        return sorted(
            p
            for p in kernel.rglob("*")
            if p.name.endswith((".ko", ".ko.xz", ".ko.zst", ".ko.gz")) and p.is_file()
        )


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _apt_download(package: str, into: Path) -> Path | None:
    """`apt-get download` through the host's apt, or None when apt does not know it."""
    if not shutil.which("apt-get"):
        return None
    try:
        proc = subprocess.run(
            ["apt-get", "download", "-q", package],
            cwd=into,
            capture_output=True,
            timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    debs = sorted(into.glob(f"{package}_*.deb"))
    return debs[0] if proc.returncode == 0 and debs else None


def fetch_deb(package: str, suite: str | None = None, mirror: str | None = None) -> Path:
    """A package's .deb: host apt first, else the given suite (or the first suite that has it)."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    if suite is None:
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            got = _apt_download(package, Path(tmp))
            if got:
                dest = debs / got.name
                os.replace(got, dest)
                return dest
    suites = [suite] if suite else list(debian.SUITES)
    last: MirrorError | None = None
    for s in suites:
        try:
            return debian.Archive(s, mirror).download(package)
        except MirrorError as err:
            last = err
    raise MirrorError(
        f"package {package} not found (host apt and Debian {', '.join(suites)})",
        "check the release with `kmod-py kernels --suite SUITE`",
    ) from last


def _split_image_parts(release: str, suite: str | None, mirror: str | None) -> list[Path]:
    """Debian 7.x: linux-image-R is a metapackage over linux-binary-R and linux-modules-R."""
    return [
        fetch_first(choices, suite, mirror)
        for choices in (
            (f"linux-binary-{release}", f"linux-binary-unsigned-{release}"),
            (f"linux-modules-{release}",),
        )
    ]


def fetch_first(packages: tuple[str, ...], suite: str | None, mirror: str | None) -> Path:
    """The .deb of the first of `packages` that can be fetched (else the first one's error)."""
    first: MirrorError | None = None
    for package in packages:
        try:
            return fetch_deb(package, suite, mirror)
        except MirrorError as err:
            first = first or err
    assert first is not None
    raise first


def fetch_kernel(release: str, suite: str | None = None, mirror: str | None = None) -> KernelImage:
    """Download and unpack linux-image-<release> (unsigned variant as fallback), cached."""
    dest = cache_dir() / "kernels" / release
    image = KernelImage(release, dest)
    with _locked(cache_dir() / "kernels" / f".{release}.lock"):
        if (dest / ".complete").is_file() and image.vmlinuz.is_file():
            return image
        deb = fetch_first(
            (f"linux-image-{release}", f"linux-image-{release}-unsigned"), suite, mirror
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".{release}.", dir=dest.parent))
        try:
            debian.extract_deb(deb, tmp)
            if not KernelImage(release, tmp).vmlinuz.is_file():
                for part in _split_image_parts(release, suite, mirror):
                    debian.extract_deb(part, tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        (dest / ".complete").write_text(deb.name + "\n")
    if not image.vmlinuz.is_file():
        raise MirrorError(f"linux-image-{release} has no boot/vmlinuz-{release}")
    return image
