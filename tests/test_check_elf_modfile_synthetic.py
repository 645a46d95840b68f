"""The module reader on synthetic modules (tests/elfbuilder.py): every ELF layout it decodes,
the fast 64-bit little-endian paths against the general ones, and the one-line reasons of
files it refuses. Unit tier; the real-module tests are in test_check_elf_modfile.py."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest
from elfbuilder import EM_AARCH64, Mod, build, trailer

from kbuild_py.check.elf.modfile import module_from_bytes
from kbuild_py.errors import ModuleReadError

LAYOUTS = [
    pytest.param({}, id="64le"),
    pytest.param({"big_endian": True}, id="64be"),
    pytest.param({"elf_class": 1}, id="32le"),
    pytest.param({"elf_class": 1, "big_endian": True}, id="32be"),
]


@pytest.mark.parametrize("knob", LAYOUTS)
def test_every_layout_reads_the_same(knob: dict[str, object]) -> None:
    mod = Mod(undefined=["printk", "kfree"], common=["counter"],
              versions=[("printk", 0x1234), ("kfree", 0xABCD)], **knob)  # type: ignore[arg-type]
    m = module_from_bytes(build(mod), "dir/m.ko")
    assert m.get("license") == "GPL" and m.name == "m" and m.file_name == "m"
    assert m.needed_names == {"printk", "kfree"}
    assert [s.name for s in m.undefined_symbols] == ["printk", "kfree"]
    assert [s.name for s in m.common_symbols] == ["counter"]
    assert m.versions == [("printk", 0x1234), ("kfree", 0xABCD)]
    assert m.has_versions and m.this_module_size == 1344
    assert m.machine == "EM_X86_64" and m.e_type == 1
    assert [s.name for s in m.sections][:3] == ["", ".text", ".modinfo"]
    assert len(m.symtab_indices) == 1 and m.shstrtab_terminated
    assert m.signature is None


def test_fast_version_records_decode_like_the_general_path() -> None:
    m = module_from_bytes(build(Mod(versions=[("printk", 7), ("a" * 55, 2**40)])), "m.ko")
    records = m.version_records()
    assert records is not None and len(records) == 2
    assert [m.decode_version(r) for r in records] == m.versions == [("printk", 7),
                                                                     ("a" * 55, 2**40)]
    big = module_from_bytes(build(Mod(big_endian=True)), "m.ko")
    assert big.version_records() is None  # the general path decodes it


def test_modinfo_lookups() -> None:
    mi = ["license=GPL", "alias=a", "alias=b", "name=m", "depends=", "bad"]
    m = module_from_bytes(build(Mod(modinfo=mi)), "m.ko")
    assert m.get_all("alias") == ["a", "b"] and m.get("alias") == "a"
    assert m.get("depends") == "" and m.get("nope") is None and m.vermagic is None
    assert m.modinfo_malformed == ["bad"]


def test_file_name_as_kmod_derives_it() -> None:
    data = build()
    assert module_from_bytes(data, "a-b,c.ko.xz").file_name == "a_b_c"
    assert module_from_bytes(data, "x.ko").name == "m"  # name= wins


def test_machine_names() -> None:
    assert module_from_bytes(build(Mod(machine=EM_AARCH64)), "m.ko").machine == "EM_AARCH64"
    assert module_from_bytes(build(Mod(machine=4242)), "m.ko").machine == "EM_4242"


@pytest.mark.parametrize("pack", [gzip.compress, lzma.compress], ids=["gz", "xz"])
def test_compressed_bytes_read_like_the_original(pack) -> None:  # type: ignore[no-untyped-def]
    m = module_from_bytes(pack(build()), "m.ko.gz")
    assert m.compression in ("gzip", "xz") and m.versions == [("printk", 0x1234)]


def test_signature_trailer_is_read() -> None:
    m = module_from_bytes(build(Mod(trailer=trailer(id_type=1, signer=b"me", key_id=b"ab"))),
                          "m.ko")
    sig = m.signature
    assert sig is not None and sig.id_type == 1 and sig.signer_raw == b"me"
    assert sig.key_id_raw == b"ab"


def _shnum_zero(data: bytes) -> bytes:
    return data[:0x3C] + b"\0\0" + data[0x3E:]


def _bad_shentsize(data: bytes) -> bytes:
    return data[:0x3A] + struct.pack("<H", 12) + data[0x3C:]


def _bad_shstrndx(data: bytes) -> bytes:
    return data[:0x3E] + struct.pack("<H", 999) + data[0x3E + 2 :]


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda d: b"", "is empty"),
    (lambda d: b"MZ" + d[2:], "not an ELF file (bad magic)"),
    (lambda d: d[:10], "truncated ELF header"),
    (lambda d: d[:4] + b"\x07" + d[5:], "unknown ELF class/data 7/1"),
    (lambda d: d[:40], "truncated ELF header"),
    (_shnum_zero, "no section header table"),
    (_bad_shentsize, "invalid ELF section header size 12"),
    (_bad_shstrndx, "invalid section name table index 999"),
    (lambda d: d[: len(d) - 200], "truncated (section header table past end of file)"),
])  # fmt: skip
def test_unreadable_files_give_one_line_reasons(mangle, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModuleReadError) as err:
        module_from_bytes(mangle(build()), "m.ko")
    assert err.value.message == f"m.ko: {reason}"


def test_an_object_without_modinfo_is_not_a_module() -> None:
    with pytest.raises(ModuleReadError, match=r"no \.modinfo section \(not a kernel module\)"):
        module_from_bytes(build(Mod(modinfo_sections=0)), "m.ko")
