"""Symbols and symbol versions of a module, decoded lazily (mixed into ModuleFile).

The fast paths read 64-bit little-endian tables (x86-64, arm64 modules) as columns
straight out of the mapped file with memoryview casts and C-level iterators; the
general path decodes records with struct for every other ELF class and byte order.
"""

from __future__ import annotations

import struct
import sys
from functools import cached_property
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import TYPE_CHECKING, NamedTuple

SHT_SYMTAB, SHT_NOBITS = 2, 8
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
STB_WEAK = 2
_NATIVE_LE = sys.byteorder == "little"
_RECORD = struct.Struct("64s")  # one __versions record of a 64-bit module, whole
_first = itemgetter(0)


class Symbol(NamedTuple):
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int

    @property
    def undefined(self) -> bool:
        return self.shndx == SHN_UNDEF

    @property
    def weak(self) -> bool:
        return self.bind == STB_WEAK


class ModuleSymbols:
    """Symbol-table and __versions views over ModuleFile's section columns."""

    if TYPE_CHECKING:
        data: bytes
        elf_class: int
        elf_data: int
        e_shnum: int
        sh_type: list[int]
        sh_offset: list[int]
        sh_size: list[int]
        sh_link: list[int]
        _sym: struct.Struct

        @property
        def _raw(self) -> list[tuple]: ...

        def section(self, name: str): ...
        def section_data(self, sec) -> bytes: ...

    @property
    def symtab_indices(self) -> list[int]:
        found = self.__dict__.get("_symtabs")
        if found is None:
            types = self.sh_type
            count = types.count(SHT_SYMTAB)
            if count == 1:
                found = [types.index(SHT_SYMTAB)]
            else:
                found = [i for i, t in enumerate(types) if t == SHT_SYMTAB]
            self.__dict__["_symtabs"] = found
        return found

    def _symtab(self) -> tuple[list[tuple], bytes]:
        """Raw records of the first symbol table (null symbol dropped) and its string table."""
        tabs = self.symtab_indices
        if not tabs or not 0 < self._raw[tabs[0]][6] < len(self._raw):
            return [], b""
        tab, strtab = self._raw[tabs[0]], self._raw[self._raw[tabs[0]][6]]
        strs = self.data[strtab[4] : strtab[4] + strtab[5]] if strtab[1] != SHT_NOBITS else b""
        size = tab[5] - tab[5] % self._sym.size
        recs = list(self._sym.iter_unpack(memoryview(self.data)[tab[4] : tab[4] + size]))[1:]
        if self.elf_class == 1:  # reorder to the 64-bit field order
            recs = [
                (nm, info, other, shndx, value, sz) for nm, value, sz, info, other, shndx in recs
            ]
        return recs, strs

    def _symbols(self, keep) -> list[Symbol]:
        recs, strs = self._symtab()
        find, out = strs.find, []
        for nm, info, _other, shndx, value, size in recs:
            if keep(shndx):
                end = find(b"\0", nm)
                name = strs[nm : end if end >= 0 else len(strs)].decode("latin-1")
                out.append(Symbol(name, value, size, info >> 4, info & 0xF, shndx))
        return out

    @cached_property
    def symbols(self) -> list[Symbol]:
        """Every entry of the (first) symbol table except the null symbol."""
        return self._symbols(lambda shndx: True)

    @cached_property
    def undefined_symbols(self) -> list[Symbol]:
        """Named SHN_UNDEF symbols: what the loader must resolve."""
        fast = self._undefined_fast()
        if fast is None:
            return [s for s in self._symbols(lambda shndx: shndx == SHN_UNDEF) if s.name]
        return [Symbol(name, 0, 0, info >> 4, info & 0xF, 0) for name, info in fast]

    def _undefined_fast(self) -> list[tuple[str, int]] | None:
        """(name, st_info) of undefined symbols, for 64-bit little-endian modules on a
        little-endian host. None: use the general path."""
        cols = self._undefined_columns()
        if cols is None:
            return None
        return [pair for pair in zip(*cols, strict=True) if pair[0]]

    def _undefined_columns(self) -> tuple[list[str], list[int]] | None:
        """Names (some maybe empty) and st_info of the SHN_UNDEF symbols, for 64-bit
        little-endian modules on a little-endian host: the st_shndx column is picked
        straight out of the mapped table and only the hits are decoded. None: use the
        general path."""
        if not (_NATIVE_LE and self.elf_class == 2 and self.elf_data == 1):
            return None
        found = self.__dict__.get("_undef")
        if found is None:
            found = self.__dict__["_undef"] = self._read_undefined()
        return found

    def _shndx_column(self) -> tuple[memoryview, list[int]]:
        """The first symbol table's 24-byte records (64-bit little-endian modules) and
        their st_shndx column, read once for the rules that look at it."""
        found = self.__dict__.get("_shndx")
        if found is None:
            tabs = self.symtab_indices
            if tabs:
                off, size = self.sh_offset[tabs[0]], self.sh_size[tabs[0]]
                body = memoryview(self.data)[off : off + size // 24 * 24]
            else:
                body = memoryview(b"")
            found = self.__dict__["_shndx"] = (body, body.cast("H")[3::12].tolist())
        return found

    def _read_undefined(self) -> tuple[list[str], list[int]]:
        tabs = self.symtab_indices
        link = self.sh_link[tabs[0]] if tabs else 0
        if not tabs or not 0 < link < self.e_shnum:
            return [], []
        s_off, s_size = self.sh_offset[link], self.sh_size[link]
        strs = self.data[s_off : s_off + s_size] if self.sh_type[link] != SHT_NOBITS else b""
        body, column = self._shndx_column()
        # everything below iterates in C: indices of SHN_UNDEF entries, their st_name and
        # st_info, then the names cut out of the string table
        idx = list(compress(range(len(column)), map(not_, column)))
        if idx and idx[0] == 0:
            del idx[0]  # symbol 0 is the null symbol
        if not idx:
            return [], []
        offs = list(map(body.cast("I")[0::6].__getitem__, idx))
        infos = list(map(body[4::24].__getitem__, idx))
        text = strs.decode("latin-1") + "\0"
        ends = map(text.find, repeat("\0"), offs)
        return list(map(text.__getitem__, map(slice, offs, ends))), infos

    @cached_property
    def needed_names(self) -> frozenset[str]:
        """Names of the undefined, non-weak symbols (what must resolve)."""
        cols = self._undefined_columns()
        if cols is not None:
            names, infos = cols
            if any(info >> 4 == STB_WEAK for info in set(infos)):
                pairs = zip(names, infos, strict=True)
                return frozenset([n for n, info in pairs if n and info >> 4 != STB_WEAK])
            out = frozenset(names)
            return out - {""} if "" in out else out
        return frozenset([s.name for s in self.undefined_symbols if s.bind != STB_WEAK])

    @cached_property
    def common_symbols(self) -> list[Symbol]:
        if _NATIVE_LE and self.elf_class == 2 and self.elf_data == 1:
            if SHN_COMMON not in self._shndx_column()[1]:
                return []
        return self._symbols(lambda shndx: shndx == SHN_COMMON)

    @cached_property
    def versions(self) -> list[tuple[str, int]]:
        """(symbol, crc) from __versions or, when present, the extended tables."""
        ext = self.section("__version_ext_crcs")
        names = self.section("__version_ext_names")
        if ext is not None and names is not None:
            end = "<" if self.elf_data == 1 else ">"
            crcs = [
                c
                for (c,) in struct.iter_unpack(
                    end + "I", self.section_data(ext)[: ext.size // 4 * 4]
                )
            ]
            syms = [s.decode("latin-1") for s in self.section_data(names).split(b"\0")]
            return list(zip(syms, crcs, strict=False))
        sec = self.section("__versions")
        if sec is None:
            return []
        wide = self.elf_class == 2
        fmt = struct.Struct(("<" if self.elf_data == 1 else ">") + ("Q56s" if wide else "I60s"))
        body = self.section_data(sec)
        body = body[: len(body) - len(body) % fmt.size]
        if wide and _NATIVE_LE and self.elf_data == 1:  # columns straight from the table
            crcs = memoryview(body).cast("Q")[0::8].tolist()
            text = body.decode("latin-1")
            names = [text[o : o + 56].partition("\0")[0] for o in range(8, len(body), 64)]
            return list(zip(names, crcs, strict=True))
        out = []
        for crc, name in fmt.iter_unpack(body):
            nul = name.find(b"\0")
            out.append(((name[:nul] if nul >= 0 else name).decode("latin-1"), crc))
        return out

    def version_records(self) -> list[bytes] | None:
        """The raw 64-byte __versions records of a 64-bit little-endian module (compared
        whole against the target's, decoded only when they differ), else None."""
        if self.elf_class != 2 or self.elf_data != 1 or self.section("__version_ext_crcs"):
            return None
        sec = self.section("__versions")
        if sec is None:
            return []
        body = self.section_data(sec)
        n = len(body) - len(body) % 64
        return list(map(_first, _RECORD.iter_unpack(body if n == len(body) else body[:n])))

    @staticmethod
    def decode_version(record: bytes) -> tuple[str, int]:
        crc = int.from_bytes(record[:8], "little")
        return record[8:].partition(b"\0")[0].decode("latin-1"), crc

    @property
    def has_versions(self) -> bool:
        return (
            self.section("__versions") is not None or self.section("__version_ext_crcs") is not None
        )
