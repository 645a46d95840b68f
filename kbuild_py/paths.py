"""Where kmod-py keeps its per-user state (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path

from kbuild_py.errors import UsageError


def cache_dir() -> Path:
    """$KMOD_PY_CACHE, else $XDG_CACHE_HOME/kmod-py, else ~/.cache/kmod-py."""
    explicit = os.environ.get("KMOD_PY_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmod-py"


def output_dir(project: Path, release: str) -> Path:
    """Per-kernel output directory inside a module project: PATH/.kmod-py/<release>/.

    The release comes from a build tree (utsrelease.h) or an image; one that is not a single
    path component would point the build (which deletes stale .ko files) outside .kmod-py/."""
    if release in ("", ".", "..") or "/" in release or "\0" in release:
        raise UsageError(
            f"kernel release {release!r} cannot name an output directory",
            "check the build tree's include/generated/utsrelease.h",
        )
    return project / ".kmod-py" / release


def report_file(path: Path | None, option: str) -> None:
    """Refuse a report path that cannot be written, before any work is done."""
    if path is None:
        return
    if path.is_dir() or not path.parent.is_dir():
        why = "is a directory" if path.is_dir() else f"{path.parent} is not a directory"
        raise UsageError(f"cannot write {option} {path}: {why}", "pass a file path")


def ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
