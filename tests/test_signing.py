"""kbuild_py.signing: keys, verification and the sign pipeline, without kernel headers.

Signatures here are made the way scripts/sign-file makes them (a detached PKCS#7
SignedData, no certificates, no signed attributes, appended with the module_signature
trailer), by `cryptography`'s PKCS7SignatureBuilder; tests/test_signing_real.py uses
the kernel's own sign-file and kmod's modinfo.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

from kbuild_py.check.elf.signature import (
    SIG_MAGIC,
    read_signed_data,
    read_trailer,
    serial_magnitude,
)
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.seams.process import Result
from kbuild_py.signing import keys
from kbuild_py.signing.sign import (
    SignJob,
    compress,
    kernel_sig_hash,
    sign_file_argv,
    sign_module,
    strip_argv,
)
from kbuild_py.signing.verify import load_trusted, verify_module, with_cert_findings

BODY = b"\x7fELF" + bytes(range(256)) * 40  # verification looks at bytes, not ELF structure


def pair_in(tmp: Path, cn: str = "test signer") -> keys.KeyPair:
    pair = keys.KeyPair(tmp / "mok.key", tmp / "mok.der", "options")
    keys.keygen(pair, common_name=cn)
    return pair


def append_signature(body: bytes, pair: keys.KeyPair, algo: str = "sha256") -> bytes:
    """What sign-file appends: PKCS#7 DER, struct module_signature, the magic."""
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    cert = keys.load_cert(pair.cert)
    blob = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(body)
        .add_signer(cert, key, getattr(hashes, algo.upper())())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.NoCerts,
                pkcs7.PKCS7Options.NoAttributes,
                pkcs7.PKCS7Options.Binary,
            ],
        )
    )
    return body + blob + struct.pack(">BBBBB3sI", 0, 0, 2, 0, 0, b"", len(blob)) + SIG_MAGIC


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> keys.KeyPair:
    return pair_in(tmp_path_factory.mktemp("signer"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> keys.KeyPair:
    return pair_in(tmp_path_factory.mktemp("other"), cn="someone else")


# --- keygen ------------------------------------------------------------------------------


def test_keygen_makes_a_code_signing_pair(tmp_path: Path) -> None:
    pair = keys.KeyPair(tmp_path / "d" / "k.pem", tmp_path / "d" / "c.der", "options")
    res = keys.keygen(pair, common_name="Ada's key", hash_algo="sha512", bits=3072)
    assert res.created_key and res.created_cert
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    cert = x509.load_der_x509_certificate(pair.cert.read_bytes())  # DER, as mokutil wants
    assert res.cert.issuer_cn == "Ada's key" and res.cert.key == "RSA 3072"
    assert res.cert.sig_hash == "sha512" and res.cert.code_signing
    ext = cert.extensions
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in eku
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert res.cert.key_id == serial_magnitude(cert.serial_number)


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    pair = pair_in(tmp_path)
    key, cert = pair.key.read_bytes(), pair.cert.read_bytes()
    again = keys.keygen(pair, common_name="another name")
    assert not again.created_key and not again.created_cert
    assert pair.key.read_bytes() == key and pair.cert.read_bytes() == cert
    # a key without its certificate: a certificate is made for that same key
    pair.cert.unlink()
    res = keys.keygen(pair)
    assert not res.created_key and res.created_cert and pair.key.read_bytes() == key
    public = serialization.load_pem_private_key(key, None).public_key()
    assert keys.load_cert(pair.cert).public_key() == public
    # a certificate without its key: refused, nothing written
    pair.key.unlink()
    with pytest.raises(UsageError, match="exists but its key"):
        keys.keygen(pair)
    assert not pair.key.exists()


def test_keygen_refuses_bad_input(tmp_path: Path) -> None:
    pair = keys.KeyPair(tmp_path / "k", tmp_path / "c", "options")
    with pytest.raises(UsageError, match="unknown hash"):
        keys.keygen(pair, hash_algo="md5")
    with pytest.raises(UsageError, match="too small"):
        keys.keygen(pair, bits=1024)
    assert not pair.key.exists()


def test_keygen_reads_a_pem_certificate_and_writes_pem_when_named_so(tmp_path: Path) -> None:
    pair = keys.KeyPair(tmp_path / "k.pem", tmp_path / "c.pem", "options")
    keys.keygen(pair)
    assert pair.cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert keys.mokutil_steps(pair.cert)[0].startswith("openssl x509 -in")
    with pytest.raises(UsageError, match="not an X.509 certificate"):
        keys.load_cert(pair.key)


def test_key_pair_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    dkms = tmp_path / "dkms"
    with pytest.raises(UsageError, match="no signing key") as err:
        keys.find_pair(None, None, dkms_root=dkms)
    assert "kmod-py keygen" in (err.value.hint or "")
    own = keys.default_pair()
    assert own.key == tmp_path / "data/kmod-py/signing/mok.key"
    keys.keygen(own)
    assert keys.find_pair(None, None, dkms_root=dkms) == own
    dkms.mkdir()
    keys.keygen(keys.KeyPair(dkms / "mok.key", dkms / "mok.pub", "DKMS"))
    assert keys.find_pair(None, None, dkms_root=dkms).origin == "DKMS"
    assert keys.keygen_pair(None, None, dkms_root=dkms).origin == "DKMS"  # reused, not replaced
    toml = keys.KeyPair(own.key, own.cert, "kmod.toml")
    assert keys.find_pair(None, None, toml, dkms_root=dkms) == toml
    given = keys.find_pair(own.key, own.cert, toml, dkms_root=dkms)
    assert given.origin == "options"
    with pytest.raises(UsageError, match="go together"):
        keys.find_pair(own.key, None, dkms_root=dkms)
    with pytest.raises(UsageError, match="does not exist"):
        keys.find_pair(tmp_path / "nope.key", own.cert, dkms_root=dkms)


# --- verification ------------------------------------------------------------------------


def test_verifies_like_the_kernel(signer: keys.KeyPair, other: keys.KeyPair) -> None:
    signed = append_signature(BODY, signer)
    trusted = load_trusted([signer.cert])
    v = verify_module(signed, trusted, "m")
    assert v.ok and v.cert is not None and v.cert.path == signer.cert
    assert "signed by 'test signer'" in v.detail and "sha256" in v.detail
    facts = read_signed_data(read_trailer(signed).blob)  # type: ignore[union-attr]
    assert facts.detached and not facts.signed_attrs and facts.hash_algo == "sha256"

    # another key's certificate: the kernel finds no key
    v = verify_module(signed, load_trusted([other.cert]), "m")
    assert (v.status, v.errno) == ("unavailable-key", "ENOKEY")
    assert v.message == "Loading of module with unavailable key is rejected"
    assert "'someone else'" in v.detail and "'test signer'" in v.detail
    # either of two certificates will do (the kernel searches its keyrings)
    assert verify_module(signed, load_trusted([other.cert, signer.cert]), "m").ok


def test_flipped_byte_and_bad_signature_are_rejected(signer: keys.KeyPair) -> None:
    signed = append_signature(BODY, signer)
    trusted = load_trusted([signer.cert])
    sig = read_trailer(signed)
    assert sig is not None
    body = bytearray(signed)
    body[100] ^= 0x01
    v = verify_module(bytes(body), trusted, "m")
    assert (v.status, v.errno, v.message) == (
        "rejected",
        "EKEYREJECTED",
        "Key was rejected by service",
    )
    assert "the module changed after it was signed" in v.detail
    bad = bytearray(signed)
    bad[sig.start + sig.sig_len - 3] ^= 0x40  # inside the RSA signature value
    v = verify_module(bytes(bad), trusted, "m")
    assert (v.status, v.errno) == ("rejected", "EKEYREJECTED")
    assert "signature is corrupt" in v.detail


def test_unsigned_malformed_and_unsupported(signer: keys.KeyPair) -> None:
    trusted = load_trusted([signer.cert])
    v = verify_module(BODY, trusted, "m")
    assert (v.status, v.message) == ("unsigned", "Loading of unsigned module is rejected")
    assert verify_module(BODY + SIG_MAGIC, trusted, "m").status == "malformed"
    garbage = b"\x30\x03\x02\x01\x00"
    junk = BODY + garbage + struct.pack(">BBBBB3sI", 0, 0, 2, 0, 0, b"", len(garbage)) + SIG_MAGIC
    v = verify_module(junk, trusted, "m")
    assert (v.status, v.errno) == ("malformed", "EBADMSG")
    x509_id = BODY + b"xx" + struct.pack(">BBBBB3sI", 0, 0, 1, 0, 0, b"", 2) + SIG_MAGIC
    assert verify_module(x509_id, trusted, "m").status == "unsupported"


def test_ecdsa_and_sha512_signatures(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ec import SECP384R1

    key = ec.generate_private_key(SECP384R1())
    pair = keys.KeyPair(tmp_path / "ec.key", tmp_path / "ec.der", "options")
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    res = keys.keygen(pair, hash_algo="sha384")  # a certificate for the existing EC key
    assert res.cert.key == "EC secp384r1"
    signed = append_signature(BODY, pair, "sha512")
    v = verify_module(signed, load_trusted([pair.cert]), "m")
    assert v.ok and v.facts is not None and v.facts.hash_algo == "sha512"
    flipped = bytearray(signed)
    flipped[7] ^= 1
    assert verify_module(bytes(flipped), load_trusted([pair.cert]), "m").status == "rejected"


def test_cert_findings_replace_the_signed_by_report(
    signer: keys.KeyPair, other: keys.KeyPair
) -> None:
    from kbuild_py.check.model import Finding

    signed = append_signature(BODY, signer)
    before = [
        Finding("signature", "info", "signed by 'test signer', key X, sha256"),
        Finding("taint", "info", "loading taints the kernel: O (out-of-tree module)"),
    ]
    ok = with_cert_findings(before, signed, "m", load_trusted([signer.cert]))
    assert [(f.rule_id, f.severity) for f in ok] == [("taint", "info"), ("signature", "info")]
    assert ok[1].message.startswith("m: signature verified: signed by 'test signer'")
    bad = with_cert_findings(before, signed, "m", load_trusted([other.cert]))
    assert bad[1].severity == "error"
    assert bad[1].message == "m: Loading of module with unavailable key is rejected (-ENOKEY)"
    malformed = [Finding("signature", "error", "m: module signature trailer is malformed")]
    assert with_cert_findings(malformed, signed, "m", load_trusted([signer.cert])) == malformed


# --- signing pipeline (a fake runner stands in for strip and sign-file) ----------------------


class FakeSigner:
    """Runs 'strip' by dropping a marker and 'sign-file' by appending a real signature."""

    def __init__(self, pair: keys.KeyPair, fail: int = 0) -> None:
        self.pair, self.fail, self.calls = pair, fail, []  # type: ignore[var-annotated]

    def run(self, argv, *, cwd=None, env=None, timeout=None, on_line=None):  # type: ignore[no-untyped-def]
        self.calls.append(list(argv))
        if self.fail:
            if on_line:
                on_line("At main.c:298:")
                on_line("- SSL error:0909006C:PEM routines:get_name:no start line")
            return Result(self.fail)
        path = Path(argv[-1])
        data = path.read_bytes()
        if argv[1] == "--strip-debug":
            path.write_bytes(data.replace(b"DEBUGINFO", b"STRIPPED!"))
        else:
            assert Path(argv[2]).read_bytes() == self.pair.key.read_bytes()
            path.write_bytes(append_signature(data, self.pair, argv[1]))
        return Result(0)


def synthetic_module(tmp_path: Path, name: str = "m") -> Path:
    """A small ELF64 relocatable with .modinfo and a DEBUGINFO marker for the fake strip."""
    modinfo = f"license=GPL\0name={name}\0vermagic=6.1.0-99-amd64 SMP \0".encode()
    sections = [(b".modinfo", 1, modinfo), (b".debug_info", 1, b"DEBUGINFO" * 4)]
    shstrtab = b"\0" + b"".join(n + b"\0" for n, _, _ in sections) + b".shstrtab\0"
    body, offsets = b"", []
    for _, _, data in sections:
        offsets.append(64 + len(body))
        body += data
    str_off = 64 + len(body)
    body += shstrtab
    shoff = 64 + len(body)
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9),
        1,
        62,
        1,
        0,
        0,
        shoff,
        0,
        64,
        0,
        0,
        64,
        len(sections) + 2,
        len(sections) + 1,
    )
    shdrs, name_at = bytes(64), 1
    for (n, typ, data), off in zip(sections, offsets, strict=True):
        shdrs += struct.pack("<IIQQQQIIQQ", name_at, typ, 0, 0, off, len(data), 0, 0, 1, 0)
        name_at += len(n) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_at, 3, 0, 0, str_off, len(shstrtab), 0, 0, 1, 0)
    path = tmp_path / f"{name}.ko"
    path.write_bytes(ehdr + body + shdrs)
    return path


def test_sign_pipeline_strip_sign_compress(tmp_path: Path, signer: keys.KeyPair) -> None:
    from kbuild_py.check.elf.modfile import read_module

    ko = synthetic_module(tmp_path)
    fake = FakeSigner(signer)
    job = SignJob(
        signer, "sha256", "/k/scripts/sign-file", fake, on_host=False, strip="strip", compress="xz"
    )
    res = sign_module(ko, job)
    assert [c[0] for c in fake.calls] == ["strip", "/k/scripts/sign-file"]  # strip, then sign
    assert fake.calls[1][1] == "sha256"
    assert not fake.calls[1][2].startswith(str(signer.key.parent))  # the container got a copy
    assert res.compression == "xz" and res.stripped and not res.replaced_signature
    m = read_module(ko)
    assert m.compression == "xz" and m.signature is not None
    assert b"STRIPPED!" in m.data and b"DEBUGINFO" not in m.data
    assert verify_module(bytes(m.data), load_trusted([signer.cert]), m.name).ok
    # signing again replaces the signature instead of stacking a second one
    res = sign_module(ko, SignJob(signer, "sha512", "sign-file", FakeSigner(signer), on_host=True))
    m = read_module(ko)
    assert res.replaced_signature and m.compression == "xz"
    assert m.data.count(SIG_MAGIC) == 1
    assert m.signature.pkcs7.hash_algo == "sha512"  # type: ignore[union-attr]


def test_sign_failure_names_sign_file_and_leaves_the_module(
    tmp_path: Path, signer: keys.KeyPair
) -> None:
    ko = synthetic_module(tmp_path)
    before = ko.read_bytes()
    job = SignJob(signer, "sha256", "sign-file", FakeSigner(signer, fail=1), on_host=True)
    with pytest.raises(InfraError, match="sign-file failed .exit 1.: At main.c:298"):
        sign_module(ko, job)
    assert ko.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.ko.")]


def test_plans_are_data() -> None:
    assert sign_file_argv("/k/scripts/sign-file", "sha256", "k.pem", "c.der", "m.ko") == [
        "/k/scripts/sign-file",
        "sha256",
        "k.pem",
        "c.der",
        "m.ko",
    ]
    assert strip_argv("aarch64-linux-gnu-strip", "m.ko") == [
        "aarch64-linux-gnu-strip",
        "--strip-debug",
        "m.ko",
    ]
    assert kernel_sig_hash({"CONFIG_MODULE_SIG_HASH": "sha512"}) == "sha512"
    assert kernel_sig_hash({"CONFIG_MODULE_SIG": "y"}) is None


@pytest.mark.parametrize("kind", ["xz", "zstd", "gzip"])
def test_compression_round_trips_through_the_reader(kind: str) -> None:
    from kbuild_py.check.elf.modfile import compression_of

    packed = compress(BODY, kind)
    assert compression_of(packed[:6]) == kind
    if kind == "xz":
        assert packed[6:8] == b"\x00\x01"  # stream flags: CRC32, the in-kernel decoder's check


def test_default_dir_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.signing_dir() == tmp_path / ".local/share/kmod-py/signing"
    assert os.fspath(keys.default_pair().cert).endswith("mok.der")


# --- modinfo's reading of the PKCS#7 blob (check.elf.signature, asn1crypto) ----------


def test_signature_prefixes_are_remembered_across_runs(
    tmp_path: Path, signer: keys.KeyPair
) -> None:
    """A second process reads a blob signed by a known key without importing asn1crypto."""
    import subprocess
    import sys

    signed = append_signature(BODY, signer)
    blob = read_trailer(signed).blob  # type: ignore[union-attr]
    (tmp_path / "blob").write_bytes(blob)
    (tmp_path / "blob2").write_bytes(read_trailer(append_signature(BODY[:-1], signer)).blob)  # type: ignore[union-attr]
    code = (
        "import sys\nfrom kbuild_py.check.elf.signature import parse_pkcs7\n"
        "i = parse_pkcs7(open(sys.argv[1], 'rb').read())\n"
        "print(i.signer, i.key_id.hex(), i.hash_algo, i.signature[-4:].hex(),"
        " 'asn1crypto' in sys.modules)\n"
    )
    env = dict(os.environ, KMOD_PY_CACHE=str(tmp_path / "cache"))

    def run(name: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return out.stdout.split()

    first = run("blob")
    assert first[-1] == "True" and first[0:2] == ["test", "signer"]
    second = run("blob2")  # same key, other module: the remembered prefix answers
    assert second[-1] == "False" and second[:-2] == first[:-2]
    assert second[-2] == blob2_tail(tmp_path)
    # a damaged store is ignored, not trusted
    store = tmp_path / "cache" / "pkcs7-prefixes"
    store.write_bytes(store.read_bytes().replace(b"test signer", b"evil signer"))
    assert run("blob2")[-1] == "True"


def blob2_tail(tmp_path: Path) -> str:
    return (tmp_path / "blob2").read_bytes()[-4:].hex()


def test_modinfo_view_of_a_signature(signer: keys.KeyPair) -> None:
    from kbuild_py.check.elf.signature import pkcs7_info

    sig = read_trailer(append_signature(BODY, signer, "sha384"))
    assert sig is not None and sig.kernel_problem() is None
    facts = read_signed_data(sig.blob)
    info = pkcs7_info(facts)
    assert info.signer == "test signer" and info.hash_algo == "sha384"
    assert info.key_id == serial_magnitude(keys.load_cert(signer.cert).serial_number)
    assert [k for k, _ in sig.kmod_fields()] == [  # type: ignore[union-attr]
        "sig_id", "signer", "sig_key", "sig_hashalgo", "signature",
    ]  # fmt: skip
    assert serial_magnitude(0) == b"" and serial_magnitude(-255) == b"\xff"


def test_strip_program_follows_the_target_architecture(signer: keys.KeyPair) -> None:
    from types import SimpleNamespace

    from kbuild_py.signing.sign import job_for_target

    def target(srcarch: str, where: str = "kmod-py/kernel:x") -> SimpleNamespace:
        tree = SimpleNamespace(config={"CONFIG_MODULE_SIG_HASH": "sha512"}, srcarch=srcarch)
        return SimpleNamespace(tree=tree, kdir="/k", where=where, runner=None, release="r")

    job = job_for_target(target("arm64"), signer, strip=True)  # type: ignore[arg-type]
    assert job.strip == "aarch64-linux-gnu-strip" and job.hash_algo == "sha512"
    assert job.sign_file == "/k/scripts/sign-file" and not job.on_host
    job = job_for_target(target("x86"), signer, strip=True, make_vars={"CROSS_COMPILE": "x-"})  # type: ignore[arg-type]
    assert job.strip == "x-strip"
    assert job_for_target(target("x86"), signer, hash_algo="sha256").strip is None  # type: ignore[arg-type]
    bare = target("x86")
    bare.tree.config = {}
    with pytest.raises(UsageError, match="does not sign modules"):
        job_for_target(bare, signer)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no scripts/sign-file"):
        job_for_target(target("x86", where="host"), signer)  # type: ignore[arg-type]


def test_remembered_prefixes_keep_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store full of old keys' prefixes still learns a new key (the oldest goes)."""
    from kbuild_py.check.elf import signature as sig

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path))
    monkeypatch.setattr(sig, "_PREFIXES", [])
    monkeypatch.setattr(sig, "_loaded", True)
    monkeypatch.setattr(sig, "_MAX_PREFIXES", 2)
    pairs = [pair_in(tmp_path / f"k{i}", cn=f"key {i}") for i in range(3)]
    for p in pairs:
        sig.parse_pkcs7(read_trailer(append_signature(BODY, p)).blob)  # type: ignore[union-attr]
    assert [i.signer for _, _, i in sig._PREFIXES] == ["key 2", "key 1"]
    stored = sig._decode_store((tmp_path / "pkcs7-prefixes").read_bytes())
    assert [i.signer for _, _, i in stored] == ["key 2", "key 1"]
