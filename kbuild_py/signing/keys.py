"""Signing keys and certificates: where they are, making them, reading them.

A key pair is a private key (PEM, what scripts/sign-file reads) and an X.509 certificate
(DER, what `mokutil --import` enrols; PEM is read too). Where one comes from, first match:
--key/--cert options, kmod.toml's [sign] table, DKMS's /var/lib/dkms/mok.key + mok.pub
(so modules built by kmod-py and by DKMS are trusted through one enrolled key), kmod-py's
own pair made by `kmod-py keygen` ($XDG_DATA_HOME/kmod-py/signing/). Nothing here ever
overwrites a key or a certificate.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbuild_py.check.elf.signature import serial_magnitude
from kbuild_py.errors import UsageError
from kbuild_py.kernels.buildtree import parse_kconfig

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

DKMS_DIR = Path("/var/lib/dkms")
KEY_NAME, CERT_NAME = "mok.key", "mok.der"
DEFAULT_BITS = 2048  # what DKMS and shim's MokManager use; the kernel accepts 4096 too
DEFAULT_DAYS = 36500  # the kernel does not look at validity dates of module-signing keys
# Digest names as CONFIG_MODULE_SIG_HASH spells them -> cryptography's hash classes
HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512")


@dataclass(frozen=True)
class KeyPair:
    key: Path
    cert: Path
    origin: str  # "options", "kmod.toml", "DKMS", "kmod-py"


def signing_dir() -> Path:
    """kmod-py's own key pair lives here: $XDG_DATA_HOME/kmod-py/signing (~/.local/share/...)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(base) / "kmod-py" / "signing"


def default_pair() -> KeyPair:
    d = signing_dir()
    return KeyPair(d / KEY_NAME, d / CERT_NAME, "kmod-py")


def dkms_pair(root: Path = DKMS_DIR) -> KeyPair | None:
    """DKMS's key pair when both files are there (DKMS makes them on its first signed build)."""
    pair = KeyPair(root / "mok.key", root / "mok.pub", "DKMS")
    return pair if pair.key.is_file() and pair.cert.is_file() else None


def keygen_pair(key: Path | None, cert: Path | None, dkms_root: Path = DKMS_DIR) -> KeyPair:
    """Where `kmod-py keygen` writes: the paths given, else DKMS's pair when it exists
    (reused, never replaced), else kmod-py's own location."""
    if key is not None or cert is not None:
        if key is None or cert is None:
            raise UsageError("--key and --cert go together", "pass both paths, or neither")
        return KeyPair(key, cert, "options")
    return dkms_pair(dkms_root) or default_pair()


def find_pair(
    key: Path | None,
    cert: Path | None,
    configured: KeyPair | None = None,
    dkms_root: Path = DKMS_DIR,
) -> KeyPair:
    """The key pair to sign with: options, else kmod.toml [sign], else DKMS's, else kmod-py's."""
    if key is not None or cert is not None:
        if key is None or cert is None:
            raise UsageError(
                "--key and --cert go together", "pass both, e.g. --key mok.key --cert mok.der"
            )
        pair = KeyPair(key, cert, "options")
    else:
        own = default_pair()
        pair = configured or dkms_pair(dkms_root) or own
        if pair is own and not (own.key.is_file() and own.cert.is_file()):
            raise UsageError(
                "no signing key: none given, none in kmod.toml [sign], no DKMS key in "
                f"{dkms_root}, none made by kmod-py keygen in {own.key.parent}",
                "run `kmod-py keygen` (then enrol the certificate), or pass --key KEY --cert CERT",
            )
    for what, path in (("key", pair.key), ("certificate", pair.cert)):
        if not path.is_file():
            raise UsageError(
                f"signing {what} {path} ({pair.origin}) does not exist",
                "run `kmod-py keygen` to make a key pair, or fix the path",
            )
    return pair


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    """What a certificate says that matters for module signing."""

    path: Path
    subject: str  # RFC 4514
    issuer_cn: str  # what modinfo shows as `signer` for modules signed with this key
    serial: int
    skid: bytes | None  # subjectKeyIdentifier
    key: str  # "RSA 2048", "EC secp384r1"
    sig_hash: str | None  # the hash the certificate itself is signed with
    code_signing: bool  # extendedKeyUsage has codeSigning (or no EKU restricts it)
    not_after: datetime
    der: bytes = field(repr=False)

    @property
    def key_id(self) -> bytes:
        """The serial's bytes, as the kernel and modinfo (`sig_key`) identify the key."""
        return serial_magnitude(self.serial)


def load_cert(path: Path) -> Certificate:
    """A certificate in DER or PEM; UsageError when it is neither."""
    from cryptography import x509

    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read certificate {path}: {err.strerror}") from None
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as err:
        raise UsageError(
            f"{path} is not an X.509 certificate (DER or PEM): {err}",
            "pass the certificate (mok.der, signing_key.x509, cert.pem), not the private key",
        ) from None


def cert_info(path: Path, cert: Certificate | None = None) -> CertInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = cert if cert is not None else load_cert(path)
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        key = f"RSA {pub.key_size}"
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        key = f"EC {pub.curve.name}"
    else:
        key = type(pub).__name__
    try:
        skid = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        skid = None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        code_signing = x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in eku
    except x509.ExtensionNotFound:
        code_signing = True
    algo = cert.signature_hash_algorithm
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        issuer_cn=name_cn(cert.issuer),
        serial=cert.serial_number,
        skid=skid,
        key=key,
        sig_hash=algo.name.replace("_", "-") if algo is not None else None,
        code_signing=code_signing,
        not_after=cert.not_valid_after_utc,
        der=cert.public_bytes(Encoding.DER),
    )


def name_cn(name: Any) -> str:
    """kmod's reading of a name: its first commonName, else the last attribute's value."""
    from cryptography.x509.oid import NameOID

    value = ""
    for attr in name:
        value = str(attr.value)
        if attr.oid == NameOID.COMMON_NAME:
            return value
    return value


# --- making a key pair -------------------------------------------------------------------


@dataclass(frozen=True)
class KeygenResult:
    pair: KeyPair
    created_key: bool
    created_cert: bool
    cert: CertInfo


def default_common_name() -> str:
    return f"kmod-py module signing key ({socket.gethostname()})"


def keygen(
    pair: KeyPair,
    *,
    common_name: str | None = None,
    hash_algo: str = "sha256",
    bits: int = DEFAULT_BITS,
    days: int = DEFAULT_DAYS,
) -> KeygenResult:
    """Make what is missing of the pair; an existing key is reused, never replaced.

    key and certificate present: nothing is written. Key present, certificate missing: a
    certificate is made for that key. Certificate present without its key: refused (a new
    key would not match the certificate someone may have enrolled)."""
    if hash_algo not in HASHES:
        raise UsageError(f"unknown hash {hash_algo!r}", f"one of: {', '.join(HASHES)}")
    if bits < 2048:
        raise UsageError(f"--bits {bits}: too small", "use 2048 (DKMS, MOK) or 4096")
    has_key, has_cert = pair.key.exists(), pair.cert.exists()
    if has_cert and not has_key:
        raise UsageError(
            f"certificate {pair.cert} exists but its key {pair.key} does not",
            "pass the key with --key, or choose new paths with --key and --cert "
            "(kmod-py never replaces a certificate)",
        )
    if has_key and has_cert:
        return KeygenResult(pair, False, False, cert_info(pair.cert))
    private = _load_private_key(pair.key) if has_key else _new_private_key(bits)
    if not has_key:
        _write_new(pair.key, _private_pem(private), 0o600)
    cert = _self_signed(private, common_name or default_common_name(), hash_algo, days)
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = pair.cert.suffix.lower() in (".pem", ".crt")
    _write_new(pair.cert, cert.public_bytes(Encoding.PEM if pem else Encoding.DER), 0o644)
    return KeygenResult(pair, not has_key, True, cert_info(pair.cert, cert))


def _new_private_key(bits: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _private_pem(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization as s

    return private.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())


def _load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization as s

    raw = path.read_bytes()
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return s.load_pem_private_key(raw, password=None)
        return s.load_der_private_key(raw, password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(
            f"{path} is not an unencrypted private key (PEM or DER): {err}",
            "scripts/sign-file needs the key without a passphrase (or KBUILD_SIGN_PIN)",
        ) from None


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return getattr(hashes, name.upper().replace("-", "_"))()


def _self_signed(private: Any, cn: str, hash_algo: str, days: int) -> Certificate:
    """A certificate like the kernel's certs/default_x509.genkey asks for, with the
    codeSigning usage DKMS adds: not a CA, digitalSignature, subject/authority key ids."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kmod-py"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    pub = private.public_key()
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
        .sign(private, _hash(hash_algo))
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with data; an existing file is never replaced (O_EXCL)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UsageError(f"{path} appeared meanwhile; not replaced", "run keygen again") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def mokutil_steps(cert: Path) -> list[str]:
    """How to make the kernel trust this certificate (shim's MOK list, UEFI Secure Boot)."""
    der = cert if cert.suffix.lower() not in (".pem", ".crt") else cert.with_suffix(".der")
    steps = []
    if der != cert:
        steps.append(f"openssl x509 -in {cert} -outform DER -out {der}   (mokutil wants DER)")
    steps += [
        f"sudo mokutil --import {der}   (asks for a one-time password)",
        'reboot; in the blue MokManager screen: "Enroll MOK" -> "Continue" -> "Yes" '
        "-> the password",
        f'mokutil --test-key {der}   (after the reboot: "... is already enrolled")',
    ]
    return steps


def running_kernel_hash() -> str | None:
    """CONFIG_MODULE_SIG_HASH of the running kernel (/boot/config-R or its build tree)."""
    release = os.uname().release
    for cfg in (Path(f"/boot/config-{release}"), Path(f"/lib/modules/{release}/build/.config")):
        try:
            value = parse_kconfig(cfg.read_text(errors="replace")).get("CONFIG_MODULE_SIG_HASH")
        except OSError:
            continue
        return value or None
    return None
