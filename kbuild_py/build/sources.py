"""The sources a build copies: each kernel builds in its own copy of the project at
PROJECT/.kmod-py/<release>/, so kernels never mix objects and the user's tree stays clean.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from kbuild_py.trust import fs

# Files Kbuild writes; never copied from the user's tree into an output directory.
BUILD_OUTPUTS = (
    "*.o",
    "*.ko",
    "*.ko.*",
    "*.mod",
    "*.mod.c",
    "*.a",
    ".*.cmd",
    "*.cmd",
    ".*.d",
    "*.dwo",
    "*.symtypes",
    "Module.symvers",
    "Module.markers",
    "modules.order",
    ".module-common.o",
    "*.tmp",
)
SKIP_DIRS = {".kmod-py", ".git", ".hg", ".svn", ".tmp_versions", "__pycache__", ".venv"}
def source_files(project: Path) -> list[Path]:
    """The user's files to copy into an output directory (relative paths)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, pat) for pat in BUILD_OUTPUTS):
                continue
            if not os.path.isfile(os.path.join(root, name)):
                continue  # a broken link (an editor's lock file such as .#m.c), a FIFO, a socket
            out.append(Path(root, name).relative_to(project))
    return out


SOURCES_MANIFEST = ".kmod-py-sources"  # in outdir: the files the last sync copied


def sync_sources(project: Path, outdir: Path) -> None:
    """Mirror the sources into outdir; unchanged files keep their mtime (make stays incremental).
    A source removed from the project since the last sync is removed from outdir too.

    Nothing outside outdir is touched: a manifest entry that leaves outdir or passes a symlinked
    directory is refused (UnsafePathError), symlinks found in outdir (kmod-py never makes any)
    are removed, and copies replace files instead of writing through links; holes stay holes."""
    fs.make_dirs(outdir)
    files = source_files(project)
    manifest = outdir / SOURCES_MANIFEST
    now = {str(rel) for rel in files}
    raw = "utf-8", "surrogateescape"  # file names are bytes; keep undecodable ones as they are
    before = []
    if manifest.is_file() and not manifest.is_symlink():
        before = manifest.read_text(*raw).splitlines()
    for rel in before:
        if rel and rel not in now:
            fs.remove_inside(outdir, rel)
    remove_symlinks(outdir)
    fs.write_replacing(
        manifest, "".join(f"{r}\n" for r in sorted(now) if "\n" not in r).encode(*raw)
    )
    for path in files:
        src, dst = project / path, outdir / path
        st = src.stat()
        try:
            dt = dst.lstat()
        except FileNotFoundError:
            dt = None
        if dt is not None and dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
            continue
        fs.make_dirs(outdir, path.parent)
        fs.copy_file(src, dst)


def remove_symlinks(outdir: Path) -> None:
    """Delete every symlink under outdir (never followed): a committed `.kmod-py/<release>/x.o
    -> /etc/x` would otherwise have make write through it."""
    for root, dirs, files in os.walk(outdir):  # does not descend into symlinked directories
        for name in dirs + files:
            p = os.path.join(root, name)
            if os.path.islink(p):
                os.unlink(p)


def remove_stale_modules(outdir: Path) -> None:
    """Delete the .ko files a previous build left (inside outdir only)."""
    for root, _dirs, files in os.walk(outdir):
        for name in files:
            if name.endswith(".ko"):
                fs.remove_inside(outdir, os.path.relpath(os.path.join(root, name), outdir))
