"""Rendering of check reports: kmod modinfo's text format, -F FIELD, JSON, JUnit XML.

modinfo's format (kmod tools/modinfo.c): `filename:` then every .modinfo entry
in section order as `key:` padded to column 16, then sig_* fields of a signed
module, then the parm lines last: parm and parmtype merged per parameter,
most recently first-seen parameter first (kmod prepends to its list).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kbuild_py.check.elf.modfile import ModuleFile
from kbuild_py.check.model import Finding, ModuleReport
from kbuild_py.report.table import paint

_SEV_COLOR = {"error": "red", "warning": "yellow", "info": "cyan"}


def kmod_filename(path: os.PathLike[str] | str) -> str:
    """kmod's path_make_absolute_cwd: cwd joined in front of a relative path, nothing else."""
    p = os.fspath(path)
    return p if p.startswith("/") else os.getcwd() + "/" + p


def info_list(m: ModuleFile) -> list[tuple[str, str]]:
    """kmod_module_get_info(): .modinfo entries then, for a signed module, the sig_* fields."""
    items = list(m.modinfo)
    sig = m.signature
    if sig is not None:
        fields = sig.kmod_fields()
        if fields:
            items.extend(fields)
    return items


def _params(items: Sequence[tuple[str, str]]) -> list[tuple[str, str | None, str | None]]:
    """(name, desc, type) in kmod's print order."""
    order: list[str] = []
    params: dict[str, list[str | None]] = {}
    for key, value in items:
        if key not in ("parm", "parmtype"):
            continue
        name, colon, rest = value.partition(":")
        if not colon:
            continue  # kmod: "Found invalid ...: missing ':'" on stderr, then skipped
        entry = params.get(name)
        if entry is None:
            entry = params[name] = [None, None]
            order.append(name)
        entry[0 if key == "parm" else 1] = rest
    return [(n, params[n][0], params[n][1]) for n in reversed(order)]


_LABELS: dict[str, str] = {}  # "key:" padded to column 16, per key seen


def modinfo_text(m: ModuleFile, filename: str | None = None) -> str:
    """The block `modinfo FILE` prints for this module."""
    items = info_list(m)
    lines = [f"filename:       {filename or kmod_filename(m.path)}"]
    labels = _LABELS
    for key, value in items:
        if key == "parm" or key == "parmtype":
            continue
        label = labels.get(key)
        if label is None:
            label = f"{key}:{' ' * abs(15 - len(key))}"
            if len(labels) < 4096:
                labels[key] = label
        lines.append(label + value)
    for name, desc, typ in _params(items):
        if desc is None:
            lines.append(f"parm:           {name}:{typ}")
        elif typ is not None:
            lines.append(f"parm:           {name}:{desc} ({typ})")
        else:
            lines.append(f"parm:           {name}:{desc}")
    return "\n".join(lines) + "\n"


def field_values(m: ModuleFile, field: str, filename: str | None = None) -> list[str]:
    """What `modinfo -F FIELD` prints, one value a line."""
    if field == "filename":
        return [filename or kmod_filename(m.path)]
    items = info_list(m)
    if field == "parm":
        out = []
        for name, desc, typ in _params(items):
            if desc is None:
                out.append(f"{name}: ({typ})")
            elif typ is not None:
                out.append(f"{name}:{desc} ({typ})")
            else:
                out.append(f"{name}:{desc}")
        return out
    return [v for k, v in items if k == field]


# --- rule results -------------------------------------------------------------------------


GROUP_SHOWN = 3  # findings of one rule shown before the rest are counted (--verbose: all)


def built_for_line(r: ModuleReport) -> str | None:
    """One line when the module was built for another kernel than the target."""
    built = (r.vermagic or "").split(" ", 1)[0]
    if not built or not r.target or built == r.target:
        return None
    return (f"built for {built}, target is {r.target}: "
            f"rebuild with `kmod-py build --kernel {r.target}`")


def _shared_hint(hints: Sequence[str]) -> str:
    """The advice every hint of a group ends with ('module has 0x…, R exports 0x…: rebuild …'
    -> 'rebuild …'); the first hint when they have nothing in common."""
    first = hints[0]
    if all(h == first for h in hints):
        return first
    tails = [h.rsplit(": ", 1)[-1] for h in hints]
    return tails[0] if all(t == tails[0] for t in tails) else first


def _grouped(findings: Sequence[Finding], verbose: bool) -> list[tuple[list[Finding], int]]:
    """(findings shown, how many more) per run of one rule and severity."""
    groups: list[list[Finding]] = []
    for f in findings:
        if groups and (groups[-1][0].rule_id, groups[-1][0].severity) == (f.rule_id, f.severity):
            groups[-1].append(f)
        else:
            groups.append([f])
    if verbose:
        return [(g, 0) for g in groups]
    return [(g, 0) if len(g) <= GROUP_SHOWN + 1 else (g[:GROUP_SHOWN], len(g) - GROUP_SHOWN)
            for g in groups]


def findings_text(r: ModuleReport, color: bool = False, verbose: bool = False) -> str:
    lines = []
    n_ran = len(r.ran)
    if r.target:
        lines.append(f"--- check: {n_ran} rules against {r.target}")
    else:
        lines.append(
            f"--- check: {n_ran} target-free rules (no target kernel: vermagic, symbol "
            "versions, unknown symbols and GPL-only use are not checked; pass --kernel or --kdir)"
        )
    built_for = built_for_line(r)
    if built_for:
        lines.append(built_for)
    for shown, more in _grouped(r.findings, verbose):
        first = shown[0]
        tag = paint(f"{first.severity.upper():<8}", _SEV_COLOR[first.severity], color)
        for f in shown:
            lines.append(f"{tag} {f.rule_id:<20} {f.message}")
            if f.hint and f.severity != "info" and not more:
                lines.append(f"{'':<8} {'':<20} hint: {f.hint}")
        if more:
            lines.append(f"{tag} {first.rule_id:<20} … and {more} more like these "
                         f"({len(shown) + more} in all; --verbose or --json lists every one)")
            hints = [f.hint for f in shown if f.hint]
            if hints and first.severity != "info":
                lines.append(f"{'':<8} {'':<20} hint: {_shared_hint(hints)}")
    for rid, why in r.skipped.items():
        lines.append(f"{'SKIPPED':<8} {rid:<20} {why}")
    errors, warnings = r.count("error"), r.count("warning")
    if r.ok:
        verdict = paint("ok", "green", color) + (
            f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
        )
    else:
        verdict = paint("FAILED", "red", color) + f" ({errors} error{'s' * (errors != 1)}"
        verdict += f", {warnings} warning{'s' * (warnings != 1)})" if warnings else ")"
    lines.append(f"result: {verdict}")
    return "\n".join(lines) + "\n"


def report_text(r: ModuleReport, color: bool = False, verbose: bool = False) -> str:
    if r.module is None:
        return ""
    return modinfo_text(r.module) + findings_text(r, color, verbose) + "\n"


def report_dict(r: ModuleReport) -> dict:
    m = r.module
    sig = m.signature if m is not None else None
    return {
        "path": str(r.path),
        "ok": r.ok,
        "error": r.error,
        "target": r.target,
        "name": m.name if m else None,
        "vermagic": r.vermagic,
        "compression": m.compression if m else None,
        "modinfo": [[k, v] for k, v in m.modinfo] if m else [],
        "signature": sig.summary if sig is not None else None,
        "built_for": (r.vermagic or "").split(" ", 1)[0] or None,
        "findings": [
            {"rule": f.rule_id, "severity": f.severity, "message": f.message, "hint": f.hint}
            for f in r.findings
        ],
        "rules_run": list(r.ran),
        "rules_skipped": dict(r.skipped),
    }


def summary(reports: Sequence[ModuleReport]) -> dict[str, int]:
    return {
        "modules": len(reports),
        "ok": sum(1 for r in reports if r.ok),
        "failed": sum(1 for r in reports if r.error is None and not r.ok),
        "unreadable": sum(1 for r in reports if r.error is not None),
    }


def unreadable_dict(path: str, error: str) -> dict:
    return {
        "path": path,
        "ok": False,
        "error": error,
        "target": None,
        "name": None,
        "vermagic": None,
        "compression": None,
        "modinfo": [],
        "signature": None,
        "findings": [],
        "rules_run": [],
        "rules_skipped": {},
    }


def tally_line(outcomes: Sequence) -> str:
    bad = sum(1 for o in outcomes if o.error is None and not o.ok)
    unreadable = sum(1 for o in outcomes if o.error is not None)
    good = len(outcomes) - bad - unreadable
    return f"checked {len(outcomes)}: {good} ok, {bad} failed, {unreadable} unreadable\n"


def to_json(dicts: Sequence[dict], targets: Sequence[str | None]) -> str:
    s = {
        "modules": len(dicts),
        "ok": sum(1 for d in dicts if d["ok"]),
        "failed": sum(1 for d in dicts if d["error"] is None and not d["ok"]),
        "unreadable": sum(1 for d in dicts if d["error"] is not None),
    }
    doc = {"targets": list(targets), "summary": s, "modules": list(dicts)}
    import json

    # lazy for start-up: plain `kmod-py check` prints text, never JSON
    from kbuild_py.trust.fs import json_safe

    return json.dumps(json_safe(doc), indent=2) + "\n"


def to_junit(dicts: Sequence[dict]) -> str:
    """One <testsuite> per module, one <testcase> per rule that ran (failure = error findings,
    several in one rule joined), through the one JUnit writer (report/junit.py)."""
    # lazy for start-up: most `kmod-py check` runs write no JUnit
    from kbuild_py.report import junit

    suites = []
    for d in dicts:
        path = d["path"]
        suite = junit.Suite(path)
        if d["error"] is not None:
            suite.cases.append(junit.Case(path, "read", outcome=junit.Outcome("error", d["error"])))
        by_rule: dict[str, list[dict]] = {}
        for f in d["findings"]:
            by_rule.setdefault(f["rule"], []).append(f)
        for rid in d["rules_run"]:
            errs = [f for f in by_rule.get(rid, []) if f["severity"] == "error"]
            outcome = None
            if errs:
                outcome = junit.Outcome(
                    "failure", "; ".join(f["message"] for f in errs),
                    text="\n".join(f["hint"] or "" for f in errs).strip(),
                )
            suite.cases.append(junit.Case(path, rid, outcome=outcome))
        for rid, why in d["rules_skipped"].items():
            suite.cases.append(junit.Case(path, rid, outcome=junit.Outcome("skipped", why)))
        suites.append(suite)
    return junit.suites_xml("kmod-py check", suites)
