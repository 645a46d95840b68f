"""Rendering build results: live lines, per-kernel outcome, summary table, JSON."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from kbuild_py.build.layout import layout_for, project_root_of
from kbuild_py.build.run import BuildResult, is_progress, parse_diagnostic
from kbuild_py.explain.render import render_text as render_explanations
from kbuild_py.explain.render import to_json as explanations_json
from kbuild_py.report import junit
from kbuild_py.report.table import (
    human_size,
    is_terminal,
    markdown_table,
    paint,
    rich_console,
    table,
    use_color,
)
from kbuild_py.trust.fs import json_safe

# the copy of a dkms.conf project: <base>/dkms/<module>/<version>/build (build.layout)
_DKMS_COPY = re.compile(r"(?<![\w./-])dkms/[^/\s]+/[^/\s]+/build/")


def live_line(line: str, prefix: str = "", verbose: bool = False) -> str | None:
    """What the concise live view shows for one make output line (None: hide it)."""
    diag = parse_diagnostic(line)
    if diag is not None:
        color = "red" if diag.kind == "error" else "yellow"
        return prefix + paint(line, color)
    if verbose or is_progress(line):
        return prefix + line
    return None


def _vermagic(res: BuildResult, ko: Path) -> str:
    for rep in res.reports:
        if rep.path == ko:
            return rep.vermagic or ""
    return ""


def result_label(res: BuildResult) -> str:
    if res.error:
        return "ERROR"
    if res.excluded is not None:
        return "excluded"
    if not res.built:
        return "FAILED"
    return "ok" if res.ok else "CHECK FAILED"


def render_result(res: BuildResult, project: Path) -> list[str]:
    """The block printed after one kernel's build."""
    t = res.target
    pkg = f"{res.package} {res.version or ''}".strip() + ": " if res.package else ""
    head = f"{pkg}kernel {t.release} ({t.spec}, {t.where})"
    out: list[str] = ["  " + paint(f"warning: {n}", "yellow") for n in res.notes]
    if res.excluded is not None and not res.error:
        out.append(f"{head}: excluded, not built: {res.excluded}")
        return out
    if res.error:
        out.append(paint(f"{head}: {res.error}", "red"))
        if res.log_path.is_file():
            out.append(f"  full log: {res.log_path}")
        return out
    if not res.built:
        why = res.failure or f"build failed (make exit {res.returncode})"
        out.append(paint(f"{head}: {why}", "red"))
        # compiler/objtool/modpost diagnostics first, make's own "***" lines after them
        for d in first_errors(res):
            out.append("  " + paint(d.text, "red" if d.kind == "error" else "yellow"))
        if not res.errors and res.tail:  # a step that failed without a recognised error
            out += [f"  | {line}" for line in res.tail]
        for ko in res.modules:
            out.append(f"  built: {ko.relative_to(res.outdir)}")
        out += render_explanations(res.explanations)
        out.append(f"  full log: {res.log_path}")
        return out
    warn = f", {warning_count(res)}" if res.warnings else ""
    out.append(paint(f"{head}: built in {res.duration:.1f} s{warn}", "green"))
    for d in res.warnings:
        out.append("  " + paint(d.text, "yellow"))
    for ko in res.modules:
        root = project_root_of(res.outdir) or res.outdir
        rel = ko.relative_to(root) if ko.is_relative_to(root) else ko
        size = human_size(ko.stat().st_size)
        out.append(f"  {rel}  {size}  vermagic: {_vermagic(res, ko).strip()}")
    out += signing_lines(res)
    for rep in res.reports:
        if rep.error:
            out.append("  " + paint(f"error: {rep.error}", "red"))
        for f in rep.findings:
            if f.severity == "info":
                continue
            color = "red" if f.severity == "error" else "yellow"
            out.append("  " + paint(f"{f.severity}: [{f.rule_id}] {f.message}", color))
        status = "passed" if rep.ok else "FAILED"
        out.append(f"  check {rep.path.name}: {status}")
    return out


def signing_lines(res: BuildResult) -> list[str]:
    """--sign: one line for the kernel's modules (they share key, hash and steps)."""
    s = res.signing
    if s is None:
        return []
    if s.note:
        return ["  " + paint(s.note, "yellow")]
    if not s.signed:
        return []
    steps = "stripped, " if s.signed[0].stripped else ""
    first = s.signed[0]
    return [f"  signed: {first.hash_algo}, {s.signer} ({steps}{res.target.release}'s sign-file)"]


def _signed_json(res: BuildResult, ko: Path) -> dict[str, object] | None:
    s = res.signing
    one = next((m for m in s.signed if m.path == ko), None) if s else None
    if s is None or one is None:
        return None
    return {"hash_algo": one.hash_algo, "signer": s.signer, "stripped": one.stripped}


def first_errors(res: BuildResult, limit: int = 12) -> list:
    return res.ranked_errors()[:limit]


def warning_count(res: BuildResult) -> str:
    """'N warning(s)', saying what they come from when make rebuilt only part of it."""
    n = f"{len(res.warnings)} warning(s)"
    earlier = sum(d.earlier for d in res.warnings)
    return f"{n} ({earlier} from objects not recompiled this time)" if earlier else n


def summary_table(results: Sequence[BuildResult]) -> str:
    rows = []
    for r in results:
        kos = ", ".join(k.name for k in r.modules) or "-"
        vm = "; ".join(sorted({_vermagic(r, k).strip() for k in r.modules})) or "-"
        rows.append(
            [
                r.target.release,
                r.target.compiler or "?",
                result_label(r),
                str(len(r.warnings)),
                kos,
                vm,
                f"{r.duration:.1f}s",
            ]
        )
    return table(["kernel", "compiler", "result", "warnings", ".ko", "vermagic", "time"], rows)


def to_json(results: Sequence[BuildResult]) -> str:
    doc = []
    for r in results:
        doc.append(
            {
                "kernel": r.target.spec,
                "release": r.target.release,
                "where": r.target.where,
                "compiler": r.target.compiler,
                "result": result_label(r),
                "ok": r.ok,
                "returncode": r.returncode,
                "duration": round(r.duration, 3),
                "log": str(r.log_path),
                "error": r.error or r.failure,
                "excluded": r.excluded,
                "package": r.package,
                "version": r.version,
                "expected": r.expected,
                "missing": r.missing,
                "extra": r.extra,
                "notes": r.notes,
                "ignored_directives": r.ignored,
                "tail": r.tail,
                "compiled": r.compiled,
                "warnings_earlier": sum(d.earlier for d in r.warnings),
                "errors": [d.text for d in first_errors(r, 1000)],
                "warnings": [d.text for d in r.warnings],
                "modules": [
                    {
                        "path": str(k),
                        "size": k.stat().st_size if k.exists() else None,
                        "vermagic": _vermagic(r, k),
                        "signed": _signed_json(r, k),
                    }
                    for k in r.modules
                ],
                "signing_note": r.signing.note if r.signing else None,
                "checks": [rep_json(rep) for rep in r.reports],
                "explanation": explanations_json(r.explanations),
            }
        )
    return json.dumps(json_safe(doc), indent=2)


def rep_json(rep) -> dict:
    return {
        "path": str(rep.path),
        "ok": rep.ok,
        "findings": [
            {"rule": f.rule_id, "severity": f.severity, "message": f.message, "hint": f.hint}
            for f in rep.findings
        ],
    }


def compiler_warning(release: str, kernel_cc: str, used: str) -> list[str]:
    return [
        paint(
            f"warning: the compiler differs from the one used to build kernel {release}", "yellow"
        ),
        f"  kernel built by: {kernel_cc}",
        f"  you are using:   {used}",
        "hint: install the kernel's compiler or pass --make-var CC=...",
    ]


class LiveView:
    """Prints make's lines (concise or all) and each kernel's outcome, thread-safely.

    On a terminal (and not --verbose) a rich Live area at the bottom shows each kernel
    being built (spinner, time, make's latest step); compiler diagnostics and each
    kernel's outcome print above it, and the area disappears when the builds end (close).
    Elsewhere the lines are printed as they come, the same plain text as always."""

    def __init__(
        self, project: Path, many: bool, verbose: bool, stream: IO[str] | None = None
    ) -> None:
        self.project, self.many, self.verbose = project, many, verbose
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._live: Any = None  # rich.live.Live, on a terminal
        self._running: dict[str, tuple[float, str]] = {}  # release -> (start, latest step)
        if not verbose and is_terminal(self.stream):
            self._start_live()

    def _start_live(self) -> None:
        from rich.live import Live  # on a terminal only (start-up time)

        console = rich_console(self.stream, use_color(self.stream))
        # other output meanwhile (explanations, notes) is printed above the area by rich
        self._live = Live(_Running(self), console=console, transient=True, refresh_per_second=8)
        self._live.start()

    def _print(self, lines: Sequence[str]) -> None:
        live = self._live
        if not lines:
            return
        if live is not None:  # rich's console has its own lock; ours guards _running, which
            from rich.text import Text  # printing redraws the area from (no lock held here)

            live.console.print(Text.from_ansi("\n".join(lines)), soft_wrap=True)
            return
        with self._lock:
            for line in lines:
                print(line, file=self.stream, flush=True)

    def line(self, target, line: str) -> None:
        line = line.replace(f"{layout_for(self.project, target.release).base}/", "")
        line = _DKMS_COPY.sub("", line)
        if self._live is not None:
            with self._lock:
                start = self._running.get(target.release, (time.monotonic(), ""))[0]
                if is_progress(line):
                    self._running[target.release] = (start, line.strip())
                    return
                self._running.setdefault(target.release, (start, ""))
            if parse_diagnostic(line) is None:
                return
        shown = live_line(line, f"[{target.release}] " if self.many else "", self.verbose)
        if shown is not None:
            self._print([shown])

    def done(self, res: BuildResult) -> None:
        with self._lock:
            self._running.pop(res.target.release, None)
        self._print(render_result(res, self.project))

    def close(self) -> None:
        """Remove the live area (a no-op off a terminal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None


class _Running:
    """The live area's content: one row per kernel being built."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    def __rich__(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        with self.view._lock:
            running = sorted(self.view._running.items())
        t = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for release, (start, step) in running:
            t.add_row(Spinner("dots"), release, f"{now - start:4.0f}s", step or "starting")
        return t


FIRST_ERRORS = 5  # compiler errors quoted in a failed build's JUnit failure and summary


def _first_error_lines(res: BuildResult) -> list[str]:
    return [d.text for d in first_errors(res, FIRST_ERRORS)]


def _case_names(res: BuildResult, expected: Sequence[str]) -> list[str]:
    """One JUnit case per module: the .ko files built, else the modules the project names."""
    if res.modules:
        return [k.name.split(".")[0] for k in res.modules]
    return list(res.expected or expected) or ["module"]


def _outcome(r: BuildResult, rep) -> junit.Outcome | None:
    """What one module's case says: an infrastructure error, a kernel dkms.conf excludes,
    a failed build (its first errors), check errors; None when it passed."""
    if r.error:
        return junit.Outcome("error", r.error, "infrastructure")
    if r.excluded is not None:
        return junit.Outcome("skipped", r.excluded)
    if not r.built:
        head = "build timed out" if r.timed_out else r.why_failed()
        text = "\n".join([*_first_error_lines(r), f"full log: {r.log_path}"])
        return junit.Outcome("failure", head, "build", text)
    if rep is not None and not rep.ok:
        bad = [f"[{f.rule_id}] {f.message}" for f in rep.findings
               if f.severity == "error"] or [rep.error or "check failed"]
        return junit.Outcome("failure", f"check: {bad[0]}", "check", "\n".join(bad))
    return None


def to_junit(results: Sequence[BuildResult], project: Path, expected: Sequence[str] = ()) -> str:
    """JUnit XML: a testsuite per kernel, a testcase per module (build + check rules). A failed
    build's first errors are the failure message; check errors fail the module's case."""
    suites = []
    for r in results:
        t = r.target
        suite = junit.Suite(f"{t.spec} ({t.release})", time=r.duration)
        reports = {rep.path.name.split(".")[0]: rep for rep in r.reports}
        for name in _case_names(r, expected):
            rep = reports.get(name)
            out = list(render_result(r, project))
            if rep is not None:
                out.append(f"rules run: {', '.join(rep.ran) or '-'}")
                out += [f"rule skipped: {k}: {v}" for k, v in rep.skipped.items()]
            suite.cases.append(junit.Case(
                f"kmod-py.build.{t.release}", f"{name} ({t.spec})", r.duration,
                _outcome(r, rep), "\n".join(out)))
        suites.append(suite)
    return junit.suites_xml("kmod-py build", suites)


def step_summary(results: Sequence[BuildResult]) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: a table of kernels and results, then the first
    errors of each failed build."""
    rows = []
    for r in results:
        mark = "✅" if r.ok else "❌"
        kos = ", ".join(k.name for k in r.modules) or "-"
        rows.append([r.target.spec, r.target.release, f"{mark} {result_label(r)}",
                     str(len(r.warnings)), kos, f"{r.duration:.1f} s"])
    out = ["### kmod-py build", "",
           markdown_table(["kernel", "release", "result", "warnings", "modules", "time"], rows)]
    for r in results:
        if r.error or not r.built:
            lines = [r.error] if r.error else _first_error_lines(r)
            out += ["", f"**{r.target.release}**:", "```", *lines, "```"]
    return "\n".join(out) + "\n"
