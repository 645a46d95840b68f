"""The check rules: each a pure function of a ModuleFile (and a TargetInfo) -> issues,
declared with module_rule (runs on every module; its target may be None) or target_rule
(runs only with a target kernel, never None). The engine runs RULES, in that order, and
gives each issue the rule's id (and its declared severity unless the issue is milder).

Messages use the kernel's own words (kernel/module/*.c, scripts/mod/modpost.c)
where it has them, prefixed with the module name as the kernel log shows them.
Rule IDs are stable: scripts and --json consumers may depend on them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import repeat
from operator import and_

from kbuild_py.check.elf.modfile import ET_REL, SHF_EXECINSTR, SHF_WRITE, ModuleFile
from kbuild_py.check.elf.signature import PKEY_ID_PKCS7, has_magic
from kbuild_py.check.elf.symbols import SHN_UNDEF
from kbuild_py.check.model import Issue, Rule, Skip, TargetInfo, module_rule, target_rule
from kbuild_py.licenses import GPL_COMPATIBLE

MODULE_NAME_MAX = 55  # MODULE_NAME_LEN (64 - sizeof(unsigned long)) minus the NUL on 64-bit
REBUILD = "rebuild the module against the target kernel's headers (kmod-py build --kernel RELEASE)"


def warning(message: str, hint: str | None = None) -> Issue:
    """An issue milder than its rule's declared severity."""
    return Issue(message, hint, "warning")


def info(message: str, hint: str | None = None) -> Issue:
    return Issue(message, hint, "info")


# --- ELF, like elf_validity_check() -------------------------------------------------------


@module_rule(
    "elf-header", "error", "ELF relocatable object, section 0 null, section names NUL-terminated"
)
def elf_header(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    if m.e_type != ET_REL:
        yield Issue(
            f"Invalid ELF header type: {m.e_type} != {ET_REL}",
            "a module is a relocatable object (.ko from Kbuild), not an executable or library",
        )
    if m.sh_type[0] != 0 or m.sh_size[0] != 0 or m.header(0)[3] != 0:
        yield Issue(
            f"ELF Spec violation: section 0 type({m.sh_type[0]})!=SH_NULL or non-zero len or addr",
        )
    if not m.shstrtab_terminated:
        yield Issue("ELF Spec violation: section name table isn't null terminated")


@target_rule("elf-machine", "error", "e_machine is the target kernel's architecture")
def elf_machine(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    if t.elf_machine and m.machine != t.elf_machine:
        yield Issue(
            f"Invalid architecture in ELF header: {m.e_machine} ({m.machine}; "
            f"{t.release} needs {t.elf_machine})",
            "build with the target's ARCH= and CROSS_COMPILE=",
        )


@module_rule("elf-symtab", "error", "exactly one symbol table (SHT_SYMTAB) with a valid sh_link")
def elf_symtab(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    tabs = m.symtab_indices
    if len(tabs) != 1:
        extra = "" if not tabs else f" ({len(tabs)} symbol tables)"
        yield Issue(
            f"{m.name}: module has no symbols (stripped?){extra}",
            "do not strip modules with --strip-all; use --strip-debug (INSTALL_MOD_STRIP=1)",
        )
        return
    link = m.sh_link[tabs[0]]
    if link == SHN_UNDEF or link >= m.e_shnum:
        yield Issue(
            f"Invalid ELF sh_link!=SHN_UNDEF({link}) or "
            f"(sh_link({link}) >= hdr->e_shnum({m.e_shnum})",
        )


@module_rule("elf-wx", "error", "no section is both writable and executable")
def elf_wx(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    wx = SHF_WRITE | SHF_EXECINSTR
    if wx not in map(and_, m.sh_flags, repeat(wx)):  # scanned in C
        return
    for i, flags in enumerate(m.sh_flags):
        if flags & wx == wx:
            sec = m.sections[i]
            yield Issue(
                f"{m.name}: section {sec.name} (index {i}) has invalid WRITE|EXEC flags",
                "do not mark code sections writable (check __attribute__((section)) and asm)",
            )


@module_rule("elf-common", "error", "no SHN_COMMON symbols")
def elf_common(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    common = m.common_symbols
    if common:
        names = ", ".join(s.name for s in common[:5])
        yield Issue(
            f"{m.name}: please compile with -fno-common ({names})",
            "define each global once, or make it static",
        )


@module_rule("elf-sections", "error", "exactly one .modinfo and one .gnu.linkonce.this_module")
def elf_sections(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    if m.section(".gnu.linkonce.this_module") is None:
        yield Issue(
            f"{m.name}: No module found in object",
            "link the module with Kbuild (modpost adds .gnu.linkonce.this_module)",
        )
    if m.count_sections(".modinfo") > 1:
        yield Issue(f"{m.name}: module has more than one .modinfo section")


# --- .modinfo ------------------------------------------------------------------------------


@module_rule("modinfo-format", "warning", ".modinfo entries are key=value strings")
def modinfo_format(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    bad = m.modinfo_malformed
    if bad:
        yield Issue(
            f".modinfo entry without '=': {bad[0]!r}"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else ""),
            "use the MODULE_* macros, which write key=value",
        )


_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


@module_rule("name", "error", "module name present, at most 55 characters, matching the file name")
def name_rule(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    name = m.get("name")
    if name is None:
        yield warning("no name= in .modinfo (modpost writes it)", REBUILD)
        name = m.file_name
    if len(name) > MODULE_NAME_MAX:
        yield Issue(
            f"module name {name!r} is {len(name)} characters; the loader allows {MODULE_NAME_MAX}",
            "rename the module (obj-m := shorter.o)",
        )
    elif not _NAME_RE.match(name):
        yield warning(f"module name {name!r} has characters other than [A-Za-z0-9_]")
    if name != m.file_name:
        yield warning(
            f"module name {name!r} differs from the file name ({m.path.name}); "
            "modprobe finds modules by file name",
            f"rename the file to {name}.ko",
        )


@module_rule("license", "error", "MODULE_LICENSE present and GPL-compatible (else taint P)")
def license_rule(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    lic = m.license
    if lic is None:
        yield Issue(
            f"missing MODULE_LICENSE() in {m.path.name}",
            'add MODULE_LICENSE("GPL") (or another GPL-compatible string)',
        )
    elif lic not in GPL_COMPATIBLE:
        yield warning(
            f"{m.name}: module license '{lic}' taints kernel.",
            "GPL-only symbols are refused to this module; GPL-compatible: "
            + ", ".join(GPL_COMPATIBLE),
        )


@target_rule("license-gpl-symbols", "error", "a non-GPL module uses no EXPORT_SYMBOL_GPL symbol")
def gpl_symbols(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    if m.license in GPL_COMPATIBLE:
        return
    for name in sorted(m.needed_names & t.gpl_only):
        exp = t.exports[name]
        yield Issue(
            f"{m.name}: Unknown symbol {name} (err -2)",
            f"{name} is EXPORT_SYMBOL_GPL in {exp.module}: a module licensed "
            f"'{m.license or 'unspecified'}' cannot use it; use a GPL-compatible license",
        )


# --- target kernel: vermagic, versions, symbols ------------------------------------------


def same_magic(module_magic: str, kernel_magic: str, has_versions: bool) -> bool:
    """kernel/module/version.c: with __versions compare from the first space on, else all."""
    if has_versions:
        a, b = module_magic.find(" "), kernel_magic.find(" ")
        return (
            module_magic[a:] == kernel_magic[b:]
            if a >= 0 and b >= 0
            else module_magic == kernel_magic
        )
    return module_magic == kernel_magic


@target_rule("vermagic", "error", "vermagic matches the target kernel (the loader's same_magic)")
def vermagic(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    magic = m.vermagic
    if magic is None:
        yield _forced(m, t, "bad vermagic")
    elif not same_magic(magic, t.vermagic, m.has_versions and t.enabled("CONFIG_MODVERSIONS")):
        yield Issue(
            f"{m.name}: version magic '{magic}' should be '{t.vermagic}'",
            REBUILD.replace("RELEASE", t.release),
        )


def _forced(m: ModuleFile, t: TargetInfo, reason: str) -> Issue:
    """The loader's try_to_force_load(): with CONFIG_MODULE_FORCE_LOAD the module loads and
    taints the kernel (F), without it the load fails with -ENOEXEC."""
    hint = REBUILD.replace("RELEASE", t.release)
    if t.enabled("CONFIG_MODULE_FORCE_LOAD"):
        return warning(f"{m.name}: {reason}: kernel tainted.", "taints F; " + hint)
    return Issue(
        f"{m.name}: {reason}: refused (-ENOEXEC, no CONFIG_MODULE_FORCE_LOAD)",
        hint,
    )


@target_rule("modversions", "error", "symbol CRCs (__versions) match the target's Module.symvers")
def modversions(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    if not t.enabled("CONFIG_MODVERSIONS"):
        return
    if not m.has_versions:  # check_version(): "No versions at all?  modprobe --force does this."
        yield _forced(m, t, "module_layout")
        return
    if not t.names:
        raise Skip(f"no Module.symvers in {t.source}")
    records = m.version_records()
    if records is None:
        versions = m.versions
    elif t.version_records.issuperset(records):  # the usual case, all in C
        return
    else:  # compare raw records, decode only those that differ
        versions = [m.decode_version(r) for r in set(records) - t.version_records]
        if not versions:
            return
    for sym, crc in sorted(set(versions) - t.crc_pairs):
        exp = t.exports.get(sym)
        if exp is not None and exp.crc and exp.crc != crc:
            yield Issue(
                f"{m.name}: disagrees about version of symbol {sym}",
                f"module has 0x{crc:08x}, {t.release} exports 0x{exp.crc:08x}: "
                + REBUILD.replace("RELEASE", t.release),
            )


@target_rule(
    "unknown-symbol",
    "error",
    "every undefined symbol is exported by the target (or --extra-symbols)",
)
def unknown_symbol(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    if not t.names:
        raise Skip(f"no Module.symvers in {t.source}")
    for name in sorted(m.needed_names - t.names):
        yield Issue(
            f"{m.name}: Unknown symbol {name} (err -2)",
            "pass the Module.symvers of the module that exports it with --extra-symbols "
            "(KBUILD_EXTRA_SYMBOLS), or check the symbol exists in this kernel",
        )


@target_rule("namespace", "error", "namespaced symbols are imported with MODULE_IMPORT_NS")
def namespace(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    used = m.needed_names & t.namespaced_names
    imported = set(m.get_all("import_ns")) if used else set()
    for name in sorted(used):
        ns = t.namespaced[name]
        if ns.strip('"') not in imported and ns not in imported:
            yield Issue(
                f"{m.name}: module uses symbol ({name}) from namespace {ns}, "
                "but does not import it.",
                f"add MODULE_IMPORT_NS({ns}); to the module source",
            )


@target_rule(
    "module-struct-size",
    "error",
    ".gnu.linkonce.this_module size equals the target's struct module",
)
def struct_size(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    size = m.this_module_size
    if size is None:
        return  # elf-sections reports it
    if t.module_struct_size is None:
        raise Skip(f"struct module size of {t.release} unknown (no in-tree module of it here)")
    if size != t.module_struct_size:
        yield Issue(
            f"module {m.name}: .gnu.linkonce.this_module section size must match the kernel's "
            f"built struct module size at run time ({size} != {t.module_struct_size})",
            REBUILD.replace("RELEASE", t.release),
        )


# --- signature, taints, mitigations -------------------------------------------------------


@module_rule(
    "signature",
    "error",
    "appended signature well-formed; unsigned is refused under MODULE_SIG_FORCE",
)
def signature(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    sig = m.signature
    forced_by = t.release if t is not None and t.enabled("CONFIG_MODULE_SIG_FORCE") else None
    force = forced_by is not None
    if sig is None:
        if has_magic(m.data):
            yield Issue(
                f"{m.name}: module signature trailer is malformed",
                "re-sign with scripts/sign-file from the target's build tree",
            )
        elif forced_by is not None:
            yield Issue(
                "Loading of unsigned module is rejected",
                f"{forced_by} has CONFIG_MODULE_SIG_FORCE: sign it with scripts/sign-file",
            )
        else:
            yield info(
                f"{m.name}: module verification failed: signature and/or required key missing "
                "- tainting kernel",
                "unsigned: taints E; sign with scripts/sign-file",
            )
        return
    problem = sig.kernel_problem()
    if problem and sig.id_type != PKEY_ID_PKCS7:
        # mod_check_sig: -ENOPKG, "module with unsupported crypto": only refused when
        # signatures are enforced, else loaded with taint E
        yield Issue(
            f"{m.name}: {problem}"
            + ("; Loading of module with unsupported crypto is rejected" if force else ""),
            "sign with scripts/sign-file (PKCS#7) from the target's build tree",
            None if force else "warning",
        )
        return
    if problem:  # -EBADMSG: fatal even when signatures are not enforced
        yield Issue(
            f"{m.name}: {problem}",
            "sign with scripts/sign-file (PKCS#7) from the target's build tree",
        )
        return
    p = sig.pkcs7
    yield info(
        f"signed by '{p.signer}', key {p.key_id.hex().upper()}, {p.hash_algo}",
        "the target must trust this key (built in, or enrolled), else it taints E",
    )


@module_rule("taint", "info", "which taint flags loading the module sets (O E P C N K)")
def taint(m: ModuleFile, t: TargetInfo | None) -> Iterator[Issue]:
    flags = []
    if m.license is None or m.license not in GPL_COMPATIBLE:
        flags.append("P (proprietary module)")
    if m.get("intree") is None:
        flags.append("O (out-of-tree module)")
    if m.signature is None:
        flags.append("E (unsigned module)")
    if m.get("staging") is not None:
        flags.append("C (staging driver)")
    if m.get("test") is not None:
        flags.append("N (test module)")
    if m.get("livepatch") is not None:
        flags.append("K (live patch)")
    if flags:
        yield Issue("loading taints the kernel: " + ", ".join(flags))


@target_rule("retpoline", "warning", "built with retpoline when the target kernel uses it")
def retpoline(m: ModuleFile, t: TargetInfo) -> Iterator[Issue]:
    if (t.enabled("CONFIG_RETPOLINE") or t.enabled("CONFIG_MITIGATION_RETPOLINE")) and m.get(
        "retpoline"
    ) is None:
        yield Issue(
            f"{m.name}: loading module not compiled with retpoline compiler.",
            "build with the kernel's compiler (CONFIG_CC_VERSION_TEXT) "
            "so -mindirect-branch=thunk is used",
        )


RULES: tuple[Rule, ...] = (
    elf_header,
    elf_machine,
    elf_symtab,
    elf_wx,
    elf_common,
    elf_sections,
    modinfo_format,
    name_rule,
    license_rule,
    gpl_symbols,
    vermagic,
    modversions,
    unknown_symbol,
    namespace,
    struct_size,
    signature,
    taint,
    retpoline,
)
