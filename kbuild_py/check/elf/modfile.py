"""Read a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz) into a ModuleFile.

Pure data, never prints. Built for speed over thousands of files: the file is
mmapped (only touched pages are read), the ELF and section headers are decoded
with precompiled ``struct`` formats (one ``iter_unpack`` over the section header
table), and symbols, __versions and the signature are decoded lazily, only when
a rule asks. Anything that makes the file unusable as a module raises
ModuleReadError with a one-line reason; loader-level defects that still leave
the file readable (wrong e_type, two symbol tables, ...) are left to the rules.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import sys
from functools import cached_property
from operator import add, methodcaller
from pathlib import Path
from typing import NamedTuple

from kbuild_py.check.elf import decompress as _dec
from kbuild_py.check.elf.decompress import compression_of  # noqa: F401 - re-exported
from kbuild_py.check.elf.signature import read_trailer
from kbuild_py.check.elf.symbols import ModuleSymbols
from kbuild_py.errors import ModuleReadError

SHT_NOBITS = 8
SHF_WRITE, SHF_EXECINSTR = 0x1, 0x4
ET_REL = 1

EM_NAMES = {
    3: "EM_386",
    8: "EM_MIPS",
    20: "EM_PPC",
    21: "EM_PPC64",
    22: "EM_S390",
    40: "EM_ARM",
    62: "EM_X86_64",
    183: "EM_AARCH64",
    243: "EM_RISCV",
    258: "EM_LOONGARCH",
}

# (ELF header, section header, symbol) formats per (class, data) — built once.
_FORMATS: dict[tuple[int, int], tuple[struct.Struct, struct.Struct, struct.Struct]] = {}
for _cls, _ehdr, _shdr, _sym in (
    (1, "16sHHIIIIIHHHHHH", "IIIIIIIIII", "IIIBBH"),
    (2, "16sHHIQQQIHHHHHH", "IIQQQQIIQQ", "IBBHQQ"),
):
    for _data, _end in ((1, "<"), (2, ">")):
        _FORMATS[(_cls, _data)] = (
            struct.Struct(_end + _ehdr),
            struct.Struct(_end + _shdr),
            struct.Struct(_end + _sym),
        )


class Section(NamedTuple):  # a tuple: built several times per module, 4x cheaper than a dataclass
    index: int  # type: ignore[assignment]  # the field shadows tuple.index on purpose
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def end(self) -> int:
        return self.offset + (0 if self.type == SHT_NOBITS else self.size)


_NATIVE_LE = sys.byteorder == "little"


def _fail(path: Path | str, reason: str) -> ModuleReadError:
    return ModuleReadError(
        f"{path}: {reason}", "pass a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)"
    )


def _open(path: Path) -> tuple[bytes | mmap.mmap, str | None]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block open()
    except IsADirectoryError:
        raise _fail(path, "is a directory") from None
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as err:
        raise _fail(path, f"cannot open ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _fail(path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, "is not a regular file")
        if st.st_size == 0:
            raise _fail(path, "is empty")
        kind = compression_of(os.pread(fd, 6, 0))
        if kind:
            if st.st_size > _dec.MAX_DECOMPRESSED:
                raise _fail(path, "compressed file too large")
            raw = os.pread(fd, st.st_size, 0)
            return _dec.decompress(raw, kind, path), kind
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), None
        except (OSError, ValueError) as err:
            raise _fail(path, f"cannot map ({err})") from None
    finally:
        os.close(fd)


class ModuleFile(ModuleSymbols):
    """A kernel module read from disk: ELF layout, .modinfo, lazily symbols/versions/signature."""

    def __init__(self, path: Path, data: bytes | mmap.mmap, compression: str | None) -> None:
        self.path = path
        # an mmap reads like bytes everywhere it is used (slices, struct.unpack_from, find)
        self.data = data  # type: ignore[assignment]
        self.compression = compression
        self.size = len(data)
        self._parse_headers()
        self._parse_modinfo()

    # --- ELF headers --------------------------------------------------------
    def _parse_headers(self) -> None:
        data, n = self.data, self.size
        if n < 4 or data[:4] != b"\x7fELF":
            raise _fail(self.path, "not an ELF file (bad magic)")
        if n < 16:
            raise _fail(self.path, "truncated ELF header")
        self.elf_class, self.elf_data = data[4], data[5]
        fmts = _FORMATS.get((self.elf_class, self.elf_data))
        if fmts is None:
            raise _fail(self.path, f"unknown ELF class/data {self.elf_class}/{self.elf_data}")
        ehdr, shdr, self._sym = fmts
        if n < ehdr.size:
            raise _fail(self.path, "truncated ELF header")
        h = ehdr.unpack_from(data, 0)
        self.e_type, self.e_machine = h[1], h[2]
        shoff, self.e_shentsize, shnum, shstrndx = h[6], h[11], h[12], h[13]
        self.e_shnum = shnum
        if shnum == 0 or shoff == 0:
            raise _fail(self.path, "no section header table")
        if self.e_shentsize != shdr.size:
            raise _fail(self.path, f"invalid ELF section header size {self.e_shentsize}")
        if shoff >= n or shnum * shdr.size > n - shoff:
            raise _fail(self.path, "truncated (section header table past end of file)")
        table = memoryview(data)[shoff : shoff + shnum * shdr.size]
        if _NATIVE_LE and self.elf_class == 2 and self.elf_data == 1:
            # columns straight out of the mapped table: a handful of C calls per file
            w, q = table.cast("I"), table.cast("Q")
            self.sh_name, self.sh_type = w[0::16].tolist(), w[1::16].tolist()
            self.sh_flags, self.sh_offset, self.sh_size = (
                q[1::8].tolist(),
                q[3::8].tolist(),
                q[4::8].tolist(),
            )
            self.sh_link, self.sh_info = w[10::16].tolist(), w[11::16].tolist()
            self.sh_entsize = q[7::8].tolist()
        else:
            raw = list(shdr.iter_unpack(table))
            cols = list(zip(*raw, strict=True))
            self.sh_name, self.sh_type, self.sh_flags = list(cols[0]), list(cols[1]), list(cols[2])
            self.sh_offset, self.sh_size, self.sh_link = list(cols[4]), list(cols[5]), list(cols[6])
            self.sh_info, self.sh_entsize = list(cols[7]), list(cols[9])
            self.__dict__["_raw"] = raw
        if shstrndx >= shnum:
            raise _fail(self.path, f"invalid section name table index {shstrndx}")
        s_off, s_size = self.sh_offset[shstrndx], self.sh_size[shstrndx]
        if s_size == 0 or s_off + s_size > n:
            raise _fail(self.path, "truncated (section name table past end of file)")
        names = data[s_off : s_off + s_size]
        self.shstrtab_terminated = names[-1] == 0
        if not self.shstrtab_terminated:
            names += b"\0"
        ends = list(map(add, self.sh_offset, self.sh_size))
        if max(ends) > n:
            cut = [i for i, e in enumerate(ends) if e > n and self.sh_type[i] != SHT_NOBITS and i]
            if cut:
                raise _fail(self.path, f"truncated (section {cut[0]} extends past end of file)")
        self._shdr_at = (shoff, shdr)
        self._names = names
        self._name_offs = self.sh_name
        self._found: dict[str, list[int]] = {}
        self._secs: dict[int, Section] = {}

    def header(self, i: int) -> tuple:
        """Section header i as a tuple (sh_name, type, flags, addr, offset, size, link,
        info, addralign, entsize)."""
        shoff, shdr = self._shdr_at
        return shdr.unpack_from(self.data, shoff + i * shdr.size)

    @cached_property
    def _raw(self) -> list[tuple]:
        """Every section header as a tuple (sh_name, type, flags, addr, offset, size, link,
        info, addralign, entsize), decoded only when asked."""
        shoff, shdr = self._shdr_at
        return list(
            shdr.iter_unpack(memoryview(self.data)[shoff : shoff + self.e_shnum * shdr.size])
        )

    def _indices(self, name: str) -> list[int]:
        """Indices of every section called name, ascending (names may share string tails)."""
        found = self._found.get(name)
        if found is not None:
            return found
        key = name.encode("latin-1") + b"\0"
        names, offs, out = self._names, self._name_offs, []
        pos = names.find(key)
        while pos >= 0:
            n = offs.count(pos)  # scans in C; names rarely repeat
            i = -1
            for _ in range(n):
                i = offs.index(pos, i + 1)
                out.append(i)
            pos = names.find(key, pos + 1)
        if len(out) > 1:
            out.sort()
        self._found[name] = out
        return out

    def _section(self, i: int) -> Section:
        sec = self._secs.get(i)
        if sec is None:
            sec = self._secs[i] = self._make_section(i)
        return sec

    def _make_section(self, i: int) -> Section:
        nm, names = self.sh_name[i], self._names
        name = names[nm : names.find(b"\0", nm)] if nm < len(names) else b""
        return Section(
            i,
            name.decode("latin-1"),
            self.sh_type[i],
            self.sh_flags[i],
            self.sh_offset[i],
            self.sh_size[i],
            self.sh_link[i],
            self.sh_info[i],
            self.sh_entsize[i],
        )

    @cached_property
    def sections(self) -> list[Section]:
        return [self._section(i) for i in range(self.e_shnum)]

    def count_sections(self, name: str) -> int:
        return len(self._indices(name))

    def section(self, name: str) -> Section | None:
        """The first section with this name."""
        found = self._indices(name)
        return self._section(found[0]) if found else None

    def section_data(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return b""
        return self.data[sec.offset : sec.offset + sec.size]

    @property
    def machine(self) -> str:
        return EM_NAMES.get(self.e_machine, f"EM_{self.e_machine}")

    # --- .modinfo -----------------------------------------------------------
    def _parse_modinfo(self) -> None:
        sec = self.section(".modinfo")
        if sec is None:
            raise _fail(self.path, "no .modinfo section (not a kernel module)")
        text = self.section_data(sec).decode("utf-8", "surrogateescape")
        parts = [s for s in text.split("\0") if s]
        entries = [s.partition("=")[::2] for s in parts]
        self.modinfo: list[tuple[str, str]] = entries
        # strings without '=' (the kernel's get_modinfo never matches them)
        self.modinfo_malformed = (
            []
            if text.count("=") >= len(parts) and all(map(methodcaller("__contains__", "="), parts))
            else [s for s in parts if "=" not in s]
        )
        self._first = {k: v for k, v in reversed(entries)}

    def get(self, key: str) -> str | None:
        """The first value of a .modinfo key (the loader's get_modinfo), or None."""
        return self._first.get(key)

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.modinfo if k == key]

    @property
    def vermagic(self) -> str | None:
        return self.get("vermagic")

    @property
    def license(self) -> str | None:
        return self.get("license")

    @property
    def file_name(self) -> str:
        """Module name from the file name, as kmod derives it (- and , become _)."""
        base = self.path.name
        for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
            if base.endswith(ext):
                base = base[: -len(ext)]
                break
        return base.replace("-", "_").replace(",", "_")

    @property
    def name(self) -> str:
        return self.get("name") or self.file_name

    # --- lazily decoded parts -----------------------------------------------
    @property
    def this_module_size(self) -> int | None:
        sec = self.section(".gnu.linkonce.this_module")
        return sec.size if sec else None

    @cached_property
    def signature(self):
        """The appended signature (signature.ModuleSignature), or None when unsigned."""
        return read_trailer(self.data)


def read_module(path: Path | str) -> ModuleFile:
    """Read a module file; raises ModuleReadError (one-line reason) when it cannot be used."""
    p = path if isinstance(path, Path) else Path(path)
    data, kind = _open(p)
    return _parse(p, data, kind)


def module_from_bytes(data: bytes, path: Path | str = "<memory>") -> ModuleFile:
    """The same as read_module for content already in memory (path only names it)."""
    p = Path(path)
    if not data:
        raise _fail(p, "is empty")
    kind = compression_of(data[:6])
    if kind:
        data = _dec.decompress(data, kind, p)
    return _parse(p, data, kind)


def _parse(p: Path, data: bytes | mmap.mmap, kind: str | None) -> ModuleFile:
    try:
        return ModuleFile(p, data, kind)
    except ModuleReadError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as err:
        raise _fail(p, f"malformed ELF ({type(err).__name__})") from None
