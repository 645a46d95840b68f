"""Plain-text rendering helpers shared by the commands (tables, colour)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_COLORS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}


def use_color(stream=None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, color: str, enabled: bool | None = None) -> str:
    if enabled is None:
        enabled = use_color()
    if not enabled or color not in _COLORS:
        return text
    return f"\033[{_COLORS[color]}m{text}\033[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned text table with a header rule."""
    cols = len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        for i in range(cols):
            widths[i] = max(widths[i], len(str(row[i])))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (for $GITHUB_STEP_SUMMARY); `|` in cells escaped."""

    def line(cells: Sequence[str]) -> str:
        text = (str(c).replace("|", "\\|").replace("\n", " ") for c in cells)
        return "| " + " | ".join(text) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)])


def append_step_summary(markdown: str) -> bool:
    """Append to the file GitHub Actions names in GITHUB_STEP_SUMMARY; False when unset."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown.rstrip("\n") + "\n\n")
    return True
