"""The PKCS#7/CMS SignedData of an appended module signature, read with asn1crypto.

scripts/sign-file writes a detached SignedData without certificates and without signed
attributes: one SignerInfo naming the key by issuer and serial number (or, with -k, by
subjectKeyIdentifier), the digest algorithm, and the signature over the module's bytes.
This module turns the DER into those facts; it decides nothing (the kernel's rules are
in verify, modinfo's view in kbuild_py.check.elf.signature).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"

# Digest OIDs as OpenSSL's OBJ_obj2txt names them (long names), as kmod prints them.
DIGEST_NAMES = {
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.8": "sha3-256",
    "2.16.840.1.101.3.4.2.9": "sha3-384",
    "2.16.840.1.101.3.4.2.10": "sha3-512",
    "1.2.156.10197.1.401": "sm3",
}


class Pkcs7Error(ValueError):
    """The blob is not a SignedData the kernel could read."""


@dataclass(frozen=True)
class SignerFacts:
    """The first SignerInfo of a SignedData, and what surrounds it."""

    content_type: str  # encapContentInfo's type (dotted): modules must say "data"
    detached: bool  # no content inside: the module bytes are the content
    issuer_der: bytes | None  # issuerAndSerialNumber (None when the key is named by SKID)
    issuer_cn: str | None
    serial: int | None
    skid: bytes | None  # subjectKeyIdentifier (sign-file -k)
    digest_oid: str
    signature_oid: str
    signature: bytes = field(repr=False)
    signed_attrs: bool = False  # authenticated attributes present

    @property
    def hash_algo(self) -> str:
        return DIGEST_NAMES.get(self.digest_oid, self.digest_oid)


def read_signed_data(blob: bytes) -> SignerFacts:
    """Parse a PKCS#7 SignedData; Pkcs7Error when it is malformed or not one."""
    from asn1crypto import cms  # lazily: only signed modules pay for the import

    try:
        info = cms.ContentInfo.load(blob, strict=True)
        if info["content_type"].dotted != OID_SIGNED_DATA:
            raise Pkcs7Error("not PKCS#7 signedData")
        signed = info["content"]
        signers = signed["signer_infos"]
        if len(signers) == 0:
            raise Pkcs7Error("no signerInfos")
        si = signers[0]
        sid = si["sid"]
        issuer_der = issuer_cn = serial = skid = None
        if sid.name == "issuer_and_serial_number":
            issuer = sid.chosen["issuer"]
            issuer_der = issuer.dump()
            issuer_cn = name_cn(issuer)
            serial = sid.chosen["serial_number"].native
        else:
            skid = sid.chosen.native
        encap = signed["encap_content_info"]
        return SignerFacts(
            content_type=encap["content_type"].dotted,
            detached=encap["content"].native is None,
            issuer_der=issuer_der,
            issuer_cn=issuer_cn,
            serial=serial,
            skid=skid,
            digest_oid=si["digest_algorithm"]["algorithm"].dotted,
            signature_oid=si["signature_algorithm"]["algorithm"].dotted,
            signature=si["signature"].native,
            signed_attrs=bool(si["signed_attrs"].native),
        )
    except Pkcs7Error:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
        raise Pkcs7Error(f"malformed PKCS#7 ({type(err).__name__}: {err})") from None


_OID_CN = "2.5.4.3"


def name_cn(name) -> str | None:  # type: ignore[no-untyped-def]
    """kmod's x509_name_to_str: the first commonName, else (its quirk) the last value."""
    value = None
    for rdn in name.chosen:
        for attr in rdn:
            value = _text(attr["value"])
            if attr["type"].dotted == _OID_CN:
                return value
    return value


def _text(value) -> str:  # type: ignore[no-untyped-def]
    """The attribute's string as its bytes say (kmod prints the raw ASN.1 string data)."""
    inner = value.chosen if hasattr(value, "chosen") else value
    return bytes(inner.contents or b"").decode("utf-8", "replace")
