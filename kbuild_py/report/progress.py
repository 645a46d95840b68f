"""Progress bars on a terminal: rich's Progress, drawn on stderr, gone when the work is done.

Installed by the CLI (cli/base.py: showing_progress) only when stderr is a terminal; this
module imports rich at its top, so it is itself imported only then (start-up time), and pipes,
CI logs and --json output never see a bar. One rich Progress serves every task of a command:
it starts with the first task and stops (transient: the bars disappear) when the last ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Task as RichTask
from rich.text import Text

from kbuild_py.progress import Task


class _Amount(ProgressColumn):
    """`12.3/70.1 MB` for downloads, `3/15` for steps, the count alone when the total is unknown."""

    def render(self, task: RichTask) -> Text:
        if task.fields.get("unit") == "bytes":
            done = decimal(int(task.completed))
            return Text(done if task.total is None else f"{done}/{decimal(int(task.total))}")
        done = f"{int(task.completed)}"
        return Text(done if task.total is None else f"{done}/{int(task.total)}")


def _label(text: str) -> str:
    return escape(text if len(text) <= 60 else text[:57] + "...")


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.update(self._id, advance=amount)

    def update(self, *, total: float | None = None, completed: float | None = None,
               description: str | None = None) -> None:
        self._progress.update(
            self._id, total=total, completed=completed,
            description=None if description is None else _label(description))


class RichDisplay:
    def __init__(self, file: IO[str] | None = None) -> None:
        self._file = file if file is not None else sys.stderr
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._open = 0

    @contextmanager
    def task(self, description: str, total: float | None, unit: str) -> Iterator[Task]:
        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Amount(),
                    TimeElapsedColumn(), console=Console(file=self._file), transient=True)
                self._progress.start()
            progress = self._progress
            self._open += 1
            task_id = progress.add_task(_label(description), total=total, unit=unit)
        try:
            yield _RichTask(progress, task_id)
        finally:
            with self._lock:
                progress.remove_task(task_id)
                self._open -= 1
                if self._open == 0:
                    progress.stop()
                    self._progress = None
