"""Checking many module files: collect them, spread them over the cores, keep input order.

Workers return rendered output (text, a JSON-ready dict or -F values) rather than
ModuleFile objects, which hold an mmap and do not travel between processes.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.checks import TargetInfo, check_loaded
from kbuild_py.errors import UsageError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
PARALLEL_MIN = 48  # below this, one process is faster than starting workers


@dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool
    error: str | None  # unreadable: one line
    payload: object  # str (text), list[str] (-F values) or None (json only)
    data: dict | None = None  # JSON-ready report, when asked for (--json, --junit)


def collect(files: Sequence[Path], dirs: Sequence[Path]) -> list[Path]:
    """FILE arguments as given, then module files found under each -r DIR (sorted)."""
    out = list(files)
    for d in dirs:
        if not d.is_dir():
            raise UsageError(
                f"{d}: not a directory", "-r takes a directory to search for .ko files"
            )
        found = sorted(p for p in d.rglob("*") if p.name.endswith(MODULE_SUFFIXES) and p.is_file())
        if not found:
            raise UsageError(f"no module files (.ko, .ko.xz, .ko.zst, .ko.gz) under {d}")
        out.extend(found)
    return out


# Set in the parent before forking workers; read by _work in each worker.
_JOB: dict[str, object] = {}


def _work(path: str) -> Outcome:
    from kbuild_py import report_check as rc

    target = _JOB.get("target")
    report = check_loaded(Path(path), target)  # type: ignore[arg-type]
    if report.error is not None:
        return Outcome(path, False, report.error, None)
    mode = _JOB.get("mode", "text")
    data = rc.report_dict(report) if mode == "json" or _JOB.get("want_dict") else None
    payload: object = None
    if mode == "field":
        payload = rc.field_values(report.module, str(_JOB["field"]))  # type: ignore[arg-type]
    elif mode == "text":
        payload = rc.report_text(report, bool(_JOB.get("color")))
    return Outcome(path, report.ok, None, payload, data)


def run_many(
    paths: Sequence[Path],
    target: TargetInfo | None,
    *,
    mode: str = "text",
    field: str | None = None,
    color: bool = False,
    want_dict: bool = False,
    jobs: int | None = None,
) -> Iterable[Outcome]:
    """Check each path; yields Outcomes in input order. jobs=None: all cores for many files."""
    _JOB.update(target=target, mode=mode, field=field, color=color, want_dict=want_dict)
    if target is not None:
        target.warm()
    names = [str(p) for p in paths]
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = jobs if jobs is not None else ((ncpu or 1) if len(names) >= PARALLEL_MIN else 1)
    # Per-file objects die by reference counting; the cyclic collector would only walk
    # the same young objects over and over (and dirty copy-on-write pages after fork).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if jobs <= 1 or len(names) < 2:
            for name in names:
                yield _work(name)
        else:
            yield from _forked(names, min(jobs, len(names)))
    finally:
        if was_enabled:
            gc.enable()


def _forked(names: list[str], jobs: int) -> Iterator[Outcome]:
    """Split the list in contiguous slices: forked children check slices 2..n into
    temporary files while this process checks (and streams) slice 1, then their results
    follow in order. One bulk transfer per child instead of one message per file."""
    import pickle
    import tempfile

    size = -(-len(names) // jobs)
    slices = [names[i : i + size] for i in range(0, len(names), size)]
    children: list[tuple[int, str, list[str]]] = []
    for part in slices[1:]:
        fd, tmp = tempfile.mkstemp(prefix="kmod-py-check-")
        pid = os.fork()
        if pid == 0:  # child: never returns into the caller's stack
            code = 1
            try:
                with os.fdopen(fd, "wb") as fh:
                    pickle.dump([_work(n) for n in part], fh, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(fd)
        children.append((pid, tmp, part))
    try:
        for name in slices[0]:
            yield _work(name)
        for pid, tmp, part in children:
            _, status = os.waitpid(pid, 0)
            if status == 0:
                with open(tmp, "rb") as fh:
                    yield from pickle.load(fh)
            else:  # a child died: do its share here
                for name in part:
                    yield _work(name)
    finally:  # normal end: children are reaped already; Ctrl-C or an error: stop them
        import signal

        for pid, tmp, _ in children:
            try:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            os.unlink(tmp)
