"""Verify a module's appended signature against certificates, the way the kernel does.

The kernel (kernel/module/signing.c, crypto/asymmetric_keys/pkcs7_*.c) checks, in order:
the trailer (mod_check_sig), the PKCS#7 parse, that the content is plain data without
authenticated attributes, that a trusted key matches the SignerInfo (issuer and serial,
or subjectKeyIdentifier), and the signature over the module's bytes up to the signature.
Each failure is reported here with the kernel's words and errno:

  unsigned         -ENODATA       "Loading of unsigned module is rejected" (when enforced)
  unavailable-key  -ENOKEY        "Loading of module with unavailable key is rejected"
  unsupported      -ENOPKG        "Loading of module with unsupported crypto is rejected"
  rejected         -EKEYREJECTED  insmod: "Key was rejected by service" (always fatal)
  malformed        -EBADMSG       insmod: "Bad message" (always fatal)

The certificates play the kernel's trusted keyrings (built-in keys, enrolled MOKs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbuild_py.check.elf.signature import (
    PKEY_ID_PKCS7,
    Pkcs7Error,
    SignerFacts,
    has_magic,
    read_signed_data,
    read_trailer,
    serial_magnitude,
)
from kbuild_py.check.model import Finding
from kbuild_py.signing.keys import CertInfo, cert_info, load_cert

# Digests the kernel's crypto API offers for module signatures (hashlib names)
_HASHLIB = {
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
}
_RSA = {"1.2.840.113549.1.1.1"} | {f"1.2.840.113549.1.1.{n}" for n in (5, 11, 12, 13, 14)}
_ECDSA = {"1.2.840.10045.2.1"} | {f"1.2.840.10045.4.3.{n}" for n in (1, 2, 3, 4)}
KEY_REJECTED = "Key was rejected by service"
OID_DATA = "1.2.840.113549.1.7.1"


@dataclass(frozen=True)
class TrustedCert:
    """A certificate the verification trusts, with its public key loaded once."""

    info: CertInfo
    issuer_der: bytes
    public_key: Any

    def matches(self, facts: SignerFacts) -> bool:
        """The kernel's key lookup: issuer + serial number, or subjectKeyIdentifier."""
        if facts.skid is not None:
            return facts.skid == self.info.skid
        return facts.serial == self.info.serial and facts.issuer_der == self.issuer_der


def load_trusted(paths: Sequence[Path]) -> list[TrustedCert]:
    """Read the certificates (DER or PEM) once; UsageError for one that is not a certificate."""
    out = []
    for p in paths:
        cert = load_cert(p)
        out.append(TrustedCert(cert_info(p, cert), cert.issuer.public_bytes(), cert.public_key()))
    return out


@dataclass(frozen=True)
class Verification:
    status: str  # verified | unsigned | unavailable-key | unsupported | rejected | malformed
    message: str  # the kernel's words
    detail: str = ""  # what kmod-py found, for a human
    errno: str | None = None
    facts: SignerFacts | None = field(default=None, repr=False)
    cert: CertInfo | None = field(default=None, repr=False)  # the certificate that matched

    @property
    def ok(self) -> bool:
        return self.status == "verified"


def _fail(
    status: str, errno: str, message: str, detail: str, facts: SignerFacts | None = None
) -> Verification:
    return Verification(status, message, detail, errno, facts)


def verify_module(
    data: bytes, trusted: Sequence[TrustedCert], name: str = "module"
) -> Verification:
    """Verify the (decompressed) module bytes against the trusted certificates."""
    sig = read_trailer(data)
    if sig is None:
        if has_magic(data):
            return _fail(
                "malformed",
                "EBADMSG",
                "Bad message",
                f"{name}: module signature trailer is malformed",
            )
        return _fail(
            "unsigned",
            "ENODATA",
            "Loading of unsigned module is rejected",
            f"{name}: no signature appended",
        )
    problem = sig.kernel_problem()
    if sig.id_type != PKEY_ID_PKCS7:
        return _fail(
            "unsupported",
            "ENOPKG",
            "Loading of module with unsupported crypto is rejected",
            f"{name}: {problem}",
        )
    if sig.algo or sig.hash or sig.signer_len or sig.key_id_len or any(sig.pad):
        return _fail("malformed", "EBADMSG", "Bad message", f"{name}: {problem}")
    try:
        facts = read_signed_data(sig.blob)
    except Pkcs7Error as err:
        return _fail("malformed", "EBADMSG", "Bad message", f"{name}: PKCS#7 signature: {err}")
    if facts.content_type != OID_DATA:
        return _fail(
            "rejected",
            "EKEYREJECTED",
            "Invalid module sig (not pkcs7-data)",
            f"{name}: content type {facts.content_type}",
            facts,
        )
    if facts.signed_attrs:
        return _fail(
            "rejected",
            "EKEYREJECTED",
            "Invalid module sig (has authattrs)",
            f"{name}: the SignerInfo has authenticated attributes",
            facts,
        )
    if not facts.detached:
        return _fail(
            "malformed",
            "EINVAL",
            "Data already supplied",
            f"{name}: the signature carries its own content",
            facts,
        )
    algo = _HASHLIB.get(facts.hash_algo)
    if algo is None:
        return _fail(
            "unsupported",
            "ENOPKG",
            "Loading of module with unsupported crypto is rejected",
            f"{name}: digest {facts.hash_algo} is not one the kernel verifies",
            facts,
        )
    match = next((t for t in trusted if t.matches(facts)), None)
    if match is None:
        return _fail(
            "unavailable-key",
            "ENOKEY",
            "Loading of module with unavailable key is rejected",
            f"{name}: signed by {_signer(facts)}; no given certificate is that key ("
            + "; ".join(
                f"{t.info.path.name}: '{t.info.issuer_cn}' key {_hex(t.info.key_id)}"
                for t in trusted
            )
            + ")",
            facts,
        )
    signed = bytes(data[: sig.start])
    why = _check_signature(match.public_key, facts, signed, algo)
    if why is not None:
        return Verification(
            "rejected", KEY_REJECTED, f"{name}: {why}", "EKEYREJECTED", facts, match.info
        )
    return Verification(
        "verified",
        "signature verified",
        f"{name}: signed by {_signer(facts)}, {facts.hash_algo}, verified with {match.info.path}",
        None,
        facts,
        match.info,
    )


def _check_signature(public_key: Any, facts: SignerFacts, signed: bytes, algo: str) -> str | None:
    """None when the signature is good, else why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    digest = hashlib.new(algo, signed).digest()
    chosen = getattr(hashes, algo.upper())()
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and facts.signature_oid in _RSA:
            public_key.verify(facts.signature, digest, padding.PKCS1v15(), Prehashed(chosen))
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and facts.signature_oid in _ECDSA:
            public_key.verify(facts.signature, digest, ec.ECDSA(Prehashed(chosen)))
        else:
            return (
                f"signature algorithm {facts.signature_oid} does not fit the certificate's "
                f"{type(public_key).__name__}"
            )
    except InvalidSignature:
        if isinstance(public_key, rsa.RSAPublicKey):
            return _why_rsa(public_key, facts, digest)
        return (
            f"the {facts.hash_algo} signature does not verify: the module changed after "
            "signing, or the signature is corrupt"
        )
    return None


def _why_rsa(public_key: Any, facts: SignerFacts, digest: bytes) -> str:
    """Tell a changed module from a corrupt signature: an intact RSA signature still
    opens to the digest that was signed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        signed_info = public_key.recover_data_from_signature(
            facts.signature, padding.PKCS1v15(), None
        )
    except (InvalidSignature, ValueError):
        return "the signature is corrupt (it does not open with the certificate's key)"
    if len(signed_info) >= len(digest) and signed_info[-len(digest) :] != digest:
        return (
            f"the module's {facts.hash_algo} digest {digest[:8].hex()}… differs from the signed "
            f"one {signed_info[-len(digest) :][:8].hex()}…: the module changed after it was signed"
        )
    return "the signature does not verify"


def _signer(facts: SignerFacts) -> str:
    if facts.skid is not None:
        return f"key id {_hex(facts.skid)}"
    return f"'{facts.issuer_cn}' key {_hex(serial_magnitude(facts.serial or 0))}"


def _hex(raw: bytes) -> str:
    return raw.hex().upper()


def with_cert_findings(
    findings: list[Finding], data: bytes, name: str, trusted: Sequence[TrustedCert]
) -> list[Finding]:
    """check --cert: the signature rule's findings, its "signed by" report replaced by the
    verification against the certificates (a malformed signature keeps the rule's error)."""
    if any(f.rule_id == "signature" and f.severity == "error" for f in findings):
        return findings
    kept = [f for f in findings if f.rule_id != "signature"]
    v = verify_module(data, trusted, name)
    certs = ", ".join(str(t.info.path) for t in trusted)
    if v.ok:
        detail = v.detail.split(": ", 1)[-1]
        return [*kept, Finding("signature", "info", f"{name}: signature verified: {detail}")]
    if v.status == "unsigned":
        hint = f"sign it with the key of {certs}: kmod-py sign --key KEY --cert CERT FILE.ko"
    elif v.status == "unavailable-key":
        hint = (
            f"{v.detail.split(': ', 1)[-1]}; sign with the key that belongs to the certificate, "
            "or enrol the signer's certificate (mokutil --import)"
        )
    else:
        hint = "re-sign it (kmod-py sign); this is fatal even when signatures are not enforced"
    message = f"{name}: {v.message} (-{v.errno})"
    if v.status in ("rejected", "malformed", "unsupported") and v.detail:
        message += ": " + v.detail.split(": ", 1)[-1]
    return [*kept, Finding("signature", "error", message, hint)]
