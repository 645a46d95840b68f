"""Writing a generated CI file, or checking a committed one against it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kbuild_py.ci.render import DIFF_LINES, compare
from kbuild_py.errors import UsageError


def write_or_check(target: Path, text: str, *, force: bool, check: bool, regenerate: str,
                   say: Callable[[str], None]) -> int:
    """Write `text` to `target` (never over an existing file without force), or with check
    compare them. Returns the exit code: 0 written / up to date, 1 out of date."""
    if check:
        if not target.is_file():
            say(f"{target}: missing (run `{regenerate}`)")
            return 1
        drift = compare(target.read_text(errors="replace"), text, target.name)
        if drift is None:
            say(f"{target}: up to date")
            return 0
        say(f"{target}: out of date with kmod.toml (run `{regenerate} --force`)")
        for reason in drift.reasons:
            say(f"  {reason}")
        shown = drift.diff[:DIFF_LINES]
        for line in shown:
            say(line)
        if len(drift.diff) > len(shown):
            say(f"... {len(drift.diff) - len(shown)} more diff lines")
        return 1
    if target.is_dir():
        raise UsageError(f"{target} is a directory", "pass a file path with --output")
    if target.exists() and not force:
        same = target.read_text(errors="replace") == text
        raise UsageError(
            f"{target} exists" + (" (and is up to date)" if same else ""),
            "pass --force to overwrite it, --check to compare, or --output elsewhere",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)
    say(f"wrote {target}")
    return 0
