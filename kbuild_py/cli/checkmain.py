"""A way into `kmod-py check` that does not need typer (the body is kbuild_py.check.service).

typer 0.29 builds its parameter converters with pydantic: importing typer and
building the command costs ~0.15 s, as much as checking 1,000 modules. main_fast
parses the plain forms of check's options itself (`--kernel R`, `--kernel=R`,
`-r DIR`, `--json`, files ...) and runs the same body; anything else (--help,
--list-rules, `--`, an unknown or repeated option, a missing or empty value)
returns None and typer parses the command line as before. Errors go through the
same handler as typer's (kbuild_py.cli.base.exit_code_for). typer is imported only to
print on stderr, so that messages look exactly alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kbuild_py.cli.base import exit_code_for

# option -> (parameter, takes a value, may repeat); short options are exact tokens only
_OPTIONS = {
    "-r": ("recursive", True, True),
    "--recursive": ("recursive", True, True),
    "--kernel": ("kernel", True, False),
    "-k": ("kernel", True, False),
    "--kdir": ("kdir", True, False),
    "--extra-symbols": ("extra_symbols", True, True),
    "--json": ("as_json", False, False),
    "-v": ("verbose", False, False),
    "--verbose": ("verbose", False, False),
    "--junit": ("junit", True, False),
    "-F": ("field", True, False),
    "--field": ("field", True, False),
    "--cert": ("cert", True, True),
}


def parse_fast(args: Sequence[str]) -> dict[str, object] | None:
    """check's keyword arguments for the plain forms of its options, else None."""
    found: dict[str, list[str]] = {}
    files: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("-"):
            if not tok:
                return None
            files.append(tok)
            continue
        name, eq, value = tok.partition("=") if tok.startswith("--") else (tok, "", "")
        spec = _OPTIONS.get(name)
        if spec is None:
            return None
        param, takes_value, repeats = spec
        if not takes_value:
            if eq:
                return None
            value = ""
        elif not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if takes_value and (not value or value.startswith("-")):
            return None
        if param in found and not repeats:
            return None
        found.setdefault(param, []).append(value)
    opts: dict[str, object] = {"files": files or None, "as_json": "as_json" in found,
                               "verbose": "verbose" in found}
    for param in ("kernel", "field"):
        opts[param] = found[param][0] if param in found else None
    for param in ("kdir", "junit"):
        opts[param] = Path(found[param][0]) if param in found else None
    for param in ("recursive", "extra_symbols", "cert"):
        opts[param] = [Path(v) for v in found.get(param, [])]
    return opts


def main_fast(args: Sequence[str]) -> int | None:
    """Run `kmod-py check ARGS` without typer; None when typer must parse ARGS."""
    opts = parse_fast(args)
    if opts is None:
        return None
    try:
        from kbuild_py.check.service import run_check

        code = run_check(**opts, say=say)  # type: ignore[arg-type]
    except (KeyboardInterrupt, Exception) as err:
        code = exit_code_for(err)
    # The process ends next: keep the interpreter's final garbage collection from walking
    # every object again (~20 ms after thousands of modules). Objects are still freed.
    import gc

    gc.freeze()
    return code


def say(line: str, *, red: bool = False) -> None:
    """A line on stderr, the way typer.echo/secho write it (colour only on a terminal)."""
    import typer

    if red:
        typer.secho(line, err=True, fg=typer.colors.RED)
    else:
        typer.echo(line, err=True)
