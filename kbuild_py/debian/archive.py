"""Debian's archive, read directly over HTTP: suites, package indices, .deb downloads.

The mirror is the one the host's apt already uses (first non-security ``deb`` URI
in /etc/apt/sources.list{,.d/*}), unless KMOD_PY_DEBIAN_MIRROR or --mirror says
otherwise. Indices and packages are cached under the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kbuild_py.debian.suites import BASE_SUITE, SUITES
from kbuild_py.errors import MirrorError, UsageError
from kbuild_py.paths import cache_dir

INDEX_MAX_AGE = 6 * 3600  # seconds an index stays fresh in the cache
HTTP_TIMEOUT = 60


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


def _apt_mirror() -> str | None:
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
            if uri.startswith(("http://", "https://")) and "security" not in uri:
                return uri.rstrip("/")
    return None


def _fetch(url: str, dest: Path, timeout: int = HTTP_TIMEOUT) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    import urllib.error  # lazily: urllib.request pulls in http, ssl and email (~20 ms)
    import urllib.request

    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise MirrorError(f"{url}: HTTP {e.code}", "check the suite name and the mirror") from e
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise MirrorError(
            f"cannot download {url}: {reason}",
            "check the network or set KMOD_PY_DEBIAN_MIRROR / --mirror",
        ) from e
    os.replace(tmp, dest)
    return dest


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    depends: str
    sha256: str
    size: int


def _parse_packages(text: str, wanted: re.Pattern[str]) -> dict[str, list[Package]]:
    out: dict[str, list[Package]] = {}
    for stanza in text.split("\n\n"):
        m = re.match(r"Package: (\S+)", stanza)
        if not m or not wanted.match(m.group(1)):
            continue
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        pkg = Package(
            name=m.group(1),
            version=fields.get("Version", ""),
            filename=fields.get("Filename", ""),
            depends=fields.get("Depends", ""),
            sha256=fields.get("SHA256", ""),
            size=int(fields.get("Size", "0") or 0),
        )
        out.setdefault(pkg.name, []).append(pkg)
    return out


class Archive:
    """Kernel-related packages of one Debian suite (amd64, main)."""

    # 7.x images are split: linux-image-R depends on linux-binary-R (vmlinuz) + linux-modules-R
    _WANTED = re.compile(r"linux-(headers|image|binary|modules)-|busybox-static$")

    def __init__(self, suite: str, mirror: str | None = None, arch: str = "amd64") -> None:
        if suite not in BASE_SUITE:
            raise UsageError(f"unknown Debian suite {suite!r}", f"use one of: {', '.join(SUITES)}")
        self.suite = suite
        self.mirror = mirror_url(mirror)
        self.arch = arch
        self._packages: dict[str, list[Package]] | None = None

    @property
    def packages(self) -> dict[str, list[Package]]:
        if self._packages is None:
            self._packages = self._load_index()
        return self._packages

    def _load_index(self) -> dict[str, list[Package]]:
        key = hashlib.sha1(self.mirror.encode()).hexdigest()[:8]
        path = cache_dir() / "debian" / key / f"{self.suite}_{self.arch}_Packages.xz"
        if not path.is_file() or time.time() - path.stat().st_mtime > INDEX_MAX_AGE:
            url = f"{self.mirror}/dists/{self.suite}/main/binary-{self.arch}/Packages.xz"
            _fetch(url, path)
        parsed = path.with_name(path.name + ".kernel-v2.json")  # the few packages we keep
        if parsed.is_file() and parsed.stat().st_mtime >= path.stat().st_mtime:
            try:
                data = json.loads(parsed.read_text())
                return {n: [Package(**p) for p in ps] for n, ps in data.items()}
            except (ValueError, TypeError):
                pass  # rebuilt below
        try:
            text = lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
        except lzma.LZMAError as e:
            path.unlink(missing_ok=True)
            raise MirrorError(f"corrupt package index for {self.suite}", "run again") from e
        packages = _parse_packages(text, self._WANTED)
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
        """Every kernel release with headers in this suite, newest last."""
        pat = re.compile(rf"linux-headers-(\d\S*-{re.escape(flavour)})$")
        rels = [m.group(1) for n in self.packages if (m := pat.match(n))]
        return sorted(rels, key=_version_key)

    def download(self, name: str) -> Path:
        """Download a package's .deb into the cache (verified by SHA256) and return its path."""
        pkg = self.get(name)
        dest = cache_dir() / "debs" / Path(pkg.filename).name
        if dest.is_file() and dest.stat().st_size == pkg.size:
            return dest
        _fetch(f"{self.mirror}/{pkg.filename}", dest, timeout=600)
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        if pkg.sha256 and digest != pkg.sha256:
            dest.unlink(missing_ok=True)
            raise MirrorError(
                f"{dest.name}: SHA256 mismatch", "run again; the mirror may be syncing"
            )
        return dest


def _version_key(v: str) -> list[tuple[int, object]]:
    """A sort key close enough to dpkg's for kernel package versions and releases."""
    return [(0, int(x)) if x.isdigit() else (1, x) for x in re.findall(r"\d+|[A-Za-z]+|~", v)]


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's data into dest with dpkg-deb (dest is created)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(dest)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except FileNotFoundError as e:
        raise MirrorError("dpkg-deb not found", "apt-get install dpkg") from e
    except subprocess.TimeoutExpired as e:
        raise MirrorError(f"dpkg-deb -x {deb.name} took longer than 600 s", "check the disk") from e
    except subprocess.CalledProcessError as e:
        raise MirrorError(
            f"dpkg-deb -x {deb.name} failed: {e.stderr.decode(errors='replace').strip()}"
        ) from e
    return dest


def suite_for_release(release: str, mirror: str | None = None) -> str | None:
    """Which suite ships linux-headers-<release> (checked in SUITES order), or None."""
    for suite in SUITES:
        try:
            if f"linux-headers-{release}" in Archive(suite, mirror).packages:
                return suite
        except MirrorError:
            continue
    return None
