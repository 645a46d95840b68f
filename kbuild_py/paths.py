"""Where kmod-py keeps its per-user state (XDG base directories)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kbuild_py.errors import InfraError, UsageError
from kbuild_py.trust import fs

# The kbuild_py package directory. Data kmod-py reads at run time (templates/, containers/)
# lives at the top of the source checkout and ships inside the wheel under kbuild_py/
# (pyproject's force-include); data_path finds it in either place.
PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIRS = ("templates", "containers")


def cache_dir() -> Path:
    """$KMOD_PY_CACHE, else $XDG_CACHE_HOME/kmod-py, else ~/.cache/kmod-py: created 0700,
    and refused when another user owns it or group or others may write to it (what is in
    it, from kernel images to check tables, is used without asking where it came from)."""
    explicit = os.environ.get("KMOD_PY_CACHE")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "kmod-py"
    return private_dir(path, "cache directory")


def private_dir(path: Path, what: str) -> Path:
    """`path`, created 0700 if missing; refused unless it is a directory of ours that only
    we may write to."""
    hint = f"use a directory of your own: set KMOD_PY_CACHE, or `chmod 700 {path}` if it is yours"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as e:
        raise UsageError(f"cannot create the {what} {path}: {e.strerror}",
                         "set KMOD_PY_CACHE to a directory you can write") from e
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {path} is not a directory", hint)
    if st.st_uid != os.geteuid():
        raise UsageError(
            f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})", hint)
    if st.st_mode & 0o022:
        raise UsageError(
            f"{what} {path} is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
            f"(mode {stat.S_IMODE(st.st_mode):04o})", hint)
    return path


def output_dir(project: Path, release: str) -> Path:
    """Per-kernel output directory inside a module project: PATH/.kmod-py/<release>/.

    The release comes from a build tree (utsrelease.h), an image label or a vermagic; one that
    is not a single plain path component would point the build (which deletes stale .ko files)
    outside .kmod-py/. A `.kmod-py` or `<release>` that is a symlink (say, committed to a
    repository) is refused too, before anything is written or deleted."""
    fs.plain_component(release, "kernel release")
    fs.real_dir(project / ".kmod-py", "output directory")
    return fs.real_dir(project / ".kmod-py" / release, "output directory")


def output_lock(project: Path, release: str) -> Path:
    """The lock file of one project's builds for one kernel: PATH/.kmod-py/<release>.lock."""
    output_dir(project, release)
    return fs.make_dirs(project / ".kmod-py") / f"{release}.lock"


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


def data_path(rel: str) -> Path:
    """A data file or directory kmod-py reads at run time, e.g. "containers/debian/Dockerfile":
    inside the installed package, else in the source checkout. Every run-time data lookup goes
    through here, so the packaging test can list them from the code and look for each in the
    wheel."""
    if rel.split("/", 1)[0] not in DATA_DIRS:
        raise ValueError(f"{rel}: not under one of {DATA_DIRS} (add it to DATA_DIRS and pyproject)")
    for base in (PACKAGE_DIR, PACKAGE_DIR.parent):
        if (base / rel).exists():
            return base / rel
    raise InfraError(f"{rel} is missing from the kmod-py installation",
                     "reinstall kmod-py (pip install --force-reinstall kmod-py)")
