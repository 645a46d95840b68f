"""One suite of a Debian archive, read like apt does: signed Release first, then verified files.

    suite = SignedSuite("http://deb.debian.org/debian", "bookworm", cache_dir)
    path = suite.index("main/binary-amd64/Packages.xz")   # matches the signed Release
    deb = fetch_verified(http, url, dest, package.digest(), "linux-image-…")  # matches Packages

Nothing reaches the cache before it verified, and what is in the cache is verified again
before it is used (the Release's signature and dates on every load, files by SHA256).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kbuild_py.errors import VerificationError
from kbuild_py.seams.http import Http, NotFound, UrllibHttp
from kbuild_py.trust import gpgv, hashes
from kbuild_py.trust.hashes import Digest
from kbuild_py.trust.release import Release, read_inrelease, read_release

INDEX_MAX_AGE = 6 * 3600  # seconds before a cached Release is fetched again
RELEASE_MAX_BYTES = 16 << 20
RELEASE_TIMEOUT = 120.0

_memo: dict[tuple[str, ...], tuple[tuple[int, ...], Release]] = {}
_memo_lock = threading.Lock()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SignedSuite:
    """`root`/dists/`suite`/: its Release (verified) and the index files it lists."""

    def __init__(
        self,
        root: str,
        suite: str,
        cache: Path,
        *,
        http: Http | None = None,
        keyrings: Sequence[Path] = (gpgv.DEBIAN_KEYRING,),
        now: Callable[[], datetime] = _utcnow,
        max_age: float = INDEX_MAX_AGE,
    ) -> None:
        self.root = root.rstrip("/")
        self.suite = suite
        self.cache = cache  # this suite's own directory
        self.http = http or UrllibHttp()
        self.keyrings = tuple(keyrings)
        self.now = now
        self.max_age = max_age
        self.dists = f"{self.root}/dists/{suite}"

    # --- the Release -------------------------------------------------------------------

    def release(self) -> Release:
        """The suite's Release, verified (once per process while its cached file is unchanged)."""
        key = (self.dists, str(self.cache), *map(str, self.keyrings))
        with _memo_lock:
            seen = _memo.get(key)
        if seen is not None and seen[0] == self._stamp():
            rel = seen[1]
            if rel.valid_until is None or self.now() <= rel.valid_until:
                return rel
        rel = self._cached_release() or self._fetch_release()
        with _memo_lock:
            _memo[key] = (self._stamp(), rel)
        return rel

    def _stamp(self) -> tuple[int, ...]:
        """What the cached Release files look like on disk (a change means: verify again)."""
        out: list[int] = []
        for name in ("InRelease", "Release", "Release.gpg"):
            try:
                st = (self.cache / name).stat()
                out += [st.st_ino, st.st_size, st.st_mtime_ns]
            except OSError:
                out += [-1, -1, -1]
        return tuple(out)

    def _read(self, inrelease: bytes | None, release: bytes | None, sig: bytes | None) -> Release:
        now = self.now()
        if inrelease is not None:
            return read_inrelease(inrelease, self.suite, now, f"{self.dists}/InRelease",
                                  self.keyrings)
        assert release is not None and sig is not None
        return read_release(release, sig, self.suite, now, f"{self.dists}/Release",
                            self.keyrings)

    def _cached_release(self) -> Release | None:
        """The cached Release when it is young enough and still verifies, else None."""
        files = [self.cache / n for n in ("InRelease", "Release", "Release.gpg")]
        try:
            if time.time() - max(f.stat().st_mtime for f in files if f.exists()) > self.max_age:
                return None
            inrel = files[0].read_bytes() if files[0].is_file() else None
            rel = None if inrel else files[1].read_bytes()
            sig = None if inrel else files[2].read_bytes()
            return self._read(inrel, rel, sig)
        except (OSError, ValueError, VerificationError):
            return None  # missing, old, damaged or expired: fetched again

    def _fetch_release(self) -> Release:
        self.cache.mkdir(parents=True, exist_ok=True)
        tag = f".{os.getpid()}.{threading.get_ident()}.new"
        got: list[Path] = []

        def get(name: str) -> bytes:
            tmp = self.cache / (name + tag)
            self.http.download(f"{self.dists}/{name}", tmp, timeout=RELEASE_TIMEOUT,
                               max_bytes=RELEASE_MAX_BYTES)
            got.append(tmp)
            return tmp.read_bytes()

        try:
            try:
                inrel, release, sig = get("InRelease"), None, None
            except NotFound:
                inrel, release, sig = None, get("Release"), get("Release.gpg")
            rel = self._read(inrel, release, sig)
            for stale in ("InRelease", "Release", "Release.gpg"):
                (self.cache / stale).unlink(missing_ok=True)
            for tmp in got:
                os.replace(tmp, self.cache / tmp.name[: -len(tag)])
            return rel
        finally:
            for tmp in got:
                tmp.unlink(missing_ok=True)

    # --- files the Release lists ---------------------------------------------------------

    def index(self, name: str) -> Path:
        """`name` (e.g. main/binary-amd64/Packages.xz), downloaded or cached, verified."""
        rel = self.release()
        digest = rel.digest(name, f"{self.dists}/InRelease")
        dest = self.cache / name.replace("/", "_")
        directory, _, _ = name.rpartition("/")
        url = (f"{self.dists}/{directory}/by-hash/SHA256/{digest.sha256}" if rel.by_hash
               else f"{self.dists}/{name}")
        return fetch_verified(self.http, url, dest, digest, f"{self.dists}/{name}",
                              timeout=600.0)


def fetch_verified(http: Http, url: str, dest: Path, digest: Digest, what: str,
                   *, timeout: float = 600.0) -> Path:
    """dest when it has the digest's size and SHA256; else downloaded from url and verified.

    A copy that does not match (damaged, or from an index that changed) is replaced; the
    download only takes dest's place after it verified."""
    if dest.is_file():
        if hashes.matches(dest, digest):
            return dest
        dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        http.download(url, tmp, timeout=timeout, max_bytes=digest.size)
        hashes.verify(tmp, digest, what)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
