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

from kbuild_py.check.elf.decompress import share_between_processes
from kbuild_py.check.engine import check_loaded
from kbuild_py.check.model import TargetInfo
from kbuild_py.errors import UsageError
from kbuild_py.report import check as rc

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
PARALLEL_MIN = 48  # below this, one process is faster than starting workers


@dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool
    error: str | None  # unreadable: one line
    payload: object  # bytes (text), list[str] (-F values) or None (json only)
    data: dict | None = None  # JSON-ready report, when asked for (--json, --junit)


def collect(files: Sequence[Path | str], dirs: Sequence[Path]) -> list[Path | str]:
    """FILE arguments as given, then module files found under each -r DIR (sorted)."""
    out: list[Path | str] = list(files)
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


def _work(name: str) -> Outcome:
    target = _JOB.get("target")
    p = Path(name)  # made here, in the workers: thousands of Paths cost ~10 ms
    path = str(p)
    report = check_loaded(p, target)  # type: ignore[arg-type]
    if report.error is not None:
        return Outcome(path, False, report.error, None)
    trusted = _JOB.get("trusted")
    if trusted and report.module is not None:  # check --cert
        # lazily, for start-up: the X.509/CMS libraries only for check --cert
        from kbuild_py.signing.verify import with_cert_findings

        m = report.module
        report.findings = with_cert_findings(report.findings, m.data, m.name, trusted)  # type: ignore[arg-type]
    mode = _JOB.get("mode", "text")
    data = rc.report_dict(report) if mode == "json" or _JOB.get("want_dict") else None
    payload: object = None
    if mode == "field":
        payload = rc.field_values(report.module, str(_JOB["field"]))  # type: ignore[arg-type]
    elif mode == "text":
        # encoded here, in the workers; bytes a module held that are not UTF-8 go out as
        # they were (like modinfo)
        payload = rc.report_text(report, bool(_JOB.get("color")), bool(_JOB.get("verbose")))
        payload = payload.encode("utf-8", "surrogateescape")
    return Outcome(path, report.ok, None, payload, data)


def run_many(
    paths: Sequence[Path | str],
    target: TargetInfo | None,
    *,
    mode: str = "text",
    field: str | None = None,
    color: bool = False,
    want_dict: bool = False,
    jobs: int | None = None,
    trusted: Sequence[object] = (),
    verbose: bool = False,
) -> Iterable[Outcome]:
    """Check each path; yields Outcomes in input order. jobs=None: all cores for many files.
    trusted: certificates (signing.verify.TrustedCert) to verify signatures against."""
    _JOB.update(
        target=target, mode=mode, field=field, color=color, want_dict=want_dict, trusted=trusted,
        verbose=verbose,
    )
    if target is not None:
        target.warm()
    names = [os.fspath(p) for p in paths]
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
    """This process checks (and streams) the list from the front while the first child
    checks it from the back; they meet wherever the work says (modules differ tenfold in
    cost), told by two claim counters in shared memory. With more cores, further children
    take static slices off the end. Each child sends its results in one pickled file."""
    import mmap
    import pickle
    import tempfile

    share_between_processes()  # one big decompressed module in memory at a time, not one per core
    size = -(-len(names) // jobs)
    shared = len(names) - size * (jobs - 2)  # the front part, worked from both ends
    claims = mmap.mmap(-1, 16)  # anonymous, shared with the children
    counter = memoryview(claims).cast("q")  # [0]: front claimed below; [1]: back claimed from
    counter[0], counter[1] = 0, shared
    parts = [(shared - 1, -1, True)]  # (first index, stop, from the back against the front)
    parts += [(i, min(i + size, len(names)), False) for i in range(shared, len(names), size)]
    children: list[tuple[int, str]] = []
    for first, stop, back in parts:
        fd, tmp = tempfile.mkstemp(prefix="kmod-py-check-")
        pid = os.fork()
        if pid == 0:  # child: never returns into the caller's stack
            code = 1
            try:
                part = _back(names, counter, first) if back else _slice(names, first, stop)
                with os.fdopen(fd, "wb") as fh:
                    pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(fd)
        children.append((pid, tmp))
    try:
        i = 0
        while i < shared:
            counter[0] = i + 1  # claim i, then see whether the back already has it
            if i >= counter[1]:
                break
            yield _work(names[i])
            i += 1
        done: dict[int, Outcome] = {}
        for pid, tmp in children:
            _, status = os.waitpid(pid, 0)
            if status == 0:
                with open(tmp, "rb") as fh:
                    done.update(pickle.load(fh))
        for k in range(i, len(names)):  # a child died, or both sides stood back: do it here
            o = done.get(k)
            yield o if o is not None else _work(names[k])
    finally:  # normal end: children are reaped already; Ctrl-C or an error: stop them
        import signal

        for pid, tmp in children:
            try:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            os.unlink(tmp)
        counter.release()
        claims.close()


def _back(names: list[str], counter: memoryview, first: int) -> dict[int, Outcome]:
    """From index first downwards until the front's claims are reached."""
    out = {}
    j = first
    while j >= 0:
        counter[1] = j  # claim j, then see whether the front already has it
        if j < counter[0]:
            break
        out[j] = _work(names[j])
        j -= 1
    return out


def _slice(names: list[str], first: int, stop: int) -> dict[int, Outcome]:
    return {k: _work(names[k]) for k in range(first, stop)}
