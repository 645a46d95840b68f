"""Explanations as text lines (under a kernel's build result, or for `kmod-py explain`) and
as JSON-ready dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kbuild_py.explain.drift import key
from kbuild_py.explain.model import Change, Declaration, Explanation, Kernel, Lookup

SHOWN_LINES = 6  # a macro or inline function this short is shown whole


def _kernel_label(k: Kernel) -> str:
    return f"{k.release} ({k.version_text})" if k.release != k.version_text else k.release


def _change_line(c: Change) -> str:
    before = f"{c.before.version_text} (LINUX_VERSION_CODE {c.before.code})"
    after = f"{c.after.version_text} ({c.after.code})"
    verb = {"removed": "removed", "added": "added", "changed": "changed"}[c.what]
    guard = c.guard or "no guard: both kernels have the same LINUX_VERSION_CODE"
    return f"{verb} after {before}, by {after}: {guard}"


def _declaration_lines(d: Declaration, indent: int) -> list[str]:
    where = f"{d.file}:{d.line}  "
    out = [where + d.signature]
    lines = d.text.splitlines()
    if d.kind in ("macro", "inline function") and 1 < len(lines) <= SHOWN_LINES:
        pad = " " * (indent + len(where))
        out += [pad + ln.rstrip("\\ \t").replace("\t", "    ") for ln in lines[1:]]
    return out


def _lookup_lines(
    lk: Lookup, width: int, failing: str | None, indent: str, previous: Lookup | None
) -> list[str]:
    """One kernel's declaration; `same` when it equals the kernel listed just above."""
    label = _kernel_label(lk.kernel).ljust(width)
    mark = " <-" if lk.kernel.release == failing else "   "
    head = f"{indent}  {label}{mark} "
    d = lk.declaration
    if d is None:
        same = previous is not None and previous.declaration is None
        return [head + ("absent" + (f" ({lk.note})" if lk.note else "") if not same else "absent")]
    if previous is not None and key(previous.declaration) == key(d) and mark == "   ":
        return [f"{head}same, {d.file}:{d.line}"]
    body = _declaration_lines(d, len(head))
    extra = f"  (+{lk.others} other declaration{'s' if lk.others > 1 else ''})" if lk.others else ""
    return [head + body[0] + extra, *body[1:]]


def render_text(explanations: Sequence[Explanation], indent: str = "  ") -> list[str]:
    """Drift first (each with its per-kernel declarations and the change), then names that
    are the same everywhere, then names no kernel declares (left unexplained)."""
    if not explanations:
        return []
    drift = [e for e in explanations if e.verdict == "drift"]
    same = [e for e in explanations if e.verdict == "same"]
    unknown = [e for e in explanations if e.verdict == "unknown"]
    kernels = {lk.kernel.release: lk.kernel for e in explanations for lk in e.lookups}
    names = ", ".join(_kernel_label(k) for k in sorted(kernels.values(), key=lambda k: k.code))
    out = [f"{indent}explain: compared with the headers of {names or 'no kernel'}"]
    width = max((len(_kernel_label(k)) for k in kernels.values()), default=0)
    for e in drift:
        m = e.mention
        where = f"{m.file}:{m.line}" if m.file else "modpost"
        out.append(f"{indent}{m.name} ({m.kind}) at {where}")
        if m.detail:
            out.append(f"{indent}  {m.detail}")
        previous: Lookup | None = None
        for lk in e.lookups:
            out += _lookup_lines(lk, width, e.failing, indent, previous)
            previous = lk
        for c in e.changes:
            out.append(f"{indent}  {_change_line(c)}")
    if drift:
        out.append(
            f"{indent}(each change happened in its range; --explain-with a kernel in between "
            "narrows it)"
        )
    for e in same:
        d = next(lk.declaration for lk in e.lookups if lk.declaration is not None)
        out.append(
            f"{indent}{e.mention.name} ({e.mention.kind}): the same in every kernel at hand, "
            f"no change between them: {d.file}:{d.line}  {d.signature}"
        )
    if unknown:
        listed = ", ".join(
            f"{e.mention.name} ({e.mention.file}:{e.mention.line})"
            if e.mention.file
            else e.mention.name
            for e in unknown
        )
        out.append(f"{indent}no kernel at hand declares {listed}: left unexplained")
    return out


def _kernel_json(k: Kernel) -> dict[str, Any]:
    return {"release": k.release, "spec": k.spec, "version": k.version_text, "version_code": k.code}


def _decl_json(d: Declaration | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "kind": d.kind,
        "signature": d.signature,
        "text": d.text,
        "file": d.file,
        "line": d.line,
    }


def to_json(explanations: Sequence[Explanation]) -> list[dict[str, Any]]:
    out = []
    for e in explanations:
        m = e.mention
        out.append(
            {
                "identifier": m.identifier,
                "container": m.container,
                "name": m.name,
                "kind": m.kind,
                "verdict": e.verdict,
                "message": m.message,
                "file": m.file,
                "line": m.line,
                "detail": m.detail,
                "kernels": [
                    {
                        **_kernel_json(lk.kernel),
                        "failing": lk.kernel.release == e.failing,
                        "declaration": _decl_json(lk.declaration),
                        "absent": lk.declaration is None,
                        "note": lk.note or None,
                        "other_declarations": lk.others,
                    }
                    for lk in e.lookups
                ],
                "changes": [
                    {
                        "what": c.what,
                        "before": _kernel_json(c.before),
                        "after": _kernel_json(c.after),
                        "guard": c.guard,
                    }
                    for c in e.changes
                ],
            }
        )
    return out


def render_reports(reports: Sequence[Any]) -> list[str]:
    """`kmod-py explain`: each kernel's outcome, and the explanations of a failed build."""
    out: list[str] = []
    for r in reports:
        head = f"kernel {r.release} ({r.spec})"
        if r.built:
            out.append(f"{head}: builds, nothing to explain")
            continue
        status = "no finished build" if r.exit is None else f"build failed (make exit {r.exit})"
        out.append(f"{head}: {status}; log: {r.log}")
        out += render_text(r.explanations) or ["  no kernel identifier in its errors"]
    return out


def reports_json(reports: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "kernel": r.spec,
            "release": r.release,
            "built": r.built,
            "exit": r.exit,
            "log": str(r.log),
            "explanation": to_json(r.explanations),
        }
        for r in reports
    ]
