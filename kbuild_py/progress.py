"""Progress of long work (kernel .deb downloads, image builds, debootstrap), for whoever shows it.

Seams and domain code open a `task(...)` and advance it; nothing is shown unless a command
installed a display (report/progress.py draws rich progress bars, installed by the CLI only
when stderr is a terminal). The default is no display: tests, pipes and CI logs see nothing,
and the work pays one attribute lookup per step. Imports nothing else of kmod-py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, amount: float = 1) -> None: ...

    def update(self, *, total: float | None = None, completed: float | None = None,
               description: str | None = None) -> None: ...


class Display(Protocol):
    def task(
        self, description: str, total: float | None, unit: str
    ) -> AbstractContextManager[Task]:
        """A task shown from entry to exit; `unit` is "bytes" or "steps"."""
        ...


class _NoTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, total: float | None = None, completed: float | None = None,
               description: str | None = None) -> None:
        pass


_NO_TASK = _NoTask()
_display: Display | None = None


def install(display: Display | None) -> Display | None:
    """Make `display` the one that shows tasks; returns the one it replaces."""
    global _display
    previous, _display = _display, display
    return previous


@contextmanager
def task(description: str, total: float | None = None, unit: str = "steps") -> Iterator[Task]:
    """A unit of long work: shown while the block runs when a display is installed."""
    if _display is None:
        yield _NO_TASK
        return
    with _display.task(description, total, unit) as t:
        yield t
