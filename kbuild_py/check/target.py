"""Building a TargetInfo: what the check rules need to know about a target kernel.

Parsing a kernel's Module.symvers (~25,000 exports) and building the lookup sets
costs more than checking a hundred modules, so the result is kept on disk under
cache_dir()/check-targets/, keyed by the files it came from (path, size, mtime).

The cache file is plain data that kmod-py parses itself (never pickle: a cache file that
another user could write would run code). Format, version 2:

    KMODPY-TARGET 2\n
    then for each table, in this order: b"<table> <length>\n" + <length> bytes
    version_records  the 64-byte __versions records, concatenated (length % 64 == 0)
    names            export names, NUL-separated UTF-8
    gpl_only         EXPORT_SYMBOL_GPL names, NUL-separated UTF-8
    namespaced       name NUL namespace NUL ... (pairs), UTF-8

Anything that does not parse exactly is ignored and rebuilt from Module.symvers.
"""

from __future__ import annotations

import hashlib
import operator
import os
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kbuild_py import __version__
from kbuild_py.check.elf.modfile import read_module
from kbuild_py.check.elf.symvers import read_symvers
from kbuild_py.check.model import TargetInfo
from kbuild_py.errors import ModuleReadError, UsageError
from kbuild_py.kernels.buildtree import SAMPLE_MODULE, BuildTree
from kbuild_py.paths import cache_dir

# The lookup sets the rules use on every module (cheap to load); the full export
# table is parsed from Module.symvers only when a finding needs its details.
_TABLES = ("version_records", "names", "gpl_only", "namespaced")
_FORMAT = 2
_MAGIC = b"KMODPY-TARGET 2\n"
_RECORD = 64
_RECORDS = struct.Struct(f"{_RECORD}s")
_first = operator.itemgetter(0)


def struct_module_size(release: str, tree: Path | None = None) -> int | None:
    """sizeof(struct module) of a release, read from one of its in-tree modules when present
    (installed under /lib/modules, a linux-image package kmod-py fetched (7.x: under
    usr/lib), or one module copied out of a container target's image next to its tree
    snapshot)."""
    if tree is not None and (tree / SAMPLE_MODULE).is_file():
        try:
            size = read_module(tree / SAMPLE_MODULE).this_module_size
        except ModuleReadError:
            size = None
        if size:
            return size
    fetched = cache_dir() / "kernels" / release
    bases = (
        Path("/lib/modules") / release,
        fetched / "lib/modules" / release,
        fetched / "usr/lib/modules" / release,
    )
    for base in bases:
        kernel = base / "kernel"
        if not kernel.is_dir():
            continue
        for sub in ("fs", "net", "drivers", "lib", "crypto", ""):
            d = kernel / sub
            if not d.is_dir():
                continue
            for p in d.rglob("*.ko*"):
                try:
                    size = read_module(p).this_module_size
                except ModuleReadError:
                    continue
                if size:
                    return size
    return None


def _cache_file(sources: Sequence[Path]) -> Path | None:
    parts = [f"{_FORMAT}:{__version__}"]
    for f in sources:
        try:
            st = os.stat(f)
        except OSError:
            return None
        parts.append(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return cache_dir() / "check-targets" / f"{digest}.target"


def _names(blob: bytes) -> list[str]:
    return blob.decode("utf-8", "surrogatepass").split("\0") if blob else []


def encode_tables(tables: dict) -> bytes | None:
    """The cache file's bytes for the four tables (None: a name this format cannot hold)."""
    def joined(names: Sequence[str]) -> bytes | None:
        if any("\0" in n for n in names):
            return None
        return "\0".join(names).encode("utf-8", "surrogatepass")

    records = sorted(tables["version_records"])
    if any(len(r) != _RECORD for r in records):
        return None
    pairs = [x for k, v in sorted(tables["namespaced"].items()) for x in (k, v)]
    parts = [b"".join(records), joined(sorted(tables["names"])),
             joined(sorted(tables["gpl_only"])), joined(pairs)]
    if any(p is None for p in parts):
        return None
    out = [_MAGIC]
    for name, payload in zip(_TABLES, parts, strict=True):
        assert payload is not None
        out += [f"{name} {len(payload)}\n".encode(), payload]
    return b"".join(out)


def decode_tables(data: bytes) -> dict | None:
    """The four tables from a cache file's bytes, or None unless it parses exactly."""
    if not data.startswith(_MAGIC):
        return None
    pos, raw = len(_MAGIC), {}
    try:
        for name in _TABLES:
            end = data.index(b"\n", pos, pos + 64)
            label, _, length = data[pos:end].decode("ascii").partition(" ")
            n = int(length)
            if label != name or n < 0 or end + 1 + n > len(data):
                return None
            raw[name], pos = data[end + 1 : end + 1 + n], end + 1 + n
        if pos != len(data) or len(raw["version_records"]) % _RECORD:
            return None
        recs = raw["version_records"]
        records = frozenset(map(_first, _RECORDS.iter_unpack(recs)))  # C speed: no Python loop
        pairs = _names(raw["namespaced"])
        if len(pairs) % 2:
            return None
        return {
            "version_records": records,
            "names": frozenset(_names(raw["names"])),
            "gpl_only": frozenset(_names(raw["gpl_only"])),
            "namespaced": dict(zip(pairs[::2], pairs[1::2], strict=True)),
        }
    except (ValueError, UnicodeDecodeError):
        return None


def _load(cache: Path | None) -> dict | None:
    if cache is None:
        return None
    try:
        with open(cache, "rb") as fh:
            return decode_tables(fh.read())
    except OSError:
        return None  # absent or unreadable: rebuilt


def _store(cache: Path | None, info: TargetInfo) -> None:
    if cache is None:
        return
    data = encode_tables({k: getattr(info, k) for k in _TABLES})
    if data is None:
        return
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for old in cache.parent.glob("*.pickle"):  # format 1 (pickle): never read again
            old.unlink(missing_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs time


def build_target_info(tree: BuildTree, extra_symvers: Sequence[Path] = ()) -> TargetInfo:
    sources = [p for p in (tree.symvers_path,) if p] + [Path(p) for p in extra_symvers]
    for p in sources[1:]:
        if not p.is_file():
            raise UsageError(f"cannot read symbol file {p}", "pass a Module.symvers file")
    # Only the kernel's own table is cached: a project's Module.symvers changes with every
    # build and would make every build a cache miss (and a new cache file).
    cache = _cache_file(sources[:1]) if tree.symvers_path else None
    tables = _load(cache)
    info = TargetInfo(
        release=tree.release,
        source=str(tree.path),
        vermagic=tree.vermagic,
        elf_machine=tree.elf_machine,
        config=dict(tree.config),
        symvers_files=tuple(str(p) for p in sources),
        module_struct_size=struct_module_size(tree.release, tree.path),
        read_exports=read_symvers,
    )
    base = info if not sources[1:] else replace(info, symvers_files=tuple(map(str, sources[:1])))
    if tables is not None:
        base.__dict__.update(tables)
    else:
        base.warm()
        _store(cache, base)
    if base is not info:
        _merge(info, base, replace(info, symvers_files=tuple(map(str, sources[1:]))))
    return info


def _merge(info: TargetInfo, kernel: TargetInfo, extra: TargetInfo) -> None:
    """info's lookup tables = the kernel's (cached) with the extra files' on top (later files
    win, as in TargetInfo.exports)."""
    extra.warm()
    info.__dict__.update(
        version_records=kernel.version_records | extra.version_records,
        names=kernel.names | extra.names,
        gpl_only=(kernel.gpl_only - extra.names) | extra.gpl_only,
        namespaced={**{k: v for k, v in kernel.namespaced.items() if k not in extra.names},
                    **extra.namespaced},
    )
