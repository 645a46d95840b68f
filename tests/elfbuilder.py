"""Synthetic kernel modules for unit tests: the ELF bytes of a relocatable object with the
sections a module has (.text, .modinfo, .gnu.linkonce.this_module, __versions, .symtab,
.strtab, .shstrtab), built in memory so the rules and the module reader can be tested
without kernel headers. Each knob breaks one thing the loader or modpost checks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_COMMON = 0, 0xFFF2
STB_GLOBAL = 1
EM_X86_64, EM_AARCH64 = 62, 183
SIG_MAGIC = b"~Module signature appended~\n"
VERMAGIC = "6.1.0-test SMP preempt mod_unload modversions "


@dataclass
class Mod:
    """What the synthetic module holds; the defaults make a well-formed 64-bit LE module."""

    modinfo: list[str] = field(
        default_factory=lambda: ["license=GPL", "name=m", f"vermagic={VERMAGIC}", "retpoline=Y"]
    )
    undefined: list[str] = field(default_factory=lambda: ["printk"])
    common: list[str] = field(default_factory=list)
    versions: list[tuple[str, int]] | None = field(default_factory=lambda: [("printk", 0x1234)])
    this_module_size: int | None = 1344
    e_type: int = 1  # ET_REL
    machine: int = EM_X86_64
    elf_class: int = 2  # 1: 32-bit
    big_endian: bool = False
    text_flags: int = SHF_ALLOC | SHF_EXECINSTR
    symtabs: int = 1
    symtab_link: int | None = None  # None: the .strtab's index
    modinfo_sections: int = 1
    shstrtab_terminated: bool = True
    trailer: bytes = b""  # appended after the ELF (a signature)


def build(m: Mod | None = None) -> bytes:
    m = m or Mod()
    end = ">" if m.big_endian else "<"
    wide = m.elf_class == 2
    ehdr = struct.Struct(end + ("16sHHIQQQIHHHHHH" if wide else "16sHHIIIIIHHHHHH"))
    shdr = struct.Struct(end + ("IIQQQQIIQQ" if wide else "IIIIIIIIII"))
    sections: list[tuple[str, int, int, bytes, int, int, int]] = []  # name type flags data ...

    def add(name: str, typ: int, flags: int, data: bytes, link: int = 0, info: int = 0,
            entsize: int = 0) -> int:
        sections.append((name, typ, flags, data, link, info, entsize))
        return len(sections)  # index, counting the null section

    add(".text", SHT_PROGBITS, m.text_flags, b"\xc3" * 16)
    for _ in range(m.modinfo_sections):
        add(".modinfo", SHT_PROGBITS, SHF_ALLOC, b"".join(e.encode() + b"\0" for e in m.modinfo))
    if m.this_module_size is not None:
        add(".gnu.linkonce.this_module", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE,
            bytes(m.this_module_size))
    if m.versions is not None:
        rec = struct.Struct(end + ("Q56s" if wide else "I60s"))
        add("__versions", SHT_PROGBITS, SHF_ALLOC,
            b"".join(rec.pack(crc, name.encode()) for name, crc in m.versions))
    strtab = b"\0"
    syms = []
    for name, shndx in [(n, SHN_UNDEF) for n in m.undefined] + [(n, SHN_COMMON) for n in m.common]:
        syms.append((len(strtab), shndx))
        strtab += name.encode() + b"\0"
    sym = struct.Struct(end + ("IBBHQQ" if wide else "IIIBBH"))
    info = STB_GLOBAL << 4
    table = sym.pack(0, 0, 0, 0, 0, 0)
    for off, shndx in syms:
        size = 4 if shndx == SHN_COMMON else 0
        table += (sym.pack(off, info, 0, shndx, 0, size) if wide
                  else sym.pack(off, 0, size, info, 0, shndx))
    strtab_index = len(sections) + 1 + m.symtabs
    for _ in range(m.symtabs):
        link = strtab_index if m.symtab_link is None else m.symtab_link
        add(".symtab", SHT_SYMTAB, 0, table, link, 1, sym.size)
    add(".strtab", SHT_STRTAB, 0, strtab)
    names = b"\0"
    offsets = []
    for s in sections:
        offsets.append(len(names))
        names += s[0].encode() + b"\0"
    offsets.append(len(names))
    names += b".shstrtab"  # the last name: unterminated unless the NUL follows
    if m.shstrtab_terminated:
        names += b"\0"
    all_secs = [*sections, (".shstrtab", SHT_STRTAB, 0, names, 0, 0, 0)]

    body = bytearray(ehdr.size)
    placed = []
    for _name, _typ, _flags, data, *_ in all_secs:
        while len(body) % 8:
            body.append(0)
        placed.append((len(body), len(data)))
        body += data
    while len(body) % 8:
        body.append(0)
    shoff = len(body)
    body += shdr.pack(*[0] * 10)
    for (_, typ, flags, _data, link, inf, entsize), (off, size), name_off in zip(
        all_secs, placed, offsets, strict=True
    ):
        body += shdr.pack(name_off, typ, flags, 0, off, size, link, inf, 8, entsize)
    ident = b"\x7fELF" + bytes([m.elf_class, 2 if m.big_endian else 1, 1]) + bytes(9)
    n = len(all_secs) + 1
    body[: ehdr.size] = ehdr.pack(ident, m.e_type, m.machine, 1, 0, 0, shoff, 0, ehdr.size,
                                  0, 0, shdr.size, n, n - 1)
    return bytes(body) + m.trailer


def trailer(id_type: int = 2, sig: bytes = b"\x30\x00", algo: int = 0, hsh: int = 0,
            signer: bytes = b"", key_id: bytes = b"") -> bytes:
    """A module signature trailer (struct module_signature + magic) after its blob."""
    info = struct.pack(">BBBBB3sI", algo, hsh, id_type, len(signer), len(key_id), b"\0" * 3,
                       len(sig))
    return signer + key_id + sig + info + SIG_MAGIC
