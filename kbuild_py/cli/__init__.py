"""The typer CLI: thin commands that parse options, call one service, render a result.

Only this package imports typer. Each command lives in its own module; heavy
libraries (jinja2, pyelftools, docker) are imported inside command bodies so
that `kmod-py --help` stays fast. typer itself (and the pydantic it builds its
parameter converters with, ~0.15 s) is imported when `app` is first used:
`kmod-py check` and `kmod-py test` with plain arguments run without it
(kbuild_py.cli.checkmain, kbuild_py.cli.testmain).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer


def _get_app() -> typer.Typer:
    found = globals().get("app")
    if found is None:
        # lazily, for start-up: typer and the command modules are needed only when typer
        # parses the command line (not for `kmod-py check` with plain arguments)
        from kbuild_py.cli import build, check, ci, explain, kernels, keygen, new, sign, test
        from kbuild_py.cli.base import make_app

        found = globals()["app"] = make_app()
        # registered in this order: `kmod-py --help` lists them so
        for command in (build.build, check.check, explain.explain, kernels.kernels,
                        kernels.images, keygen.keygen, new.new, sign.sign, test.test):
            found.command()(command)
        found.add_typer(ci.ci_app, name="ci")
    return found


def __getattr__(name: str) -> Any:
    if name == "app":
        return _get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    if sys.stdout is None:  # started with stdout closed (`kmod-py ... 1>&-`)
        print("error: standard output is closed; nothing could be printed\n"
              "hint: redirect it instead (>/dev/null, or --json/--junit FILE)", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1:2] == ["check"]:
        # lazily, for start-up: see checkmain
        from kbuild_py.cli.checkmain import main_fast

        code = main_fast(sys.argv[2:])  # None: arguments only typer can judge
        if code is not None:
            sys.exit(code)
    elif sys.argv[1:2] == ["test"]:
        # lazily, for start-up: see testmain (typer costs a quarter of an arm64 boot)
        from kbuild_py.cli.testmain import main_fast as test_fast

        code = test_fast(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    elif sys.argv[1:2] == ["ci"]:
        # lazily, for start-up: see cimain (the job helpers run next to every CI build)
        from kbuild_py.cli.cimain import main_fast as ci_fast

        code = ci_fast(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    _get_app()(prog_name="kmod-py")
