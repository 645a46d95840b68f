"""The host-process seam: run an argv, stream its output lines, return the exit code.

Everything kmod-py runs on the host (make, sign-file, dpkg-deb ...) goes through a
Runner. Unit tests pass a fake Runner; nothing patches the subprocess module.

It is also the one place that stops things: the cancel registry every running process,
QEMU guest (seams.qemu) and container (seams.docker) registers with, the one process-group
kill, and the one parallel map that builds and boots run their workers through.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from kbuild_py.errors import InfraError

LineSink = Callable[[str], None]

# Cancellation: every running outside process (or container) registers a callback that
# stops it. On Ctrl-C / SIGTERM the CLI calls cancel_all() so worker threads return
# promptly and nothing outlives kmod-py.
_cancel_lock = threading.Lock()
_cancel_callbacks: dict[int, Callable[[], None]] = {}
_cancel_seq = 0
_cancelled = threading.Event()


def on_cancel(fn: Callable[[], None]) -> int:
    """Register fn to run on cancel_all(); returns a token for forget()."""
    global _cancel_seq
    with _cancel_lock:
        _cancel_seq += 1
        _cancel_callbacks[_cancel_seq] = fn
        token = _cancel_seq
    if _cancelled.is_set():
        fn()
    return token


def forget(token: int) -> None:
    with _cancel_lock:
        _cancel_callbacks.pop(token, None)


def cancel_all() -> None:
    """Stop every registered process/container (idempotent)."""
    _cancelled.set()
    with _cancel_lock:
        callbacks = list(_cancel_callbacks.values())
    for fn in callbacks:
        try:
            fn()
        except Exception:  # best effort: keep stopping the others
            pass


atexit.register(cancel_all)  # nothing kmod-py started outlives the interpreter


def rearm() -> None:
    """Accept new work after cancel_all() (a process that carries on, e.g. the test suite)."""
    _cancelled.clear()


def signals_to_main_thread() -> None:
    """In a worker thread, block SIGINT/SIGTERM so the kernel delivers them to the main
    thread, whose handler (KeyboardInterrupt -> cancel_all()) stops every process; a signal
    taken by a worker would leave the main thread waiting. Use as a thread initializer."""
    if threading.current_thread() is not threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def cancelled() -> bool:
    return _cancelled.is_set()


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> list[R]:
    """fn over items, `jobs` at a time on worker threads; results in item order.

    Workers block SIGINT/SIGTERM, so the main thread always receives them; its
    KeyboardInterrupt cancels every registered process, container and guest, then waits for
    the workers to return before it propagates. An error in one item propagates once the
    running items are done (it cancels nothing: explain's greps run inside build workers).
    """
    todo = list(items)
    if jobs <= 1 or len(todo) <= 1:
        return [fn(x) for x in todo]
    pool = ThreadPoolExecutor(max_workers=jobs, initializer=signals_to_main_thread)
    try:
        return list(pool.map(fn, todo))
    except (KeyboardInterrupt, SystemExit):
        cancel_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class Result:
    returncode: int
    timed_out: bool = False
    duration: float = 0.0


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_line: LineSink | None = None,
    ) -> Result: ...


class HostRunner:
    """Runs processes on this machine, merging stdout and stderr line by line."""

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_line: LineSink | None = None,
    ) -> Result:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            raise InfraError(f"{argv[0]}: command not found", f"install {argv[0]}") from e
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            kill_group(proc)

        token = on_cancel(lambda: kill_group(proc))
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                if on_line:
                    on_line(raw.decode("utf-8", "replace").rstrip("\n"))
            rc = proc.wait()
        except BaseException:
            kill_group(proc)
            raise
        finally:
            forget(token)
            if timer:
                timer.cancel()
        return Result(rc, timed_out.is_set(), time.monotonic() - start)


def kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop proc's whole process group (it was started with start_new_session): SIGTERM, and
    SIGKILL after `grace` seconds (at once when grace is 0); returns once proc is reaped."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        try:
            proc.wait(timeout=grace if grace > 0 else 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
