"""Building a TargetInfo: what the check rules need to know about a target kernel.

Parsing a kernel's Module.symvers (~25,000 exports) and building the lookup sets
costs more than checking a hundred modules, so the result is kept on disk under
cache_dir()/check-targets/, keyed by the files it came from (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from kbuild_py import __version__
from kbuild_py.check.elf.modfile import read_module
from kbuild_py.check.elf.symvers import read_symvers
from kbuild_py.check.model import TargetInfo
from kbuild_py.errors import ModuleReadError, UsageError
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.paths import cache_dir

# The lookup sets the rules use on every module (cheap to unpickle); the full export
# table is parsed from Module.symvers only when a finding needs its details.
_TABLES = ("version_records", "names", "gpl_only", "namespaced")
_FORMAT = 1


def struct_module_size(release: str) -> int | None:
    """sizeof(struct module) of a release, read from one of its in-tree modules when present
    (installed under /lib/modules, or a linux-image package kmod-py fetched before)."""
    bases = (
        Path("/lib/modules") / release,
        cache_dir() / "kernels" / release / "lib/modules" / release,
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
    return cache_dir() / "check-targets" / f"{digest}.pickle"


def _load(cache: Path | None) -> dict | None:
    if cache is None or not cache.is_file():
        return None
    try:
        with open(cache, "rb") as fh:
            tables = pickle.load(fh)
        return tables if isinstance(tables, dict) and set(tables) == set(_TABLES) else None
    except Exception:  # a damaged cache file is rebuilt
        return None


def _store(cache: Path | None, info: TargetInfo) -> None:
    if cache is None:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({k: getattr(info, k) for k in _TABLES}, fh, pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs time


def build_target_info(tree: BuildTree, extra_symvers: Sequence[Path] = ()) -> TargetInfo:
    sources = [p for p in (tree.symvers_path,) if p] + [Path(p) for p in extra_symvers]
    for p in sources[1:]:
        if not p.is_file():
            raise UsageError(f"cannot read symbol file {p}", "pass a Module.symvers file")
    cache = _cache_file(sources) if sources else None
    tables = _load(cache)
    info = TargetInfo(
        release=tree.release,
        source=str(tree.path),
        vermagic=tree.vermagic,
        elf_machine=tree.elf_machine,
        config=dict(tree.config),
        symvers_files=tuple(str(p) for p in sources),
        module_struct_size=struct_module_size(tree.release),
        read_exports=read_symvers,
    )
    if tables is not None:
        info.__dict__.update(tables)
    else:
        info.warm()
        _store(cache, info)
    return info
