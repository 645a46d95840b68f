"""Rendering `kmod-py test` results: per-kernel text, a summary table, JSON, JUnit XML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kbuild_py.boot.run import TestResult
from kbuild_py.boot.verdict import taint_letters
from kbuild_py.report import junit
from kbuild_py.report.table import markdown_table, paint, table
from kbuild_py.trust.fs import json_safe

STEP_LINES = 12  # kernel lines shown under one step
_COLOR = {"pass": "green", "fail": "red", "timeout": "red", "error": "yellow"}


def _rel(path: Path | None, base: Path | None) -> str:
    if path is None:
        return "-"
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


def _short(line: str) -> str:
    return re.sub(r"^\[\s*(\d+\.\d\d)\d*\]", r"[\1]", line.strip())


def step_text(r: TestResult, kind: str, name: str) -> str:
    v = r.verdict
    s = v.step(kind, name) if v else None
    if s is None:
        return "-"
    if s.rc is None:
        return "hung"
    return "ok" if s.rc == 0 else f"exit {s.rc}"


def render_result(
    r: TestResult, base: Path | None = None, color: bool | None = None
) -> list[str]:
    """The per-kernel report: result line, notes, steps with the kernel's lines, problems."""
    head = paint(f"{r.status.upper():7}", _COLOR.get(r.status, "bold"), color)
    label = r.release if r.label in (r.release, "") else f"{r.release} ({r.label})"
    v = r.verdict
    info = ""
    if v is not None and v.init_uptime is not None:
        info = f"boot {v.init_uptime:.1f} s, "
    info = f"{info}total {r.seconds:.1f} s ({r.accel})" if r.accel else ""
    if v is not None:
        info += f"  taint {v.taint_text}"
        if v.taint_end is not None and v.taint is not None and v.taint_end != v.taint:
            info += f" ({taint_letters(v.taint_end)} after unload)"
    out = [f"{head} {label}  {info}".rstrip()]
    out += [f"  note: {n}" for n in r.notes]
    if r.error:
        out.append(f"  error: {r.error}")
    if r.deps:
        out.append(f"  in-kernel deps: {', '.join(r.deps)}")
    if v is not None:
        for s in v.steps:
            what = f"{s.kind} {s.name}" if s.name != "-" else s.kind
            out.append(f"  {what}: {step_text(r, s.kind, s.name)}")
            out += [f"    | {o}" for o in s.output if o.strip()]
            said = [_short(k) for k in s.kernel if k.strip()]
            out += [f"    {k}" for k in said[:STEP_LINES]]
            if len(said) > STEP_LINES:
                out.append(f"    ... {len(said) - STEP_LINES} more kernel lines (console log)")
            if s.kind == "insmod" and s.name in v.sysfs:
                out.append(f"  /sys/module/{s.name}: {v.sysfs[s.name]}")
        for name, why in v.skipped:
            out.append(f"  skipped{'' if name == '-' else ' ' + name}: {why}")
        for g in v.groups:
            probs = v.module_problems.get(g, [])
            state = paint("ok", "green", color) if not probs else paint("FAIL", "red", color)
            out.append(f"  module {g}: {state}" + (f": {probs[0]}" if probs else ""))
            out += [f"    {p}" for p in probs[1:]]
        out += [f"  warning: {w}" for w in v.warnings]
        out += [f"  problem: {p}" for p in v.problems]
        out += [f"  hint: {h}" for h in v.hints]
        if v.excerpt and not v.passed:
            out.append("  log excerpt:")
            out += [f"    {_short(x)}" for x in v.excerpt]
    if r.console is not None:
        out.append(f"  console log: {_rel(r.console, base)}")
    return out


def _load_unload(r: TestResult, name: str) -> tuple[str, str]:
    """LOAD/UNLOAD columns: one module's outcome, or 'N/M ok' for several."""
    v = r.verdict
    if v is None or len(r.modules) <= 1:
        return step_text(r, "insmod", name), step_text(r, "rmmod", name)
    n = len(r.modules)
    loads = sum(step_text(r, "insmod", m) == "ok" for m in r.modules)
    unloads = sum(step_text(r, "rmmod", m) == "ok" for m in r.modules)
    return f"{loads}/{n} ok", f"{unloads}/{n} ok"


def summary_table(results: list[TestResult]) -> str:
    rows = []
    for r in results:
        name = r.modules[0] if r.modules else ""
        v = r.verdict
        rows.append([
            r.label, r.release, r.status.upper(),
            f"{r.seconds:.1f} s" if r.accel else "-", r.accel or "-",
            *_load_unload(r, name),
            v.taint_text if v else "-",
        ])
    heads = ["KERNEL", "RELEASE", "RESULT", "TIME", "ACCEL", "LOAD", "UNLOAD", "TAINT"]
    return table(heads, rows)


def to_dict(r: TestResult, base: Path | None = None) -> dict[str, Any]:
    v = r.verdict
    d: dict[str, Any] = {
        "kernel": r.label, "release": r.release, "result": r.status,
        "seconds": round(r.seconds, 2), "accel": r.accel, "notes": r.notes,
        "error": r.error, "modules": r.modules, "deps": r.deps,
        "console_log": _rel(r.console, base) if r.console else None,
    }
    if v is not None:
        d.update({
            "problems": v.problems, "taint": v.taint, "taint_flags": v.taint_text,
            "taint_at_end": v.taint_end, "taint_before": v.taint_before,
            "guest_uptime_at_init": v.init_uptime, "guest_release": v.release,
            "sysfs": v.sysfs, "excerpt": v.excerpt, "warnings": v.warnings, "hints": v.hints,
            "skipped": [{"module": n, "reason": why} for n, why in v.skipped],
            "per_module": {g: {"ok": not v.module_problems.get(g),
                               "problems": v.module_problems.get(g, [])} for g in v.groups},
            "steps": [
                {"step": s.kind, "name": s.name, "module": s.group, "exit": s.rc,
                 "output": s.output, "kernel": s.kernel}
                for s in v.steps
            ],
        })
    return d


def to_json(results: list[TestResult], base: Path | None = None) -> str:
    return json.dumps(json_safe([to_dict(r, base) for r in results]), indent=2)


def to_junit(results: list[TestResult], base: Path | None = None) -> str:
    """JUnit XML: one testcase per kernel, or per module and kernel when several modules were
    tested one at a time; fail/timeout -> <failure>, error -> <error>."""
    suite = junit.Suite("kmod-py test", time=sum(r.seconds for r in results))
    for r in results:
        v = r.verdict
        groups = v.groups if v is not None and r.status != "timeout" else []
        each: list[str | None] = list(groups) or [None]
        for module in each:
            mods = [module] if module else (r.modules or ["module"])
            problems = (v.module_problems.get(module, []) if module and v is not None
                        else v.problems if v is not None else [])
            outcome = None
            if r.status == "error":
                outcome = junit.Outcome("error", r.error or "error", text=r.error or "")
            elif (module and problems) or (not module and r.status != "pass" and v):
                outcome = junit.Outcome("failure", "; ".join(problems)[:500],
                                        "fail" if module else r.status,
                                        "\n".join(v.excerpt) if v else "")
            suite.cases.append(junit.Case(
                "kmod-py.test." + ",".join(mods), f"{r.label} ({r.release})", r.seconds,
                outcome, "\n".join(render_result(r, base, color=False))))
    return junit.suite_xml(suite)


def step_summary(results: list[TestResult]) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: kernels, results, load/unload, taint, problems."""
    rows = []
    for r in results:
        name = r.modules[0] if r.modules else ""
        v = r.verdict
        mark = "✅" if r.passed else "❌"
        rows.append([
            r.label, r.release, f"{mark} {r.status.upper()}",
            f"{r.seconds:.1f} s" if r.accel else "-", r.accel or "-",
            step_text(r, "insmod", name), step_text(r, "rmmod", name),
            v.taint_text if v else "-",
        ])
    heads = ["kernel", "release", "result", "time", "accel", "load", "unload", "taint"]
    out = ["### kmod-py test", "", markdown_table(heads, rows)]
    for r in results:
        why = ([r.error] if r.error else []) + (r.verdict.problems if r.verdict else [])
        if not r.passed and why:
            out += ["", f"**{r.release}**: " + "; ".join(why)]
    return "\n".join(out) + "\n"
