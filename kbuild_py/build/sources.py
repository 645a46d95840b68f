"""The sources a build copies: each kernel builds in its own copy of the project at
PROJECT/.kmod-py/<release>/, so kernels never mix objects and the user's tree stays clean.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

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
    A source removed from the project since the last sync is removed from outdir too."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = source_files(project)
    manifest = outdir / SOURCES_MANIFEST
    now = {str(rel) for rel in files}
    raw = "utf-8", "surrogateescape"  # file names are bytes; keep undecodable ones as they are
    before = manifest.read_text(*raw).splitlines() if manifest.is_file() else []
    for rel in before:
        gone = outdir / rel
        if rel not in now and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            if gone.is_file() or gone.is_symlink():
                gone.unlink()
    manifest.write_text("".join(f"{r}\n" for r in sorted(now) if "\n" not in r), *raw)
    for rel in files:
        src, dst = project / rel, outdir / rel
        st = src.stat()
        if dst.exists():
            dt = dst.stat()
            if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
