"""Running the rules: check_module(path, target) reads a module and runs every rule
of check.rules.RULES that can run: module rules always, target rules when a target is given.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kbuild_py.check.elf.modfile import ModuleFile, read_module
from kbuild_py.check.model import ModuleReport, Rule, Skip, TargetInfo
from kbuild_py.check.rules import RULES
from kbuild_py.check.target import build_target_info
from kbuild_py.errors import ModuleReadError

if TYPE_CHECKING:
    from kbuild_py.kernels.buildtree import BuildTree

# --- target facts ------------------------------------------------------------------

_TARGETS: dict[tuple[str, tuple[str, ...]], TargetInfo] = {}


def target_info(tree: BuildTree, extra_symvers: Sequence[Path] = ()) -> TargetInfo:
    """TargetInfo of a build tree plus extra Module.symvers files (cached per process,
    and its symbol tables on disk per tree: see kbuild_py.check.target)."""
    key = (str(tree.path), tuple(str(p) for p in extra_symvers))
    info = _TARGETS.get(key)
    if info is None:
        info = _TARGETS[key] = build_target_info(tree, extra_symvers)
    return info


# --- running the rules -------------------------------------------------------------------


def run_rules(
    module: ModuleFile, target: TargetInfo | None, rules: Sequence[Rule] = RULES
) -> ModuleReport:
    report = ModuleReport(
        path=module.path, module=module, target=target.release if target else None
    )
    for r in rules:
        if r.needs_target and target is None:
            continue
        try:
            report.findings.extend(r.findings(module, target))
            report.ran.append(r.id)
        except Skip as why:
            report.skipped[r.id] = str(why)
    return report


def check_loaded(path: Path, target: TargetInfo | None) -> ModuleReport:
    path = path if isinstance(path, Path) else Path(path)
    try:
        module = read_module(path)
    except ModuleReadError as err:
        return ModuleReport(
            path=Path(path),
            module=None,
            error=err.message,
            target=target.release if target else None,
        )
    try:
        return run_rules(module, target)
    except (struct.error, IndexError, ValueError, OverflowError, UnicodeError) as err:
        # a structure read lazily (symbols, versions, signature) was malformed
        return ModuleReport(
            path=Path(path),
            module=None,
            error=f"{path}: malformed module ({type(err).__name__}: {err})",
            target=target.release if target else None,
        )


def check_module(
    path: Path, target: BuildTree | None, *, extra_symvers: Sequence[Path] = ()
) -> ModuleReport:
    """Read one module and run every rule that can run (target rules need a build tree)."""
    info = target_info(target, extra_symvers) if target is not None else None
    return check_loaded(Path(path), info)


def rules_table() -> list[Rule]:
    return list(RULES)
