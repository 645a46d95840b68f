"""Comparing one identifier's declarations across kernels: where it changed, and the
LINUX_VERSION_CODE guard that tells the kernels at hand apart. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from kbuild_py.explain.model import Change, Declaration, Explanation, Lookup, Mention


def _normal(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = text.replace("\\\n", " ")
    return " ".join(text.split())


def key(decl: Declaration | None) -> tuple[str, str] | None:
    """What must be equal for two kernels to offer the same API: a macro's whole text, a
    function's prototype (not an inline body), a member's declaration, a struct's existence."""
    if decl is None:
        return None
    if decl.kind in ("struct", "union", "enum"):
        return (decl.kind, "")
    if decl.kind == "macro":
        return (decl.kind, _normal(decl.text))
    return ("function" if decl.kind == "inline function" else decl.kind, _normal(decl.signature))


def order(lookups: Sequence[Lookup]) -> list[Lookup]:
    return sorted(lookups, key=lambda lk: (lk.kernel.code, lk.kernel.version, lk.kernel.release))


def compare(mention: Mention, lookups: Sequence[Lookup], failing: str | None = None) -> Explanation:
    """An Explanation with the lookups in version order and every adjacent change."""
    ordered = order(lookups)
    changes: list[Change] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        ka, kb = key(a.declaration), key(b.declaration)
        if ka != kb:
            what = "added" if ka is None else "removed" if kb is None else "changed"
            changes.append(Change(a.kernel, b.kernel, what))
    return Explanation(mention, ordered, changes, failing)
