"""Appended module signatures: the trailer (scripts/sign-file.c) and its PKCS#7 blob.

Layout at the end of a signed module:
  [ELF][signer][key id][signature: sig_len bytes][struct module_signature][SIG_MAGIC]
sign-file writes PKCS#7 (id_type 2) with signer_len = key_id_len = 0; the signer,
key serial and digest algorithm live inside the PKCS#7 SignedData, read here with
asn1crypto (imported on the first signed module; a cache of DER prefixes means a
kernel's thousands of modules, all signed by one key, are parsed once).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from kbuild_py.paths import cache_dir

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


class Pkcs7Error(ValueError):
    """The blob is not a PKCS#7 SignedData the kernel could read."""


@dataclass(frozen=True)
class SignerFacts:
    """The first SignerInfo of a PKCS#7 SignedData, and what surrounds it."""

    content_type: str  # encapContentInfo's type (dotted): modules must say "data"
    detached: bool  # no content inside: the module bytes are the content
    issuer_der: bytes | None  # issuerAndSerialNumber's issuer (None: key named by SKID)
    issuer_cn: str | None
    serial: int | None
    skid: bytes | None  # subjectKeyIdentifier (sign-file -k)
    digest_oid: str
    signature_oid: str
    signature: bytes = field(repr=False)
    signed_attrs: bool = False  # authenticated attributes present

    @property
    def hash_algo(self) -> str:
        return _DIGEST_NAMES.get(self.digest_oid, self.digest_oid)


_NAME_CACHE: dict[bytes, str | None] = {}


def read_signed_data(blob: bytes) -> SignerFacts:
    """Parse a PKCS#7 SignedData with asn1crypto; Pkcs7Error when malformed or not one."""
    from asn1crypto import cms  # lazily: only when parsing

    try:
        info = cms.ContentInfo.load(blob, strict=True)
        if info["content_type"].dotted != _OID_SIGNED_DATA:
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
            if issuer_der in _NAME_CACHE:  # every module of a kernel has the same signer
                issuer_cn = _NAME_CACHE[issuer_der]
            else:
                issuer_cn = _name_cn(issuer)
                if len(_NAME_CACHE) < 1024:
                    _NAME_CACHE[issuer_der] = issuer_cn
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


def _name_cn(name) -> str | None:
    """kmod's x509_name_to_str: the first commonName, else (its quirk) the last value,
    as the string's own bytes say."""
    value = None
    for rdn in name.chosen:
        for attr in rdn:
            raw = attr["value"]
            raw = raw.chosen if hasattr(raw, "chosen") else raw
            value = bytes(raw.contents or b"").decode("utf-8", "replace")
            if attr["type"].dotted == _OID_CN:
                return value
    return value


@dataclass(frozen=True)
class Pkcs7Info:
    """What kmod's modinfo shows of a PKCS#7 signature."""

    signer: str | None  # CN of the issuer of the first SignerInfo
    key_id: bytes  # serial number (magnitude, big-endian), what kmod shows as sig_key
    hash_algo: str
    signature: bytes  # encryptedDigest


_PREFIXES: list[tuple[bytes, int, Pkcs7Info]] = []  # (DER before the signature, length, info)
_MAX_PREFIXES = 16


def parse_pkcs7(blob: bytes) -> Pkcs7Info:
    """modinfo's view of a PKCS#7 blob, with a fast path: modules signed by one key share
    every DER byte before the signature value, so a blob of the same length with the same
    prefix has the same signer, serial and digest, and its signature is the rest. Prefixes
    are remembered across runs (known_prefixes): checking a kernel's thousands of modules
    parses one blob with asn1crypto the first time, none afterwards."""
    for prefix, size, info in known_prefixes():
        if len(blob) == size and blob.startswith(prefix):
            return Pkcs7Info(info.signer, info.key_id, info.hash_algo, blob[len(prefix) :])
    info = pkcs7_info(read_signed_data(blob))
    if info.signature and blob.endswith(info.signature):
        # the newest first; the oldest goes when there are too many (throwaway test keys)
        _PREFIXES.insert(0, (blob[: len(blob) - len(info.signature)], len(blob), info))
        del _PREFIXES[_MAX_PREFIXES:]
        _store_prefixes()
    return info


# --- prefixes remembered across runs -------------------------------------------------------
# A file in the cache directory: magic, then per prefix: >IIHHB (prefix length, blob size,
# signer length or 0xFFFF for none, key id length, hash name length) and those bytes. An entry
# is a pure function of its prefix bytes (which contain the signer's name and the serial),
# and one whose signer or serial is not inside its prefix is not used.
_STORE_MAGIC = b"kmod-py pkcs7 prefixes 1\n"
_ENTRY = struct.Struct(">IIHHB")
_loaded = False


def _store_path() -> Path:
    return cache_dir() / "pkcs7-prefixes"


def known_prefixes() -> list[tuple[bytes, int, Pkcs7Info]]:
    """The prefixes of earlier runs (read once per process), then those learnt since."""
    global _loaded
    if not _loaded:
        _loaded = True
        try:
            raw = _store_path().read_bytes()
        except OSError:
            raw = b""
        _PREFIXES.extend(_decode_store(raw)[:_MAX_PREFIXES])
    return _PREFIXES


def _decode_store(raw: bytes) -> list[tuple[bytes, int, Pkcs7Info]]:
    out: list[tuple[bytes, int, Pkcs7Info]] = []
    if not raw.startswith(_STORE_MAGIC):
        return out
    pos = len(_STORE_MAGIC)
    try:
        while pos < len(raw):
            plen, size, slen, klen, alen = _ENTRY.unpack_from(raw, pos)
            pos += _ENTRY.size
            n = slen if slen != 0xFFFF else 0
            prefix, signer_b = raw[pos : pos + plen], raw[pos + plen : pos + plen + n]
            key = raw[pos + plen + n : pos + plen + n + klen]
            algo = raw[pos + plen + n + klen : pos + plen + n + klen + alen].decode("ascii")
            pos += plen + n + klen + alen
            if pos > len(raw) or size <= plen or signer_b not in prefix or key not in prefix:
                return []
            signer = signer_b.decode("utf-8", "replace") if slen != 0xFFFF else None
            out.append((prefix, size, Pkcs7Info(signer, key, algo, b"")))
    except (struct.error, UnicodeDecodeError):
        return []
    return out


def _store_prefixes() -> None:
    """Rewrite the file with what this process knows (atomically; best effort)."""
    import os
    import tempfile

    parts = [_STORE_MAGIC]
    for prefix, size, info in _PREFIXES:
        signer = info.signer.encode("utf-8", "surrogateescape") if info.signer is not None else b""
        algo = info.hash_algo.encode("ascii", "replace")
        if len(signer) >= 0xFFFF or len(info.key_id) > 0xFFFF or len(algo) > 0xFF:
            continue
        slen = len(signer) if info.signer is not None else 0xFFFF
        parts += [_ENTRY.pack(len(prefix), size, slen, len(info.key_id), len(algo)), prefix]
        parts += [signer, info.key_id, algo]
    path = _store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pkcs7-prefixes.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(parts))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next run one parse


def pkcs7_info(facts: SignerFacts) -> Pkcs7Info:
    """modinfo's fields from the SignerInfo. kmod reads PKCS#7 with OpenSSL's PKCS7 type,
    which knows keys named by issuer and serial only: a SKID signer is unreadable there."""
    if facts.serial is None:
        raise Pkcs7Error("SignerInfo names its key by subjectKeyIdentifier")
    return Pkcs7Info(
        facts.issuer_cn, serial_magnitude(facts.serial), facts.hash_algo, facts.signature
    )


def serial_magnitude(serial: int) -> bytes:
    """An INTEGER as OpenSSL's BN_bn2bin gives it: magnitude, big-endian, no leading zeros."""
    n = abs(serial)
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


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
        except Pkcs7Error:
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
