"""Signed archive data for the trust tests: a throwaway OpenPGP key, forged Release files.

The key is made with the real gpg in a private GNUPGHOME (ed25519, no passphrase) and its
public half exported as a keyring file gpgv can use. Its agent is stopped on close().
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

REAL = Path(__file__).parent / "data" / "trust"
REAL_INRELEASE = REAL / "bookworm-security.InRelease"
# The same suite's Release and a Release.gpg the mirror had left from an older Release:
# a real pair whose signature is BAD.
REAL_RELEASE = REAL / "bookworm-security.Release"
REAL_STALE_SIG = REAL / "bookworm-security.Release.gpg"
# Its Date and Valid-Until (see the file)
REAL_DATE = datetime(2026, 11, 30, 0, 22, 33, tzinfo=UTC)
REAL_VALID_UNTIL = datetime(2026, 12, 7, 0, 22, 33, tzinfo=UTC)
# The keys that signed it (gpgv VALIDSIG fingerprints: bullseye and bookworm security keys)
REAL_SIGNERS = ("ED541312A33F1128F10B1C6C54404762BBB6E853",
                "B0CAB9266E8C3929798B3EEEBDE6D2B9216EC7A8")


class ThrowawayKey:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._gpg("--quick-generate-key", "kmod-py test <forged@example.invalid>",
                  "ed25519", "sign", "never")
        self.keyring = home / "forged-keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export"))

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        gpg = shutil.which("gpg")
        assert gpg, "gpg (gnupg) is needed for the trust tests"
        proc = subprocess.run(
            [gpg, "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback",
             "--passphrase", "", *args],
            input=data, capture_output=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    def clearsign(self, text: str, *, digest: str = "SHA256") -> bytes:
        return self._gpg("--digest-algo", digest, "--clearsign", data=text.encode())

    def detach_sign(self, data: bytes) -> bytes:
        return self._gpg("--detach-sign", data=data)

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run([gpgconf, "--homedir", str(self.home), "--kill", "all"],
                           capture_output=True, timeout=60, check=False)


def http_date(d: datetime) -> str:
    return d.strftime("%a, %d %b %Y %H:%M:%S UTC")


def release_text(files: dict[str, bytes], *, suite: str = "bookworm", codename: str | None = None,
                 date: datetime | None = None, valid_until: datetime | None = None,
                 by_hash: bool = True) -> str:
    """A Release file listing `files` (name -> content) with their SHA256 and size."""
    date = date or datetime.now(UTC) - timedelta(hours=1)
    lines = ["Origin: Debian", "Label: Debian", f"Suite: {suite}",
             f"Codename: {codename or suite}", f"Date: {http_date(date)}"]
    if valid_until:
        lines.append(f"Valid-Until: {http_date(valid_until)}")
    if by_hash:
        lines.append("Acquire-By-Hash: yes")
    lines += ["Architectures: amd64", "Components: main", "SHA256:"]
    for name, body in files.items():
        lines.append(f" {hashlib.sha256(body).hexdigest()} {len(body):>16} {name}")
    return "\n".join(lines) + "\n"


def stanza(name: str, version: str, filename: str, body: bytes | None, *,
           depends: str = "", sha256: bool = True) -> str:
    fields = [f"Package: {name}", f"Version: {version}", "Architecture: amd64"]
    if depends:
        fields.append(f"Depends: {depends}")
    fields.append(f"Filename: {filename}")
    if body is not None:
        fields.append(f"Size: {len(body)}")
        if sha256:
            fields.append(f"SHA256: {hashlib.sha256(body).hexdigest()}")
    fields.append("Description: test package")
    return "\n".join(fields) + "\n"


def packages_xz(*stanzas: str) -> bytes:
    return lzma.compress("\n".join(stanzas).encode())
