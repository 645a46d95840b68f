"""Module.symvers: the symbols a kernel (and its modules) export, with CRCs.

Tab-separated, one export a line, in one of three layouts:
  5.6+      0xCRC  symbol  module  EXPORT_SYMBOL[_GPL]  namespace
  5.4-5.5   0xCRC  symbol  namespace  module  EXPORT_SYMBOL[_GPL]
  <= 5.3    0xCRC  symbol  module  EXPORT_SYMBOL[_GPL]
The layout is told per line by where the EXPORT_ column sits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.errors import UsageError


@dataclass(frozen=True, slots=True)
class Export:
    name: str
    crc: int
    module: str  # "vmlinux" or the module's path without .ko
    kind: str  # EXPORT_SYMBOL, EXPORT_SYMBOL_GPL, ...
    namespace: str = ""

    @property
    def gpl_only(self) -> bool:
        return self.kind.endswith("_GPL") or self.kind == "EXPORT_SYMBOL_GPL_FUTURE"


def parse_line(line: str) -> Export | None:
    f = line.rstrip("\n").split("\t")
    if len(f) < 4:
        return None
    try:
        crc = int(f[0], 16)
    except ValueError:
        return None
    if f[3].startswith("EXPORT_"):  # 5.6+ (namespace last, maybe absent) or <= 5.3
        return Export(f[1], crc, f[2], f[3], f[4] if len(f) > 4 else "")
    if len(f) > 4 and f[4].startswith("EXPORT_"):  # 5.4-5.5
        return Export(f[1], crc, f[3], f[4], f[2])
    return None


def parse_symvers(lines: Iterable[str]) -> dict[str, Export]:
    """Exports by symbol name; malformed lines are skipped, a later line wins like modpost."""
    out: dict[str, Export] = {}
    for line in lines:
        exp = parse_line(line)
        if exp is not None:
            out[exp.name] = exp
    return out


def read_symvers(path: Path) -> dict[str, Export]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_symvers(fh)
    except OSError as err:
        raise UsageError(
            f"cannot read symbol file {path}: {err.strerror}",
            "pass the Module.symvers written by the build of the module that exports the symbols",
        ) from None
