"""Appended module signatures: the trailer (scripts/sign-file.c) and its PKCS#7 blob.

Layout at the end of a signed module:
  [ELF][signer][key id][signature: sig_len bytes][struct module_signature][SIG_MAGIC]
sign-file writes PKCS#7 (id_type 2) with signer_len = key_id_len = 0; the signer,
key serial and digest algorithm live inside the PKCS#7 SignedData, read here
with a small DER reader (definite lengths only, as DER requires).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property

SIG_MAGIC = b"~Module signature appended~\n"
_MODSIG = struct.Struct(">BBBBB3sI")  # algo hash id_type signer_len key_id_len pad sig_len
PKEY_ID_PKCS7 = 2
_ALGOS = ("DSA", "RSA")
_HASHES = ("md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3")
_ID_TYPES = ("PGP", "X509", "PKCS#7")

# Digest OIDs as OpenSSL's OBJ_obj2txt names them (long names), as kmod prints them.
_DIGEST_NAMES = {
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
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_CN = "2.5.4.3"


class DerError(ValueError):
    pass


def der_read(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[int, int, int, int]:
    """One TLV at pos: (tag, content start, content end, next position)."""
    end = len(buf) if end is None else end
    if pos + 2 > end:
        raise DerError("truncated TLV")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers unsupported")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise DerError("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise DerError("content past end")
    return tag, pos, pos + n, pos + n


def der_children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each TLV inside a constructed value."""
    out = []
    pos = start
    while pos < end:
        tag, s, e, pos = der_read(buf, pos, end)
        out.append((tag, s, e))
    return out


_OID_CACHE: dict[bytes, str] = {}
_NAME_CACHE: dict[bytes, str | None] = {}


def oid_text(raw: bytes) -> str:
    text = _OID_CACHE.get(raw)
    if text is None:
        text = _oid_text(raw)
        if len(_OID_CACHE) < 4096:
            _OID_CACHE[raw] = text
    return text


def _oid_text(raw: bytes) -> str:
    if not raw:
        raise DerError("empty OID")
    first = raw[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    val = 0
    for b in raw[1:]:
        val = (val << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(val)
            val = 0
    return ".".join(map(str, parts))


@dataclass(frozen=True)
class Pkcs7Info:
    signer: str | None  # CN of the issuer of the first SignerInfo
    key_id: bytes  # serial number (magnitude, big-endian), what kmod shows as sig_key
    hash_algo: str
    signature: bytes  # encryptedDigest


def _name_cn(buf: bytes, s: int, e: int) -> str | None:
    """kmod's x509_name_to_str: the first CN, else (its quirk) the last attribute's value."""
    value = None
    for _tag, rs, re_ in der_children(buf, s, e):  # RDN SETs
        for _t, as_, ae in der_children(buf, rs, re_):  # AttributeTypeAndValue
            kids = der_children(buf, as_, ae)
            if len(kids) < 2:
                raise DerError("bad name attribute")
            value = buf[kids[1][1] : kids[1][2]].decode("utf-8", "replace")
            if kids[0][0] == 0x06 and oid_text(buf[kids[0][1] : kids[0][2]]) == _OID_CN:
                return value
    return value


_PREFIXES: list[tuple[bytes, int, Pkcs7Info]] = []  # (DER before the signature, length, info)


def parse_pkcs7(blob: bytes) -> Pkcs7Info:
    """parse_pkcs7_der with a fast path: modules signed by one key share every DER byte
    before the signature value, so a blob of the same length with the same prefix has
    the same signer, serial and digest, and its signature is the rest."""
    for prefix, size, info in _PREFIXES:
        if len(blob) == size and blob.startswith(prefix):
            return Pkcs7Info(info.signer, info.key_id, info.hash_algo, blob[len(prefix) :])
    info = parse_pkcs7_der(blob)
    if info.signature and blob.endswith(info.signature) and len(_PREFIXES) < 16:
        _PREFIXES.append((blob[: len(blob) - len(info.signature)], len(blob), info))
    return info


def parse_pkcs7_der(blob: bytes) -> Pkcs7Info:
    """Signer, serial, digest algorithm and signature of a PKCS#7 SignedData.

    Raises DerError when the blob is malformed."""
    tag, s, e, _ = der_read(blob)
    if tag != 0x30:
        raise DerError("ContentInfo is not a SEQUENCE")
    ci = der_children(blob, s, e)
    if len(ci) < 2 or ci[0][0] != 0x06 or oid_text(blob[ci[0][1] : ci[0][2]]) != _OID_SIGNED_DATA:
        raise DerError("not PKCS#7 signedData")
    tag, s, e, _ = der_read(blob, ci[1][1], ci[1][2])  # [0] EXPLICIT SignedData
    if tag != 0x30:
        raise DerError("SignedData is not a SEQUENCE")
    sd = der_children(blob, s, e)
    sets = [c for c in sd if c[0] == 0x31]
    if len(sets) < 2:
        raise DerError("no signerInfos")
    infos = der_children(blob, sets[-1][1], sets[-1][2])
    if not infos:
        raise DerError("empty signerInfos")
    si = der_children(blob, infos[0][1], infos[0][2])
    if len(si) < 5 or si[1][0] != 0x30:
        raise DerError("SignerInfo without issuerAndSerialNumber")
    ias = der_children(blob, si[1][1], si[1][2])
    if len(ias) != 2 or ias[1][0] != 0x02:
        raise DerError("bad issuerAndSerialNumber")
    issuer = blob[ias[0][1] : ias[0][2]]
    if issuer in _NAME_CACHE:  # every module of a kernel has the same signer
        signer = _NAME_CACHE[issuer]
    else:
        signer = _name_cn(issuer, 0, len(issuer))
        if len(_NAME_CACHE) < 1024:
            _NAME_CACHE[issuer] = signer
    serial = blob[ias[1][1] : ias[1][2]]
    if serial and serial[0] & 0x80:  # negative: BN keeps the magnitude
        serial = (-int.from_bytes(serial, "big", signed=True)).to_bytes(len(serial), "big")
    serial = serial.lstrip(b"\0")
    alg = der_children(blob, si[2][1], si[2][2])
    if not alg or alg[0][0] != 0x06:
        raise DerError("bad digestAlgorithm")
    oid = oid_text(blob[alg[0][1] : alg[0][2]])
    digests = [c for c in si[3:] if c[0] == 0x04]
    if not digests:
        raise DerError("no encryptedDigest")
    sig = blob[digests[0][1] : digests[0][2]]
    return Pkcs7Info(signer, serial, _DIGEST_NAMES.get(oid, oid), sig)


@dataclass(frozen=True)
class ModuleSignature:
    algo: int
    hash: int
    id_type: int
    signer_len: int
    key_id_len: int
    pad: bytes
    sig_len: int
    start: int  # offset where the signature region (signer/key id/blob) begins
    blob: bytes = field(repr=False)
    signer_raw: bytes = field(repr=False, default=b"")
    key_id_raw: bytes = field(repr=False, default=b"")

    def kernel_problem(self) -> str | None:
        """What the kernel's mod_check_sig would reject, in its words, or None."""
        if self.id_type != PKEY_ID_PKCS7:
            return "not signed with expected PKCS#7 message"
        if self.algo or self.hash or self.signer_len or self.key_id_len or any(self.pad):
            return "PKCS#7 signature not signed with a key"
        if self.pkcs7 is None:
            return "PKCS#7 signature blob could not be parsed"
        return None

    @cached_property
    def pkcs7(self) -> Pkcs7Info | None:
        if self.id_type != PKEY_ID_PKCS7:
            return None
        try:
            return parse_pkcs7(self.blob)
        except (DerError, IndexError, ValueError):
            return None

    def kmod_fields(self) -> list[tuple[str, str]] | None:
        """The sig_* fields kmod's modinfo prints, or None when kmod shows none."""
        if self.id_type == PKEY_ID_PKCS7:
            p = self.pkcs7
            if p is None:
                return None
            signer, key, algo, sig = p.signer or "", p.key_id, p.hash_algo, p.signature
        else:
            signer = self.signer_raw.decode("utf-8", "replace")
            key, algo, sig = self.key_id_raw, _HASHES[self.hash], self.blob
        return [
            ("sig_id", _ID_TYPES[self.id_type]),
            ("signer", signer),
            ("sig_key", hex_colon(key)),
            ("sig_hashalgo", algo),
            ("signature", hex_colon(sig)),
        ]

    @property
    def summary(self) -> dict[str, str | int | None]:
        p = self.pkcs7
        return {
            "id_type": _ID_TYPES[self.id_type] if self.id_type < 3 else str(self.id_type),
            "signer": p.signer if p else None,
            "key": hex_colon(p.key_id) if p else None,
            "hash_algo": p.hash_algo if p else None,
            "sig_len": self.sig_len,
        }


def hex_colon(raw: bytes) -> str:
    """kmod's hex format: XX:XX:..., 20 bytes a line, continuation lines start with two tabs."""
    if not raw:
        return ""
    text = raw.hex(":").upper()
    if len(raw) <= 20:
        return text
    step = 60  # 20 bytes * "XX:"
    return ":\n\t\t".join(text[i : i + step - 1] for i in range(0, len(text), step))


def read_trailer(data: bytes) -> ModuleSignature | None:
    """The trailer as kmod accepts it (magic, known enum values, lengths in bounds), else None."""
    size = len(data) - len(SIG_MAGIC)
    if size < _MODSIG.size or data[size:] != SIG_MAGIC:
        return None
    size -= _MODSIG.size
    algo, hsh, id_type, signer_len, key_id_len, pad, sig_len = _MODSIG.unpack_from(data, size)
    if algo >= len(_ALGOS) or hsh >= len(_HASHES) or id_type >= len(_ID_TYPES):
        return None
    if sig_len == 0 or size < sig_len + signer_len + key_id_len:
        return None
    blob_start = size - sig_len
    key_start = blob_start - key_id_len
    start = key_start - signer_len
    return ModuleSignature(
        algo,
        hsh,
        id_type,
        signer_len,
        key_id_len,
        bytes(pad),
        sig_len,
        start,
        bytes(data[blob_start:size]),
        bytes(data[start:key_start]),
        bytes(data[key_start:blob_start]),
    )


def has_magic(data: bytes) -> bool:
    return len(data) >= len(SIG_MAGIC) and data[-len(SIG_MAGIC) :] == SIG_MAGIC
