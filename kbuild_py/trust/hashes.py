"""Sizes and SHA256 digests: what an index promises about a file, and checking a file against it."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.errors import VerificationError

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Digest:
    """A file's expected SHA256 (lower-case hex) and size in bytes."""

    sha256: str
    size: int

    @classmethod
    def parse(cls, sha256: str, size: str | int, what: str) -> Digest:
        """From index fields; a missing or malformed hash or size is refused."""
        digest = (sha256 or "").strip().lower()
        if not _HEX64.fullmatch(digest):
            raise VerificationError(
                f"{what}: no SHA256 in the index" if not digest
                else f"{what}: malformed SHA256 {digest[:70]!r} in the index",
                "kmod-py only uses files whose SHA256 a signed index lists",
            )
        try:
            n = int(str(size).strip())
        except ValueError:
            n = -1
        if n < 0:
            raise VerificationError(f"{what}: malformed size {size!r} in the index")
        return cls(digest, n)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def problem(path: Path, digest: Digest) -> str | None:
    """Why `path` is not the file `digest` describes (size first: it costs no reading), or None."""
    try:
        size = os.stat(path).st_size
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if size != digest.size:
        return f"size {size} is not the {digest.size} bytes the index lists"
    got = sha256_file(path)
    if got != digest.sha256:
        return f"SHA256 {got[:16]}… is not the {digest.sha256[:16]}… the index lists"
    return None


def matches(path: Path, digest: Digest) -> bool:
    return problem(path, digest) is None


def verify(path: Path, digest: Digest, what: str) -> None:
    """Raise VerificationError naming `what` unless `path` has the digest's size and SHA256."""
    why = problem(path, digest)
    if why:
        raise VerificationError(
            f"{what} did not verify: {why}",
            "the mirror served a modified file; use a trusted mirror (--mirror URL)",
        )
