"""kbuild_py.check.elf.modfile / symvers / signature on real modules built in this session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import checkdata
import pytest

from kbuild_py.check.elf.modfile import read_module
from kbuild_py.check.elf.signature import Pkcs7Error, hex_colon, parse_pkcs7
from kbuild_py.check.elf.symbols import SHN_UNDEF
from kbuild_py.check.elf.symvers import parse_symvers, read_symvers
from kbuild_py.errors import ModuleReadError
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.report.check import modinfo_text

pytestmark = pytest.mark.headers


def test_reads_built_module(built_hello: Path, host_kdir: Path) -> None:
    m = read_module(built_hello)
    tree = BuildTree.open(host_kdir)
    assert m.name == "hello_module" and m.file_name == "hello_module"
    assert m.vermagic == tree.vermagic
    assert m.license in ("GPL", "GPL v2", "Dual MIT/GPL", "Dual BSD/GPL")
    assert m.machine == "EM_X86_64" and m.e_type == 1
    keys = [k for k, _ in m.modinfo]
    assert keys[-1] == "vermagic" and "name" in keys and "depends" in keys
    assert m.get_all("depends") == [""]
    assert "module_layout" in dict(m.versions)
    undefined = {s.name for s in m.undefined_symbols}
    assert "_printk" in undefined and undefined == set(m.needed_names)
    assert "__this_module" in {s.name for s in m.symbols if s.shndx != SHN_UNDEF and s.name}
    assert m.this_module_size and m.this_module_size > 500
    assert m.signature is None and m.compression is None
    assert m.section(".modinfo") is not None and m.count_sections(".modinfo") == 1


def test_fast_and_general_symbol_paths_agree(mods: dict[str, Path]) -> None:
    for name in ("parms", "consumer", "neg_prop", "neg_common"):
        m = read_module(mods[name])
        general = [s.name for s in m.symbols if s.shndx == 0 and s.name]
        assert [s.name for s in m.undefined_symbols] == general


def test_versions_match_modpost_output(mods: dict[str, Path]) -> None:
    """__versions CRCs equal the ones modpost wrote into the .mod.c it compiled."""
    m = read_module(mods["consumer"])
    modc = mods["consumer"].with_suffix(".mod.c").read_text()
    for sym, crc in m.versions:
        assert f'{{ 0x{crc:08x}, "{sym}" }}' in modc


@pytest.mark.parametrize("kind", ["xz", "gz", "zst"])
def test_compressed_copies_read_like_the_original(copies, built_hello: Path, kind: str) -> None:
    m = read_module(copies[kind])
    plain = read_module(built_hello)
    assert m.compression == {"xz": "xz", "gz": "gzip", "zst": "zstd"}[kind]
    assert m.modinfo == plain.modinfo and m.versions == plain.versions
    assert modinfo_text(m).split("\n", 1)[1] == modinfo_text(plain).split("\n", 1)[1]


def test_compression_is_told_by_magic_not_name(copies, tmp_path: Path) -> None:
    odd = tmp_path / "looks_plain.ko"
    shutil.copyfile(copies["xz"], odd)
    assert read_module(odd).compression == "xz"


def _bad_inputs(tmp: Path, hello: Path, copies: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    data = hello.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def put(name: str, content: bytes, reason: str) -> None:
        p = tmp / name
        p.write_bytes(content)
        cases[name] = (p, reason)

    cases["directory"] = (tmp, "is a directory")
    put("empty.ko", b"", "is empty")
    put("text.ko", b"obj-m := hello.o\n", "not an ELF file")
    put("elf_magic_only.ko", data[:10], "truncated ELF header")
    put("no_section_table.ko", data[:4096], "truncated")
    put("cut_tail.ko", data[: len(data) - 200], "truncated")
    put("bad_class.ko", data[:4] + b"\x07" + data[5:], "unknown ELF class")
    put("cut.ko.xz", copies["xz"].read_bytes()[:300], "xz data")
    put("cut.ko.zst", copies["zst"].read_bytes()[:300], "zstd data")
    put("cut.ko.gz", copies["gz"].read_bytes()[:300], "gzip data")
    put("garbage.ko.xz", b"\xfd7zXZ\x00" + b"\x01" * 100, "xz data")
    return cases


def test_unreadable_inputs_give_one_line_reasons(built_hello: Path, copies, tmp_path: Path) -> None:
    obj = tmp_path / "plain.o"  # a relocatable object that is not a module: no .modinfo
    src = tmp_path / "plain.c"
    src.write_text("int plain(void) { return 1; }\n")
    subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], check=True, timeout=60)
    cases = _bad_inputs(tmp_path, built_hello, copies)
    cases["plain.o"] = (obj, "no .modinfo section")
    cases["missing.ko"] = (tmp_path / "missing.ko", "no such file")
    for name, (path, reason) in cases.items():
        with pytest.raises(ModuleReadError) as info:
            read_module(path)
        msg = info.value.message
        assert reason in msg and str(path) in msg and "\n" not in msg, (name, msg)


def test_symvers_formats() -> None:
    text = [
        "0x12345678\tnew_sym\tvmlinux\tEXPORT_SYMBOL_GPL\tCXL\n",  # 5.6+
        "0x00000001\tplain\tdrivers/foo\tEXPORT_SYMBOL\t\n",  # 5.6+, no namespace
        # 5.4: namespace before module
        "0x0000abcd\told_ns\tUSB_STORAGE\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\n",
        "0xdeadbeef\tancient\tvmlinux\tEXPORT_SYMBOL\n",  # <= 5.3
        "garbage line\n",
        "0xzz\tbad_crc\tvmlinux\tEXPORT_SYMBOL\t\n",
    ]
    s = parse_symvers(text)
    assert set(s) == {"new_sym", "plain", "old_ns", "ancient"}
    assert (
        s["new_sym"].namespace == "CXL" and s["new_sym"].gpl_only and s["new_sym"].crc == 0x12345678
    )
    assert (
        s["plain"].module == "drivers/foo"
        and not s["plain"].gpl_only
        and s["plain"].namespace == ""
    )
    assert s["old_ns"].namespace == "USB_STORAGE" and s["old_ns"].module.endswith("usb-storage")
    assert s["ancient"].crc == 0xDEADBEEF and s["ancient"].namespace == ""


def test_real_module_symvers(host_kdir: Path) -> None:
    s = read_symvers(host_kdir / "Module.symvers")
    assert len(s) > 10000
    assert s["module_layout"].module == "vmlinux"
    assert s["ktime_get"].gpl_only
    assert s["insert_resource_expand_to_fit"].namespace == "CXL"


def test_signature_read_like_kmod(mods: dict[str, Path], host_kdir: Path, tmp_path: Path) -> None:
    require_tools("openssl")
    signed = checkdata.sign(tmp_path, host_kdir, mods["parms"], cn="kmod-py signing test")
    m = read_module(signed["path"])
    sig = m.signature
    assert sig is not None and sig.id_type == 2 and sig.kernel_problem() is None
    assert sig.pkcs7.signer == "kmod-py signing test"
    assert sig.pkcs7.hash_algo == "sha256"
    assert sig.pkcs7.key_id.hex().upper() == signed["serial"].upper()
    # kmod's own reading of the same file (it parses PKCS#7 with OpenSSL)
    out = subprocess.run(
        ["modinfo", str(signed["path"])], capture_output=True, text=True, timeout=60
    ).stdout
    assert modinfo_text(m) == out


def test_der_reader_rejects_garbage() -> None:
    for blob in (
        b"",
        b"\x30\x80\x00\x00",
        b"\x30\x05\x06\x03\x2a",
        b"\x04\x02ab",
        b"\x30\x84\xff\xff\xff\xff",
    ):
        with pytest.raises(Pkcs7Error):
            parse_pkcs7(blob)


def test_hex_colon_matches_kmod_wrapping() -> None:
    assert hex_colon(bytes(range(3))) == "00:01:02"
    text = hex_colon(bytes(range(41)))
    lines = text.split("\n\t\t")
    assert [len(x) for x in lines] == [60, 60, 2] and lines[0].endswith(":")


def require_tools(*names: str) -> None:
    from conftest import require

    for n in names:
        require(shutil.which(n) is not None, n)


def test_pkcs7_fast_path_equals_full_parse(image_modules) -> None:
    from kbuild_py.check.elf.signature import pkcs7_info, read_signed_data

    for path in image_modules[:50]:
        sig = read_module(path).signature
        assert sig is not None
        assert sig.pkcs7 == pkcs7_info(read_signed_data(sig.blob))


@pytest.fixture(scope="session")
def image_modules(host_release: str) -> list[Path]:
    from kbuild_py.debian.linuximage import fetch_kernel

    return fetch_kernel(host_release).module_files()
