"""Check rules on real modules: session-built negatives, crafted trees, another Debian kernel."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import checkdata
import pytest
from conftest import require

from kbuild_py.check.elf.modfile import read_module
from kbuild_py.check.engine import check_module, rules_table
from kbuild_py.check.model import ModuleReport
from kbuild_py.check.rules import same_magic
from kbuild_py.kernels.buildtree import BuildTree

pytestmark = pytest.mark.headers


@pytest.fixture(scope="session")
def tree(host_kdir: Path) -> BuildTree:
    return BuildTree.open(host_kdir)


def errors(r: ModuleReport) -> list[tuple[str, str]]:
    return [(f.rule_id, f.message) for f in r.findings if f.severity == "error"]


def test_good_module_passes_against_its_kernel(built_hello: Path, tree: BuildTree) -> None:
    r = check_module(built_hello, tree)
    assert r.ok and r.error is None and errors(r) == []
    assert r.target == tree.release and r.vermagic == tree.vermagic
    assert {"vermagic", "modversions", "unknown-symbol", "namespace"} <= set(r.ran)
    taint = [f.message for f in r.findings if f.rule_id == "taint"]
    assert taint and "O (out-of-tree module)" in taint[0] and "E (unsigned module)" in taint[0]


def test_without_target_only_target_free_rules_run(built_hello: Path) -> None:
    r = check_module(built_hello, None)
    assert r.ok and r.target is None
    needs = {x.id for x in rules_table() if x.needs_target}
    assert needs and not needs & set(r.ran)
    assert {"elf-header", "license", "signature"} <= set(r.ran)


def test_proprietary_module_using_gpl_only_symbol(mods, tree: BuildTree) -> None:
    r = check_module(mods["neg_prop"], tree)
    assert not r.ok
    assert ("license-gpl-symbols", "neg_prop: Unknown symbol ktime_get (err -2)") in errors(r)
    lic = [f for f in r.findings if f.rule_id == "license"]
    assert lic[0].severity == "warning"
    assert lic[0].message == "neg_prop: module license 'Proprietary' taints kernel."
    # without a target the GPL-only use cannot be known: only the taint warning
    assert check_module(mods["neg_prop"], None).ok


def test_namespaced_symbol_without_import(mods, tree: BuildTree) -> None:
    assert errors(check_module(mods["neg_ns"], tree)) == [
        (
            "namespace",
            "neg_ns: module uses symbol (insert_resource_expand_to_fit) from namespace "
            "CXL, but does not import it.",
        ),
    ]


def test_common_symbol_and_write_exec_section(mods) -> None:
    assert errors(check_module(mods["neg_common"], None)) == [
        ("elf-common", "neg_common: please compile with -fno-common (neg_common_counter)")
    ]
    ((rule_id, msg),) = errors(check_module(mods["neg_wx"], None))
    assert rule_id == "elf-wx" and msg.startswith("neg_wx: section .wxtext (index ")
    assert msg.endswith(") has invalid WRITE|EXEC flags")


def test_unknown_symbol_and_extra_symbols(mods, tree: BuildTree) -> None:
    r = check_module(mods["consumer"], tree)
    assert errors(r) == [("unknown-symbol", "consumer: Unknown symbol provider_fn (err -2)")]
    assert check_module(mods["consumer"], tree, extra_symvers=[mods["symvers"]]).ok


def test_stripped_module(copies) -> None:
    r = check_module(copies["stripped"], None)
    assert errors(r) == [("elf-symtab", "hello_module: module has no symbols (stripped?)")]


@pytest.mark.parametrize("kind", ["xz", "gz", "zst"])
def test_compressed_modules_checked_after_decompression(copies, tree: BuildTree, kind: str) -> None:
    r = check_module(copies[kind], tree)
    assert r.ok and r.module is not None and r.module.compression


def test_vermagic_and_crc_against_another_tree(
    built_hello: Path, tree: BuildTree, tmp_path: Path
) -> None:
    m = read_module(built_hello)
    sym = next(s for s, _ in m.versions if s != "module_layout")
    other = checkdata.crafted_tree(
        tmp_path, tree, drop=("CONFIG_MODULE_UNLOAD",), crc_of={sym: 0x1234ABCD}
    )
    assert other.vermagic == "6.1.0-99-amd64 SMP preempt modversions "
    r = check_module(built_hello, other)
    assert (
        "vermagic",
        f"hello_module: version magic '{m.vermagic}' should be "
        f"'6.1.0-99-amd64 SMP preempt modversions '",
    ) in errors(r)
    assert ("modversions", f"hello_module: disagrees about version of symbol {sym}") in errors(r)


def test_release_alone_differs_is_fine_with_modversions(built_hello, tree, tmp_path: Path) -> None:
    """The loader skips the release part when the module has __versions (same_magic)."""
    other = checkdata.crafted_tree(tmp_path, tree, release="6.1.0-98-amd64")
    assert check_module(built_hello, other).ok
    nomv = checkdata.crafted_tree(
        tmp_path / "nomv", tree, release="6.1.0-98-amd64", drop=("CONFIG_MODVERSIONS",)
    )
    assert [e[0] for e in errors(check_module(built_hello, nomv))] == ["vermagic"]


def test_unsigned_refused_under_sig_force(built_hello, tree, tmp_path: Path) -> None:
    forced = checkdata.crafted_tree(
        tmp_path, tree, release=tree.release, add=("CONFIG_MODULE_SIG_FORCE",)
    )
    assert errors(check_module(built_hello, forced)) == [
        ("signature", "Loading of unsigned module is rejected")
    ]


def test_signed_module(mods, host_kdir: Path, tree: BuildTree, tmp_path: Path) -> None:
    require(shutil.which("openssl") is not None, "openssl")
    signed = checkdata.sign(tmp_path, host_kdir, mods["parms"], cn="kmod-py rules test")
    r = check_module(signed["path"], tree)
    assert r.ok
    (info,) = [f.message for f in r.findings if f.rule_id == "signature"]
    assert info == f"signed by 'kmod-py rules test', key {signed['serial'].upper()}, sha256"
    # id_type X509 instead of PKCS#7: the kernel loads it tainted, unless signatures are enforced
    data = bytearray(Path(signed["path"]).read_bytes())
    data[-28 - 12 + 2] = 1
    bad = tmp_path / "x509" / "parms.ko"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    r = check_module(bad, tree)
    assert r.ok and [(f.severity, f.message) for f in r.findings if f.rule_id == "signature"] == [
        ("warning", "parms: not signed with expected PKCS#7 message")
    ]
    forced = checkdata.crafted_tree(
        tmp_path / "forced", tree, release=tree.release, add=("CONFIG_MODULE_SIG_FORCE",)
    )
    assert errors(check_module(bad, forced)) == [
        (
            "signature",
            "parms: not signed with expected PKCS#7 message; "
            "Loading of module with unsupported crypto is rejected",
        )
    ]
    # non-zero fields the kernel requires zeroed: -EBADMSG, refused even when not enforced
    data[-28 - 12 + 2] = 2
    data[-28 - 12] = 1  # algo
    bad2 = tmp_path / "badmsg" / "parms.ko"
    bad2.parent.mkdir()
    bad2.write_bytes(bytes(data))
    assert errors(check_module(bad2, tree)) == [
        ("signature", "parms: PKCS#7 signature not signed with a key")
    ]


def test_struct_module_size(built_hello: Path, tree: BuildTree, tmp_path: Path) -> None:
    from kbuild_py.debian.linuximage import fetch_kernel

    fetch_kernel(tree.release)  # the in-tree modules tell the kernel's sizeof(struct module)
    from kbuild_py.check.engine import _TARGETS

    _TARGETS.clear()
    r = check_module(built_hello, tree)
    assert "module-struct-size" in r.ran and r.ok
    # the same module with a this_module section of another size (as built for another kernel)
    m = read_module(built_hello)
    sec = m.section(".gnu.linkonce.this_module")
    data = bytearray(built_hello.read_bytes())
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + sec.index * 64 + 32, sec.size + 64)
    odd = tmp_path / "hello_module.ko"
    odd.write_bytes(bytes(data))
    ((rule_id, msg),) = errors(check_module(odd, tree))
    assert (
        rule_id == "module-struct-size"
        and "must match the kernel's built struct module size" in msg
    )


def test_module_of_another_debian_kernel(tree: BuildTree) -> None:
    """A real module of linux-image-6.1.0-50-amd64 against the 6.1.0-56 headers: the loader
    would refuse it (symbol CRCs changed between the two ABIs) although vermagic matches."""
    from kbuild_py.debian.linuximage import fetch_kernel

    require(tree.release != "6.1.0-50-amd64", "a host release other than 6.1.0-50")
    img = fetch_kernel("6.1.0-50-amd64", suite="bookworm")
    ko = img.modules_dir / "kernel/net/key/af_key.ko"
    r = check_module(ko, tree)
    assert "vermagic" not in {e[0] for e in errors(r)}
    assert ("modversions", "af_key: disagrees about version of symbol module_layout") in errors(r)


def test_same_magic_rule() -> None:
    a = "6.1.0-50-amd64 SMP preempt mod_unload modversions "
    b = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
    assert same_magic(a, b, True) and not same_magic(a, b, False)
    assert not same_magic(a, "6.1.0-50-amd64 SMP mod_unload modversions ", True)
    assert same_magic(a, a, False)


def test_rule_ids_are_stable_and_unique() -> None:
    ids = [r.id for r in rules_table()]
    assert len(ids) == len(set(ids))
    assert ids == [
        "elf-header",
        "elf-machine",
        "elf-symtab",
        "elf-wx",
        "elf-common",
        "elf-sections",
        "modinfo-format",
        "name",
        "license",
        "license-gpl-symbols",
        "vermagic",
        "modversions",
        "unknown-symbol",
        "namespace",
        "module-struct-size",
        "signature",
        "taint",
        "retpoline",
    ]


def test_target_tables_cached_on_disk(tree: BuildTree, tmp_path: Path) -> None:
    from kbuild_py.check.target import _cache_file, build_target_info

    other = checkdata.crafted_tree(tmp_path, tree, release=tree.release)
    first = build_target_info(other)
    assert _cache_file([other.symvers_path]).is_file()
    again = build_target_info(other)
    assert again.names == first.names and again.version_records == first.version_records
    assert again.exports.keys() == first.names  # details still parsed from Module.symvers
    lines = other.symvers_path.read_text().splitlines()
    other.symvers_path.write_text("\n".join(lines[:100]) + "\n")  # a changed file is seen
    assert len(build_target_info(other).names) == 100


def test_header_fields_the_loader_checks(
    built_hello: Path, tree: BuildTree, tmp_path: Path
) -> None:
    """e_type and e_machine edited in a copy of a real module (as another toolchain would emit)."""
    data = bytearray(built_hello.read_bytes())
    exe = tmp_path / "exe" / "hello_module.ko"
    exe.parent.mkdir()
    exe.write_bytes(bytes(data[:16]) + struct.pack("<H", 2) + bytes(data[18:]))
    assert errors(check_module(exe, None)) == [("elf-header", "Invalid ELF header type: 2 != 1")]
    arm = tmp_path / "hello_module.ko"
    arm.write_bytes(bytes(data[:18]) + struct.pack("<H", 183) + bytes(data[20:]))
    assert check_module(arm, None).ok  # the machine needs a target to judge
    ((rule_id, msg),) = errors(check_module(arm, tree))
    assert rule_id == "elf-machine" and msg.startswith("Invalid architecture in ELF header: 183")


def test_modinfo_string_without_equals(mods, tmp_path: Path) -> None:
    odd = checkdata.patch_modinfo(
        mods["parms"], tmp_path / "parms.ko", b"author=kmod-py tests", b"author kmod-py tests"
    )
    r = check_module(odd, None)
    assert r.ok  # a warning: the kernel ignores such strings
    (f,) = [f for f in r.findings if f.rule_id == "modinfo-format"]
    assert f.severity == "warning" and "'author kmod-py tests'" in f.message


def test_forced_loads_follow_module_force_load(
    built_hello: Path, tree: BuildTree, tmp_path: Path
) -> None:
    """No vermagic / no __versions: try_to_force_load() taints (F) with
    CONFIG_MODULE_FORCE_LOAD (Debian has it) and refuses the module without it."""
    assert tree.config.get("CONFIG_MODULE_FORCE_LOAD") == "y"
    m = read_module(built_hello)
    nomagic = checkdata.patch_modinfo(
        built_hello, tmp_path / "hello_module.ko", f"vermagic={m.vermagic}".encode(), b""
    )
    data = bytearray(built_hello.read_bytes())  # rename __versions: as built without modversions
    names = m.section(".shstrtab")
    assert names is not None
    at = data.index(b"__versions\0", names.offset)
    data[at : at + 10] = b"__xersions"
    noversions = tmp_path / "nv" / "hello_module.ko"
    noversions.parent.mkdir()
    noversions.write_bytes(bytes(data))
    strict = checkdata.crafted_tree(
        tmp_path / "strict", tree, release=tree.release, drop=("CONFIG_MODULE_FORCE_LOAD",)
    )
    for path, rule_id, reason in (
        (nomagic, "vermagic", "bad vermagic"),
        (noversions, "modversions", "module_layout"),
    ):
        (f,) = [f for f in check_module(path, tree).findings if f.rule_id == rule_id]
        assert (f.severity, f.message) == ("warning", f"hello_module: {reason}: kernel tainted.")
        (f,) = [f for f in check_module(path, strict).findings if f.rule_id == rule_id]
        assert f.severity == "error" and "-ENOEXEC" in f.message
