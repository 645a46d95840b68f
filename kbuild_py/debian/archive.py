"""Debian's archive, read directly over HTTP: suites, package indices, .deb downloads.

The mirror is the one the host's apt already uses (first non-security ``deb`` URI
in /etc/apt/sources.list{,.d/*}), unless KMOD_PY_DEBIAN_MIRROR or --mirror says
otherwise; security suites come from the mirror's ``-security`` sibling (MIRROR-security,
or the host's security URI when no mirror was given). Everything is authenticated like
apt does it (kbuild_py.trust: signed InRelease -> Packages SHA256 -> .deb SHA256) and
cached under the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
from dataclasses import asdict
from pathlib import Path

from kbuild_py.debian.suites import (
    BASE_SUITE,
    SUITES,
    arch_of,
    dists,
    flavour_of,
    release_of,
)
from kbuild_py.errors import (
    ExpiredReleaseError,
    InfraError,
    MirrorError,
    UsageError,
    VerificationError,
)
from kbuild_py.paths import cache_dir
from kbuild_py.seams.http import Http
from kbuild_py.seams.process import HostRunner, Runner
from kbuild_py.trust.archive import SignedSuite, fetch_verified
from kbuild_py.trust.packages import Package, parse_packages

__all__ = ["Archive", "KernelSuite", "Package", "current_release", "mirror_url", "security_url",
           "extract_deb", "flavour_of"]


def mirror_url(override: str | None = None) -> str:
    """The Debian mirror to use: --mirror, $KMOD_PY_DEBIAN_MIRROR, else the host's apt mirror."""
    url = override or os.environ.get("KMOD_PY_DEBIAN_MIRROR")
    if url:
        return url.rstrip("/")
    found = _apt_mirror()
    if found:
        return found
    raise MirrorError(
        "no Debian mirror configured (none in /etc/apt/sources.list*)",
        "set KMOD_PY_DEBIAN_MIRROR=http://<mirror>/debian or pass --mirror",
    )


def security_url(override: str | None = None) -> str:
    """The archive root of the -security suites: $KMOD_PY_DEBIAN_SECURITY_MIRROR, else
    MIRROR-security for a given mirror (the layout of deb.debian.org and its mirrors), else the
    host apt's security URI, else the default mirror's -security sibling."""
    url = os.environ.get("KMOD_PY_DEBIAN_SECURITY_MIRROR")
    if url:
        return url.rstrip("/")
    if not (override or os.environ.get("KMOD_PY_DEBIAN_MIRROR")):
        found = _apt_mirror(security=True)
        if found:
            return found
    return mirror_url(override) + "-security"


def _apt_mirror(security: bool = False) -> str | None:
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.glob("*.sources")) + sorted(d.glob("*.list"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            uris = re.findall(r"^URIs:\s*(\S+)", text, re.M)
        else:
            uris = re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
        for uri in uris:
            if uri.startswith(("http://", "https://")) and ("security" in uri) == security:
                return uri.rstrip("/")
    return None


def _known_dist(dist: str) -> bool:
    return dist in BASE_SUITE or any(dist in dists(s) for s in BASE_SUITE)


class Archive:
    """Kernel-related packages of one archive suite (main, one architecture), authenticated:
    `bookworm`, `bookworm-security`, `trixie-backports` ... (KernelSuite reads a release's
    suites together)."""

    # 7.x images are split: linux-image-R depends on linux-binary-R (vmlinuz) + linux-modules-R
    _WANTED = re.compile(r"linux-(headers|image|binary|modules|source)-|busybox-static$")

    def __init__(self, suite: str, mirror: str | None = None, arch: str = "amd64",
                 *, http: Http | None = None) -> None:
        if not _known_dist(suite):
            raise UsageError(f"unknown Debian suite {suite!r}", f"use one of: {', '.join(SUITES)}")
        self.suite = suite
        self.mirror = security_url(mirror) if suite.endswith("-security") else mirror_url(mirror)
        self.arch = arch
        key = hashlib.sha1(self.mirror.encode()).hexdigest()[:8]
        self.signed = SignedSuite(self.mirror, suite, cache_dir() / "debian" / key / suite,
                                  http=http)
        self._packages: dict[str, list[Package]] | None = None

    @property
    def packages(self) -> dict[str, list[Package]]:
        if self._packages is None:
            self._packages = self._load_index()
        return self._packages

    def _load_index(self) -> dict[str, list[Package]]:
        name = f"main/binary-{self.arch}/Packages.xz"
        digest = self.signed.release().digest(name, f"{self.signed.dists}/InRelease")
        # The few stanzas kmod-py uses, parsed once per index (keyed by its signed SHA256).
        parsed = self.signed.cache / f"kernel-packages-{digest.sha256[:32]}.json"
        if parsed.is_file():
            try:
                data = json.loads(parsed.read_text())
                return {n: [Package(**p) for p in ps] for n, ps in data.items()}
            except (ValueError, TypeError):
                pass  # rebuilt below
        path = self.signed.index(name)  # downloaded or cached, matches the signed Release
        try:
            text = lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
        except lzma.LZMAError as e:
            path.unlink(missing_ok=True)
            raise MirrorError(f"corrupt package index for {self.suite}", "run again") from e
        packages = parse_packages(text, self._WANTED)
        for old in self.signed.cache.glob("kernel-packages-*.json"):
            old.unlink(missing_ok=True)
        tmp = parsed.with_name(parsed.name + f".{os.getpid()}")
        tmp.write_text(json.dumps({n: [asdict(p) for p in ps] for n, ps in packages.items()}))
        os.replace(tmp, parsed)
        return packages

    def get(self, name: str) -> Package:
        versions = self.packages.get(name)
        if not versions:
            raise MirrorError(
                f"package {name} not found in Debian {self.suite}",
                f"`kmod-py kernels --suite {self.suite}` lists what it offers",
            )
        return max(versions, key=lambda p: _version_key(p.version))

    def current_release(self, flavour: str = "amd64") -> str:
        """The kernel release the suite's linux-headers-<flavour> metapackage points at."""
        meta = self.get(f"linux-headers-{flavour}")
        m = re.search(rf"linux-headers-(\S+-{re.escape(flavour)})\b", meta.depends)
        if not m:
            raise MirrorError(
                f"cannot read the kernel release from {meta.name} {meta.version} in {self.suite}"
            )
        return m.group(1)

    def releases(self, flavour: str = "amd64") -> list[str]:
        """Every kernel release of one flavour with headers in this suite, newest last."""
        rels = [r for n in self.packages if (r := release_of(n, flavour))]
        return sorted(rels, key=_version_key)

    def download(self, name: str) -> Path:
        """A package's .deb in the cache, verified against the SHA256 its signed index lists
        (a cached copy is checked again; one that does not match is downloaded again)."""
        pkg = self.get(name)
        digest = pkg.digest()  # no SHA256 in the index: refused
        pool = pkg.pool_path()
        return fetch_verified(self.signed.http, f"{self.mirror}/{pool}",
                              cache_dir() / "debs" / pool.name, digest,
                              f"{pool.name} (from {self.suite})")


def _version_key(v: str) -> list[tuple[int, object]]:
    """A sort key close enough to dpkg's for kernel package versions and releases."""
    return [(0, int(x)) if x.isdigit() else (1, x) for x in re.findall(r"\d+|[A-Za-z]+|~", v)]


def extract_deb(deb: Path, dest: Path, runner: Runner | None = None) -> Path:
    """Unpack a .deb's data into dest with dpkg-deb (dest is created), through the host-process
    seam (unit tests pass a fake Runner)."""
    dest.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    try:
        res = (runner or HostRunner()).run(["dpkg-deb", "-x", str(deb), str(dest)],
                                           timeout=600, on_line=lines.append)
    except InfraError as e:  # dpkg-deb missing
        raise MirrorError("dpkg-deb not found", "apt-get install dpkg") from e
    if res.timed_out:
        raise MirrorError(f"dpkg-deb -x {deb.name} took longer than 600 s", "check the disk")
    if res.returncode != 0:
        raise MirrorError(f"dpkg-deb -x {deb.name} failed: {' '.join(lines[-3:]).strip()}")
    return dest


def suite_for_release(release: str, mirror: str | None = None,
                      skipped: list[str] | None = None) -> str | None:
    """Which `debian:` suite ships linux-headers-<release> (in any of its archive suites,
    security updates included; checked in SUITES order), or None. A suite whose Release has
    expired is never read: the search goes on without it and `skipped` gets a note naming it
    (a bad signature still ends the search)."""
    arch = arch_of(release)
    for suite in SUITES:
        try:
            found = KernelSuite(suite, mirror, arch).find(f"linux-headers-{release}")
        except ExpiredReleaseError as err:
            if skipped is not None:
                skipped.append(f"debian:{suite} skipped: {err.message}")
            continue
        if found is not None:
            return suite
    return None


def current_release(suite: str, flavour: str = "amd64", mirror: str | None = None) -> str:
    """The kernel `debian:SUITE/FLAVOUR` means now (security updates included)."""
    return KernelSuite(suite, mirror, arch_of(flavour)).current_release(flavour)


class KernelSuite:
    """What `debian:SUITE` means: the suite and its security and point-update suites, read
    together (the current kernel is the newest linux-headers-<flavour> metapackage among them)."""

    def __init__(self, suite: str, mirror: str | None = None, arch: str = "amd64") -> None:
        if suite not in BASE_SUITE:
            raise UsageError(f"unknown Debian suite {suite!r}", f"use one of: {', '.join(SUITES)}")
        self.suite = suite
        self.arch = arch
        self.parts = [Archive(d, mirror, arch) for d in dists(suite)]

    def _reachable(self, *, strict: bool) -> list[Archive]:
        """The parts whose index loads. The main suite must; an unreachable security or updates
        suite is an error too when strict (a stale kernel would be picked silently)."""
        out = []
        for part in self.parts:
            try:
                part.packages  # noqa: B018 - loads (and caches) the index
            except VerificationError:
                raise  # what Debian did not sign is never "unreachable"
            except MirrorError as err:
                if part is self.parts[0] or strict:
                    raise MirrorError(
                        f"Debian {part.suite} ({self.arch}) is unreachable at {part.mirror}: "
                        f"{err.message}",
                        "check the network, or point KMOD_PY_DEBIAN_MIRROR / "
                        "KMOD_PY_DEBIAN_SECURITY_MIRROR (or --mirror) at a mirror that has it",
                    ) from err
                continue
            out.append(part)
        return out

    def find(self, name: str) -> tuple[Archive, Package] | None:
        """The newest version of a package across the suite's parts, and where it is."""
        best: tuple[Archive, Package] | None = None
        for part in self._reachable(strict=False):
            for pkg in part.packages.get(name, ()):
                if best is None or _version_key(pkg.version) > _version_key(best[1].version):
                    best = (part, pkg)
        return best

    def current_release(self, flavour: str | None = None) -> str:
        """The release Debian's current linux-headers-<flavour> metapackage points at."""
        flavour = flavour or self.arch
        name = f"linux-headers-{flavour}"
        for part in self._reachable(strict=True):
            part.packages  # noqa: B018 - every part must answer before we pick the newest
        found = self.find(name)
        if found is None:
            raise MirrorError(
                f"package {name} not found in Debian {self.suite} ({', '.join(dists(self.suite))})",
                f"`kmod-py kernels --suite {self.suite}` lists what it offers",
            )
        return found[0].current_release(flavour)

    def releases(self, flavour: str | None = None) -> list[tuple[str, str]]:
        """(release, archive suite) of every kernel with headers, newest last."""
        flavour = flavour or self.arch
        seen: dict[str, str] = {}
        for part in self._reachable(strict=False):
            for rel in part.releases(flavour):
                seen.setdefault(rel, part.suite)
        return sorted(seen.items(), key=lambda item: _version_key(item[0]))

    def download(self, name: str) -> Path:
        found = self.find(name)
        if found is None:
            raise MirrorError(
                f"package {name} not found in Debian {', '.join(dists(self.suite))} ({self.arch})",
                f"`kmod-py kernels --suite {self.suite}` lists what it offers",
            )
        return found[0].download(name)
