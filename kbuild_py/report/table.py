"""Rendering helpers shared by the commands (tables, colour).

On a terminal, tables are drawn by rich (which typer brings); rich is imported only then,
so a command whose output goes to a file or a pipe starts without it and prints the plain
text table below, byte for byte the same from one version to the next.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from typing import IO, Any

_COLORS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def use_color(stream: IO[str] | None = None) -> bool:
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


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], stream: IO[str] | None = None
) -> str:
    """A table for `stream` (default stdout): rich's on a terminal, else plain text."""
    if is_terminal(stream):
        return rich_table(headers, rows, use_color(stream))
    return plain_table(headers, rows)


def rich_console(file: IO[str], color: bool, width: int | None = None) -> Any:
    """A rich Console for `file` (rich imported here, on a terminal only: start-up time)."""
    from rich.console import Console

    return Console(
        file=file, force_terminal=True, no_color=not color, highlight=False, width=width,
        color_system="standard" if color else None,
    )  # fmt: skip


def rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]], color: bool) -> str:
    """The table drawn by rich, as text with escape codes (cells may hold paint()'s)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*(Text.from_ansi(str(c)) for c in r))  # never markup: cells are data
    buf = io.StringIO()
    rich_console(buf, color, shutil.get_terminal_size().columns).print(t)
    return buf.getvalue().rstrip("\n")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
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
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{n} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


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
