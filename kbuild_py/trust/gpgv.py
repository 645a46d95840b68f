"""The gpgv seam: check OpenPGP signatures against a keyring file, read gpgv's status lines.

gpgv (GnuPG's verify-only tool, the one apt uses) trusts every key in the keyrings it is
given and nothing else; no GnuPG home directory or agent is involved. A signature counts
when gpgv reports both GOODSIG and VALIDSIG for it with a strong hash; a BADSIG anywhere
refuses the file (as apt does). Signatures by keys outside the keyring (ERRSIG/NO_PUBKEY,
Debian signs each Release with several keys) and by expired or revoked keys do not count.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.errors import InfraError, VerificationError

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
GPGV_TIMEOUT = 60
# OpenPGP hash algorithm ids apt refuses: MD5, SHA1, RIPEMD160.
WEAK_HASHES = {"1", "2", "3"}


@dataclass(frozen=True)
class Checked:
    signed: bytes  # the signed content (clearsigned: without the armour)
    signers: tuple[str, ...]  # fingerprints of the keys whose signatures counted


def good_signers(status: str) -> tuple[list[str], list[str]]:
    """(fingerprints of counted signatures, reasons others did not count) from gpgv's status."""
    good: list[str] = []
    bad: list[str] = []
    pending_good = False
    for line in status.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "[GNUPG:]":
            continue
        kind = parts[1]
        if kind == "NEWSIG":
            pending_good = False
        elif kind == "GOODSIG":
            pending_good = True
        elif kind == "VALIDSIG" and pending_good and len(parts) >= 10:
            fpr, hash_algo = parts[2], parts[9]
            if hash_algo in WEAK_HASHES:
                bad.append(f"signature by {fpr} uses a weak hash (algorithm {hash_algo})")
            else:
                good.append(fpr)
            pending_good = False
        elif kind == "BADSIG":
            bad.append(f"BAD signature from {' '.join(parts[2:3])}")
        elif kind in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            bad.append(f"{kind} {' '.join(parts[2:3])}")
    return good, bad


def _run(args: Sequence[str], keyrings: Sequence[Path]) -> str:
    """gpgv's status lines. Its exit code is not used: it is 2 whenever one of several
    signatures is by a key outside the keyring, which every Debian Release has."""
    exe = shutil.which("gpgv")
    if exe is None:
        raise InfraError("gpgv not found: cannot check the Debian archive's signatures",
                         "apt-get install gpgv (make setup does)")
    for k in keyrings:
        if not k.is_file():
            raise InfraError(f"keyring {k} not found: cannot check the Debian archive's signatures",
                             "apt-get install debian-archive-keyring (make setup does)")
    argv = [exe, "--status-fd", "1"]
    for k in keyrings:
        argv += ["--keyring", str(k)]
    try:
        proc = subprocess.run([*argv, *args], capture_output=True, timeout=GPGV_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise InfraError(f"gpgv took longer than {GPGV_TIMEOUT} s") from e
    return proc.stdout.decode("utf-8", "replace")


def _judge(status: str, what: str, keyrings: Sequence[Path]) -> tuple[str, ...]:
    good, bad = good_signers(status)
    if any(b.startswith("BAD") for b in bad):
        raise VerificationError(f"{what}: {bad[0]}", "the file was modified after it was signed")
    if not good:
        names = ", ".join(str(k) for k in keyrings)
        why = f" ({bad[0]})" if bad else ""
        raise VerificationError(
            f"{what}: no good signature by a key in {names}{why}",
            "the mirror does not serve Debian's signed archive; use a trusted one (--mirror URL)",
        )
    return tuple(good)


def verify_clearsigned(data: bytes, what: str, keyrings: Sequence[Path] = (DEBIAN_KEYRING,)
                       ) -> Checked:
    """The signed content of a clearsigned file (InRelease), once its signature verified."""
    with tempfile.TemporaryDirectory(prefix="kmod-py-gpgv-") as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "signed"
        src.write_bytes(data)
        status = _run(["--output", str(out), str(src)], keyrings)
        signers = _judge(status, what, keyrings)
        if not out.is_file():
            raise VerificationError(f"{what}: gpgv wrote no signed content")
        return Checked(out.read_bytes(), signers)


def verify_detached(data: bytes, signature: bytes, what: str,
                    keyrings: Sequence[Path] = (DEBIAN_KEYRING,)) -> Checked:
    """`data` unchanged, once its detached signature (Release.gpg) verified."""
    with tempfile.TemporaryDirectory(prefix="kmod-py-gpgv-") as tmp:
        src, sig = Path(tmp) / "data", Path(tmp) / "data.gpg"
        src.write_bytes(data)
        sig.write_bytes(signature)
        status = _run([str(sig), str(src)], keyrings)
        return Checked(data, _judge(status, what, keyrings))
