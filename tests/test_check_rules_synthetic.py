"""Every check rule's pass and fail paths on synthetic modules (tests/elfbuilder.py):
unit tier, no kernel headers. The real-module tests are in test_check_rules.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from elfbuilder import EM_AARCH64, SHF_EXECINSTR, SHF_WRITE, VERMAGIC, Mod, build, trailer

from kbuild_py.check.elf.modfile import module_from_bytes
from kbuild_py.check.elf.symvers import Export
from kbuild_py.check.engine import run_rules
from kbuild_py.check.model import Finding, Issue, ModuleReport, TargetInfo
from kbuild_py.check.rules import RULES

EXPORTS = {
    "printk": Export("printk", 0x1234, "vmlinux", "EXPORT_SYMBOL"),
    "gpl_thing": Export("gpl_thing", 0x99, "vmlinux", "EXPORT_SYMBOL_GPL"),
    "ns_thing": Export("ns_thing", 0x77, "drivers/x", "EXPORT_SYMBOL", "MY_NS"),
}
CONFIG = {"CONFIG_MODVERSIONS": "y", "CONFIG_RETPOLINE": "y"}


def target(**kw: object) -> TargetInfo:
    base = TargetInfo(
        release="6.1.0-test", source="/fake", vermagic=VERMAGIC, elf_machine="EM_X86_64",
        config=dict(CONFIG), symvers_files=("Module.symvers",), module_struct_size=1344,
        read_exports=lambda _p: EXPORTS,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def check(mod: Mod | None = None, t: TargetInfo | None = None, name: str = "m.ko",
          *, with_target: bool = True) -> ModuleReport:
    m = module_from_bytes(build(mod), name)
    return run_rules(m, (t or target()) if with_target else None)


def of(report: ModuleReport, rule_id: str) -> list[Finding]:
    return [f for f in report.findings if f.rule_id == rule_id]


def test_a_well_formed_module_passes_every_rule() -> None:
    r = check()
    assert r.ok and r.error is None
    assert r.ran == [x.id for x in RULES] and not r.skipped
    # unsigned and out of tree: the only findings are infos
    assert {(f.rule_id, f.severity) for f in r.findings} == {("signature", "info"),
                                                             ("taint", "info")}


def test_rules_are_declared_once_with_unique_ids() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for r in RULES:
        assert (r.check is None) != (r.check_target is None), r.id
        assert r.severity in ("error", "warning", "info")


def test_findings_take_id_and_default_severity_from_the_declaration() -> None:
    vermagic = next(r for r in RULES if r.id == "vermagic")
    m = module_from_bytes(build(Mod(modinfo=["license=GPL", "name=m", "vermagic=other"])), "m.ko")
    [f] = vermagic.findings(m, target())
    assert f.rule_id == "vermagic" and f.severity == "error"
    assert Issue("x").severity is None  # the rule's severity applies


def test_target_rules_do_not_run_without_a_target() -> None:
    r = check(Mod(machine=EM_AARCH64), with_target=False)
    needs = {x.id for x in RULES if x.needs_target}
    assert needs and not needs & set(r.ran)
    assert not of(r, "elf-machine")


def test_elf_header() -> None:
    assert of(check(Mod(e_type=2)), "elf-header")[0].message == "Invalid ELF header type: 2 != 1"
    bad = of(check(Mod(shstrtab_terminated=False)), "elf-header")
    assert [f.message for f in bad] == [
        "ELF Spec violation: section name table isn't null terminated"]


def test_elf_machine() -> None:
    [f] = of(check(Mod(machine=EM_AARCH64)), "elf-machine")
    assert "183 (EM_AARCH64; 6.1.0-test needs EM_X86_64)" in f.message
    assert not of(check(Mod(machine=EM_AARCH64), target(elf_machine="EM_AARCH64")), "elf-machine")


def test_elf_symtab() -> None:
    [f] = of(check(Mod(symtabs=0)), "elf-symtab")
    assert f.message == "m: module has no symbols (stripped?)"
    [f] = of(check(Mod(symtabs=2)), "elf-symtab")
    assert f.message.endswith("(2 symbol tables)")
    [f] = of(check(Mod(symtab_link=0)), "elf-symtab")
    assert f.message.startswith("Invalid ELF sh_link!=SHN_UNDEF(0)")


def test_elf_wx() -> None:
    [f] = of(check(Mod(text_flags=SHF_WRITE | SHF_EXECINSTR)), "elf-wx")
    assert f.message == "m: section .text (index 1) has invalid WRITE|EXEC flags"


def test_elf_common() -> None:
    [f] = of(check(Mod(common=["counter"])), "elf-common")
    assert f.message == "m: please compile with -fno-common (counter)"


def test_elf_sections() -> None:
    [f] = of(check(Mod(this_module_size=None)), "elf-sections")
    assert f.message == "m: No module found in object"
    [f] = of(check(Mod(modinfo_sections=2)), "elf-sections")
    assert f.message == "m: module has more than one .modinfo section"


def test_modinfo_format() -> None:
    mod = Mod(modinfo=["license=GPL", "name=m", f"vermagic={VERMAGIC}", "junk", "more"])
    [f] = of(check(mod), "modinfo-format")
    assert (f.severity, f.message) == ("warning", ".modinfo entry without '=': 'junk' and 1 more")


def test_name() -> None:
    long = "x" * 56
    mi = ["license=GPL", f"name={long}", f"vermagic={VERMAGIC}"]
    r = check(Mod(modinfo=mi), name=f"{long}.ko")
    assert [(f.severity, f.message) for f in of(r, "name")] == [
        ("error", f"module name '{long}' is 56 characters; the loader allows 55")]
    r = check(Mod(modinfo=["license=GPL", "name=other", f"vermagic={VERMAGIC}"]))
    [f] = of(r, "name")
    assert f.severity == "warning" and f.hint == "rename the file to other.ko"
    r = check(Mod(modinfo=["license=GPL", f"vermagic={VERMAGIC}"]))
    assert [f.severity for f in of(r, "name")] == ["warning"]  # no name=: modpost writes it
    r = check(Mod(modinfo=["license=GPL", "name=m-x", f"vermagic={VERMAGIC}"]), name="m-x.ko")
    assert "characters other than" in of(r, "name")[0].message


def test_license() -> None:
    [f] = of(check(Mod(modinfo=["name=m", f"vermagic={VERMAGIC}"])), "license")
    assert (f.severity, f.message) == ("error", "missing MODULE_LICENSE() in m.ko")
    r = check(Mod(modinfo=["license=Proprietary", "name=m", f"vermagic={VERMAGIC}"]))
    [f] = of(r, "license")
    assert (f.severity, f.message) == ("warning", "m: module license 'Proprietary' taints kernel.")
    assert "P (proprietary module)" in of(r, "taint")[0].message


def test_license_gpl_symbols() -> None:
    mi = ["license=Proprietary", "name=m", f"vermagic={VERMAGIC}"]
    [f] = of(check(Mod(modinfo=mi, undefined=["printk", "gpl_thing"], versions=None)),
             "license-gpl-symbols")
    assert f.message == "m: Unknown symbol gpl_thing (err -2)" and "EXPORT_SYMBOL_GPL" in f.hint
    assert not of(check(Mod(undefined=["printk", "gpl_thing"], versions=None)),
                  "license-gpl-symbols")


def test_vermagic() -> None:
    r = check(Mod(modinfo=["license=GPL", "name=m", "vermagic=5.10.0 SMP mod_unload "]))
    [f] = of(r, "vermagic")
    assert f.message == f"m: version magic '5.10.0 SMP mod_unload ' should be '{VERMAGIC}'"
    # with __versions only the part after the release is compared
    other = "6.1.0-other SMP preempt mod_unload modversions "
    assert not of(check(Mod(modinfo=["license=GPL", "name=m", f"vermagic={other}"])), "vermagic")
    no_magic = Mod(modinfo=["license=GPL", "name=m"])
    [f] = of(check(no_magic), "vermagic")
    assert f.severity == "error" and "refused (-ENOEXEC" in f.message
    forced = target(config={**CONFIG, "CONFIG_MODULE_FORCE_LOAD": "y"})
    [f] = of(check(no_magic, forced), "vermagic")
    assert (f.severity, f.message) == ("warning", "m: bad vermagic: kernel tainted.")


def test_modversions() -> None:
    [f] = of(check(Mod(versions=[("printk", 0xDEAD)])), "modversions")
    assert f.message == "m: disagrees about version of symbol printk"
    assert "module has 0x0000dead, 6.1.0-test exports 0x00001234" in f.hint
    [f] = of(check(Mod(versions=None)), "modversions")
    assert "module_layout: refused" in f.message
    assert not of(check(Mod(versions=None), target(config={})), "modversions")
    r = check(Mod(), target(read_exports=None))
    assert r.skipped["modversions"] == "no Module.symvers in /fake"


def test_modversions_general_path_on_big_endian_32_bit() -> None:
    mod = Mod(elf_class=1, big_endian=True, versions=[("printk", 0xBEEF)])
    [f] = of(check(mod), "modversions")
    assert "module has 0x0000beef" in f.hint


def test_unknown_symbol() -> None:
    [f] = of(check(Mod(undefined=["printk", "nowhere"])), "unknown-symbol")
    assert f.message == "m: Unknown symbol nowhere (err -2)"
    assert check(Mod(), target(read_exports=None)).skipped["unknown-symbol"].startswith("no ")


def test_namespace() -> None:
    [f] = of(check(Mod(undefined=["ns_thing"], versions=None)), "namespace")
    assert f.message == ("m: module uses symbol (ns_thing) from namespace MY_NS, "
                         "but does not import it.")
    mi = ["license=GPL", "name=m", f"vermagic={VERMAGIC}", "import_ns=MY_NS"]
    assert not of(check(Mod(modinfo=mi, undefined=["ns_thing"], versions=None)), "namespace")


def test_module_struct_size() -> None:
    [f] = of(check(Mod(this_module_size=1280)), "module-struct-size")
    assert f.message.endswith("(1280 != 1344)")
    r = check(Mod(), target(module_struct_size=None))
    assert "struct module size of 6.1.0-test unknown" in r.skipped["module-struct-size"]


def test_signature_paths() -> None:
    [f] = of(check(Mod(trailer=b"garbage" + b"~Module signature appended~\n")), "signature")
    assert (f.severity, f.message) == ("error", "m: module signature trailer is malformed")
    enforcing = target(config={**CONFIG, "CONFIG_MODULE_SIG_FORCE": "y"})
    [f] = of(check(Mod(), enforcing), "signature")
    assert (f.severity, f.message) == ("error", "Loading of unsigned module is rejected")
    assert f.hint.startswith("6.1.0-test has CONFIG_MODULE_SIG_FORCE")
    pgp = Mod(trailer=trailer(id_type=0, signer=b"me", key_id=b"k"))
    [f] = of(check(pgp), "signature")
    assert f.severity == "warning" and "not signed with expected PKCS#7 message" in f.message
    [f] = of(check(pgp, enforcing), "signature")
    assert f.severity == "error" and f.message.endswith("unsupported crypto is rejected")
    [f] = of(check(Mod(trailer=trailer())), "signature")  # PKCS#7 id, unparsable blob
    assert (f.severity, f.message) == ("error", "m: PKCS#7 signature blob could not be parsed")


def test_taint_flags() -> None:
    mi = ["license=GPL", "name=m", f"vermagic={VERMAGIC}", "intree=Y", "staging=Y", "test=Y",
          "livepatch=Y"]
    [f] = of(check(Mod(modinfo=mi)), "taint")
    assert f.message == ("loading taints the kernel: E (unsigned module), C (staging driver), "
                         "N (test module), K (live patch)")


def test_retpoline() -> None:
    mi = ["license=GPL", "name=m", f"vermagic={VERMAGIC}"]
    [f] = of(check(Mod(modinfo=mi)), "retpoline")
    assert f.message == "m: loading module not compiled with retpoline compiler."
    assert not of(check(Mod(modinfo=mi), target(config={"CONFIG_MODVERSIONS": "y"})), "retpoline")


@pytest.mark.parametrize("knob", [{"elf_class": 1}, {"big_endian": True}])
def test_other_elf_layouts_pass_too(knob: dict[str, object]) -> None:
    r = check(Mod(**knob), target())  # type: ignore[arg-type]
    assert r.ok, r.findings


def test_report_path_is_the_name_given(tmp_path: Path) -> None:
    assert check(name="x/m.ko").path == Path("x/m.ko")
