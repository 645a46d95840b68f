"""The check model: findings, rules, the target facts rules read, a module's report.

Rules are pure functions of (ModuleFile, TargetInfo); TargetInfo is the few facts
of a target kernel they need, read once per tree (check.target) and picklable (for
workers). The runner is check.engine. This module imports nothing else of kmod-py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kbuild_py.check.elf.modfile import ModuleFile
    from kbuild_py.check.elf.symvers import Export

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str
    hint: str | None = None


class Skip(Exception):  # noqa: N818 - a rule raises it when it cannot decide
    """A rule could not run on this input; the reason is reported."""


@dataclass(frozen=True)
class Issue:
    """What a rule reports: the engine makes it a Finding with the rule's id, and the
    rule's declared severity unless the issue names a milder one."""

    message: str
    hint: str | None = None
    severity: Severity | None = None


ModuleCheck = Callable[["ModuleFile", "TargetInfo | None"], Iterable[Issue]]
TargetCheck = Callable[["ModuleFile", "TargetInfo"], Iterable[Issue]]


@dataclass(frozen=True)
class Rule:
    """A rule as declared (check.rules.RULES): exactly one of check (runs on every module;
    the target may be None) and check_target (runs only with a target, never None)."""

    id: str
    severity: Severity  # the worst severity it reports, and its findings' default
    summary: str
    check: ModuleCheck | None = None
    check_target: TargetCheck | None = None

    @property
    def needs_target(self) -> bool:
        return self.check_target is not None

    def issues(self, module: ModuleFile, target: TargetInfo | None) -> Iterable[Issue]:
        """The rule's issues; nothing for a target rule when there is no target."""
        if self.check_target is not None:
            return () if target is None else self.check_target(module, target)
        assert self.check is not None  # one of the two, by construction (module_rule/target_rule)
        return self.check(module, target)

    def findings(self, module: ModuleFile, target: TargetInfo | None) -> list[Finding]:
        sev = self.severity
        return [
            Finding(self.id, i.severity or sev, i.message, i.hint)
            for i in self.issues(module, target)
        ]


def module_rule(rule_id: str, severity: Severity, summary: str) -> Callable[[ModuleCheck], Rule]:
    """Declare a rule that runs on every module (its target argument may be None)."""

    def declare(func: ModuleCheck) -> Rule:
        return Rule(rule_id, severity, summary, check=func)

    return declare


def target_rule(rule_id: str, severity: Severity, summary: str) -> Callable[[TargetCheck], Rule]:
    """Declare a rule that needs a target kernel: the engine runs it only with one."""

    def declare(func: TargetCheck) -> Rule:
        return Rule(rule_id, severity, summary, check_target=func)

    return declare


@dataclass(frozen=True)
class TargetInfo:  # noqa: B903
    """What the rules need to know about the target kernel."""

    release: str
    source: str  # where it was read from (a path)
    vermagic: str
    elf_machine: str
    config: dict[str, str]
    symvers_files: tuple[str, ...] = ()  # the tree's Module.symvers, then --extra-symbols
    module_struct_size: int | None = None
    # parses one Module.symvers (check.elf.symvers.read_symvers): the full export table is
    # read only when a finding needs its details
    read_exports: Callable[[Path], Mapping[str, Export]] | None = field(
        default=None, compare=False, repr=False
    )

    def enabled(self, option: str) -> bool:
        return self.config.get(option) in ("y", "m")

    @cached_property
    def exports(self) -> dict[str, Export]:
        """Every export by name; parsed only when a rule needs details (the sets below
        answer the common case and come from the on-disk cache)."""
        out: dict[str, Export] = {}
        if self.read_exports is not None:
            for f in self.symvers_files:
                out.update(self.read_exports(Path(f)))
        return out

    @cached_property
    def crc_pairs(self) -> frozenset[tuple[str, int]]:
        return frozenset((e.name, e.crc) for e in self.exports.values())

    @cached_property
    def version_records(self) -> frozenset[bytes]:
        """Each export as the 64-byte __versions record a module built against it holds."""
        pack = struct.Struct("<Q56s").pack
        return frozenset(
            pack(e.crc, e.name.encode("latin-1"))
            for e in self.exports.values()
            if len(e.name) < 56 and e.crc < 1 << 64
        )

    def warm(self) -> None:
        """Build the lookup sets now (before worker processes fork, so they share them)."""
        for name in ("version_records", "names", "gpl_only", "namespaced_names"):
            getattr(self, name)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self.exports)

    @cached_property
    def gpl_only(self) -> frozenset[str]:
        return frozenset(e.name for e in self.exports.values() if e.gpl_only)

    @cached_property
    def namespaced(self) -> dict[str, str]:
        return {e.name: e.namespace for e in self.exports.values() if e.namespace}

    @cached_property
    def namespaced_names(self) -> frozenset[str]:
        return frozenset(self.namespaced)


@dataclass
class ModuleReport:
    path: Path
    module: ModuleFile | None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # the file could not be read as a module
    target: str | None = None  # release checked against, None = target-free rules only
    ran: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and not any(f.severity == "error" for f in self.findings)

    @property
    def vermagic(self) -> str | None:
        return self.module.vermagic if self.module is not None else None

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)
