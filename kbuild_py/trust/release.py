"""A suite's Release file: signature (gpgv.py), deb822 fields (python-debian), freshness.

`read_inrelease` / `read_release` return a Release only when its signature verified, it
names the suite that was asked for, its Date is not in the future and its Valid-Until
(security and backports suites carry one) has not passed. Its SHA256 table is what every
index file is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kbuild_py.errors import ExpiredReleaseError, VerificationError
from kbuild_py.trust import gpgv
from kbuild_py.trust.hashes import Digest

# A Release dated this far ahead of our clock is refused (apt: Acquire::Max-FutureTime).
MAX_FUTURE = timedelta(minutes=10)
_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
_SIG = b"-----BEGIN PGP SIGNATURE-----"
_END = b"-----END PGP SIGNATURE-----"


@dataclass(frozen=True)
class Release:
    suite: str
    codename: str
    date: datetime
    valid_until: datetime | None
    by_hash: bool  # Acquire-By-Hash: files also at DIR/by-hash/SHA256/<hex>
    files: Mapping[str, Digest]  # "main/binary-amd64/Packages.xz" -> its SHA256 and size
    signers: tuple[str, ...] = ()

    def digest(self, name: str, what: str) -> Digest:
        d = self.files.get(name)
        if d is None:
            raise VerificationError(f"{what}: {name} is not listed in the signed Release",
                                    "check the suite and architecture")
        return d


def _date(value: str | None, field: str, what: str) -> datetime | None:
    from email.utils import parsedate_to_datetime  # lazily, like python-debian below

    if value is None:
        return None
    try:
        d = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        d = None
    if d is None:
        raise VerificationError(f"{what}: unreadable {field} {value.strip()[:40]!r}")
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def parse_release(text: str, what: str, signers: Sequence[str] = ()) -> Release:
    """The fields kmod-py relies on, from a Release file's (already verified) text."""
    # Imported here: python-debian costs ~130 ms, and `kmod-py check` never needs it.
    from debian.deb822 import Release as Deb822Release

    rel = Deb822Release(text)
    date = _date(rel.get("Date"), "Date", what)
    if date is None:
        raise VerificationError(f"{what}: no Date field")
    files: dict[str, Digest] = {}
    for entry in rel.get("SHA256", []):
        name = entry.get("name", "")
        files[name] = Digest.parse(entry.get("sha256", ""), entry.get("size", ""),
                                   f"{what}: {name}")
    if not files:
        raise VerificationError(f"{what}: no SHA256 file list", "apt would refuse it too")
    return Release(
        suite=rel.get("Suite", "").strip(),
        codename=rel.get("Codename", "").strip(),
        date=date,
        valid_until=_date(rel.get("Valid-Until"), "Valid-Until", what),
        by_hash=rel.get("Acquire-By-Hash", "").strip().lower() == "yes",
        files=files,
        signers=tuple(signers),
    )


def check(rel: Release, suite: str, now: datetime, what: str) -> None:
    """Refuse a Release for another suite, dated in the future, or past its Valid-Until."""
    if suite not in (rel.suite, rel.codename):
        raise VerificationError(
            f"{what} is for suite {rel.codename or rel.suite!r}, not {suite!r}",
            "the mirror serves another suite under this name; use a trusted mirror",
        )
    if rel.date > now + MAX_FUTURE:
        raise VerificationError(
            f"{what} is dated {rel.date:%Y-%m-%d %H:%M} UTC, in the future",
            "check this machine's clock (date -u)",
        )
    if rel.valid_until is not None and now > rel.valid_until:
        raise ExpiredReleaseError(
            f"{what} expired on {rel.valid_until:%Y-%m-%d %H:%M} UTC (Valid-Until): "
            "the mirror is stale or replays an old Release",
            "use an up-to-date mirror (--mirror URL or KMOD_PY_DEBIAN_MIRROR)",
        )


def clearsigned_shape(data: bytes, what: str) -> None:
    """One clearsigned message and nothing around it (apt refuses anything else too)."""
    body = data.lstrip(b"\n")
    if not body.startswith(_BEGIN + b"\n"):
        raise VerificationError(f"{what}: not a clearsigned file",
                                "the mirror is not serving Debian's signed archive")
    if data.count(_BEGIN) != 1 or data.count(_SIG) != 1 or data.count(_END) != 1:
        raise VerificationError(f"{what}: more than one signed message or signature")
    if data[data.index(_END) + len(_END):].strip():
        raise VerificationError(f"{what}: data after the signature")


def read_inrelease(data: bytes, suite: str, now: datetime, what: str,
                   keyrings: Sequence[Path] = (gpgv.DEBIAN_KEYRING,)) -> Release:
    clearsigned_shape(data, what)
    checked = gpgv.verify_clearsigned(data, what, keyrings)
    rel = parse_release(_text(checked.signed, what), what, checked.signers)
    check(rel, suite, now, what)
    return rel


def read_release(data: bytes, signature: bytes, suite: str, now: datetime, what: str,
                 keyrings: Sequence[Path] = (gpgv.DEBIAN_KEYRING,)) -> Release:
    checked = gpgv.verify_detached(data, signature, what, keyrings)
    rel = parse_release(_text(checked.signed, what), what, checked.signers)
    check(rel, suite, now, what)
    return rel


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerificationError(f"{what}: not UTF-8 text") from e
