"""Debian kernel images (linux-image-<release>): fetched once, cached per user.

cache_dir()/kernels/<release>/ holds the unpacked package: boot/vmlinuz-<release>
and lib/modules/<release>/ (the kernel's own modules). Packages come from the Debian
mirror (the host's, or --mirror), authenticated like apt does (kbuild_py.trust); the
unpacked tree is trusted as part of the private cache directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.debian import archive as debian
from kbuild_py.debian.suites import SUITES, arch_of
from kbuild_py.errors import ExpiredReleaseError, MirrorError, VerificationError
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


def fetch_deb(
    package: str, suite: str | None = None, mirror: str | None = None, arch: str | None = None
) -> Path:
    """A package's .deb for `arch` (default: the one its name ends in, else amd64) from the
    Debian mirror, authenticated (kbuild_py.trust): from debian:`suite` (the suite with its
    security and point-update suites), else from the first suite that has it (SUITES order).
    A .deb or index that does not verify raises VerificationError, never "not found"."""
    arch = arch or arch_of(package)
    suites = [suite] if suite else list(SUITES)
    unreachable: MirrorError | None = None
    expired: list[str] = []
    for name in suites:
        try:
            found = debian.KernelSuite(name, mirror, arch).find(package)
        except ExpiredReleaseError:
            if suite:
                raise  # debian:SUITE asked for: never read an expired Release
            expired.append(name)  # searching: that suite is skipped, named below
            continue
        except VerificationError:
            raise
        except MirrorError as err:  # that suite is not served here: try the next
            unreachable = unreachable or err
            continue
        if found is not None:
            return found[0].download(package)
    raise MirrorError(
        f"package {package} ({arch}) not found in Debian {', '.join(suites)} "
        "(security and point-update suites included)",
        "check the release with `kmod-py kernels --suite SUITE`"
        + (f" (skipped, Release expired: {', '.join(expired)})" if expired else ""),
    ) from unreachable


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
