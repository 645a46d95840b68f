"""What every command shares: the typer app, error handling (KmodError -> message and exit
code), SIGTERM as Ctrl-C. typer is imported when the app is made, not when this is imported.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kbuild_py import __version__
from kbuild_py.errors import KmodError

if TYPE_CHECKING:
    import typer


def fail(err: KmodError) -> None:
    """Print a KmodError as `error:`/`hint:` lines on stderr."""
    import typer

    typer.secho(f"error: {err.message}", err=True, fg=typer.colors.RED)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM acts like Ctrl-C meanwhile: running builds, containers and guests are stopped."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def showing_progress() -> Iterator[None]:
    """Progress bars for long work (downloads, image builds, debootstrap) meanwhile, on a
    terminal only: off a terminal, or with KMOD_PY_NO_PROGRESS set, nothing is shown."""
    from kbuild_py import progress

    if os.environ.get("KMOD_PY_NO_PROGRESS") or not _is_terminal(sys.stderr):
        yield
        return
    from kbuild_py.report.progress import RichDisplay  # rich: on a terminal only (start-up)

    previous = progress.install(RichDisplay(sys.stderr))
    try:
        yield
    finally:
        progress.install(previous)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def exit_code_for(err: BaseException) -> int:
    """What a command's exception becomes: its message on stderr and an exit code.
    Re-raises what keeps its meaning (typer/click's own exceptions, anything under --debug)."""
    import typer

    if isinstance(err, KmodError):
        if os.environ.get("KMOD_PY_DEBUG"):
            raise err
        fail(err)
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    if not isinstance(err, Exception):
        raise err
    # typer/click's own exceptions (usage errors, Exit) keep their meaning.
    if type(err).__module__.startswith(("typer", "click")) or os.environ.get("KMOD_PY_DEBUG"):
        raise err
    if isinstance(err, BrokenPipeError):
        # `kmod-py check -r DIR | head`: the reader left; stop quietly, like a C tool.
        _quiet_stdout()
        return 141
    if isinstance(err, OSError) and err.strerror:
        # The file system refused (read-only, permissions, disk full): exit 2.
        where = f"{err.filename}: " if err.filename is not None else ""
        typer.secho(f"error: {where}{err.strerror}", err=True, fg=typer.colors.RED)
        typer.echo("hint: check the path, its permissions and free space", err=True)
        return 2
    typer.secho(
        f"error: internal error: {type(err).__name__}: {err}", err=True, fg=typer.colors.RED
    )
    typer.echo("hint: rerun with --debug for the traceback and report it", err=True)
    return 2


def make_app() -> typer.Typer:
    import typer
    from typer.core import TyperGroup

    class _Group(TyperGroup):
        """Turns a KmodError raised by any command into its message and exit code."""

        def invoke(self, ctx):
            try:
                return super().invoke(ctx)
            except (KeyboardInterrupt, Exception) as err:
                raise typer.Exit(exit_code_for(err)) from None

    cli_app = typer.Typer(
        cls=_Group,
        name="kmod-py",
        help="Build, check and boot-test out-of-tree Linux kernel modules.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"kmod-py {__version__}")
            raise typer.Exit()

    @cli_app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    ) -> None:
        if debug:
            os.environ["KMOD_PY_DEBUG"] = "1"

    return cli_app


