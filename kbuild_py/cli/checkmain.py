"""The body of `kmod-py check`, and a way in that does not need typer.

typer 0.29 builds its parameter converters with pydantic: importing typer and
building the command costs ~0.15 s, as much as checking 1,000 modules. main_fast
parses the plain forms of check's options itself (`--kernel R`, `--kernel=R`,
`-r DIR`, `--json`, files ...) and runs the same body; anything else (--help,
--list-rules, `--`, an unknown or repeated option, a missing or empty value)
returns None and typer parses the command line as before. Errors go through the
same handler as typer's (kbuild_py.cli.exit_code_for). typer is imported only to
print on stderr, so that messages look exactly alike.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# option -> (parameter, takes a value, may repeat); short options are exact tokens only
_OPTIONS = {
    "-r": ("recursive", True, True),
    "--recursive": ("recursive", True, True),
    "--kernel": ("kernel", True, False),
    "-k": ("kernel", True, False),
    "--kdir": ("kdir", True, False),
    "--extra-symbols": ("extra_symbols", True, True),
    "--json": ("as_json", False, False),
    "--junit": ("junit", True, False),
    "-F": ("field", True, False),
    "--field": ("field", True, False),
    "--cert": ("cert", True, True),
}
_PATHS = ("recursive", "kdir", "extra_symbols", "junit", "cert")


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
    opts: dict[str, object] = {"files": files or None, "as_json": "as_json" in found}
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
        code = run_check(**opts)  # type: ignore[arg-type]
    except (KeyboardInterrupt, Exception) as err:
        from kbuild_py.cli import exit_code_for

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


def _targets(kernel: str | None, kdir: Path | None) -> list:  # type: ignore[type-arg]
    """Build trees to check against: --kdir, --kernel SPEC, else kmod.toml's kernels (resolved
    like `kmod-py build` does), else none: only the target-free rules run."""
    from kbuild_py.targets import resolve_targets

    specs = [kernel] if kernel else []
    if kdir is None and not specs:
        from kbuild_py.project import load_project  # tomllib: only when kmod.toml is read

        specs = load_project(Path.cwd()).kernels
        if not specs:
            return []
        say(f"target kernels from kmod.toml: {', '.join(specs)}")
    return [t.tree for t in resolve_targets(specs, kdir, progress=say)]


def run_check(
    files: list[str] | None,
    recursive: list[Path],
    kernel: str | None,
    kdir: Path | None,
    extra_symbols: list[Path],
    as_json: bool,
    junit: Path | None,
    field: str | None,
    cert: list[Path] | None = None,
) -> int:
    """Check the modules; the exit status: 0 all passed, 1 a rule failed, 2 unreadable.
    cert: verify signatures against these certificates (the kernel's trusted keys)."""
    from kbuild_py import report_check as rc
    from kbuild_py.checkrun import collect, run_many
    from kbuild_py.checks import target_info
    from kbuild_py.cli import report_file
    from kbuild_py.errors import UsageError
    from kbuild_py.render import use_color

    if kernel is not None and kdir is not None:
        raise UsageError("--kernel and --kdir both given", "pass one target kernel")
    if as_json and field:
        raise UsageError("-F and --json both given", "use -F FIELD for bare values, or --json")
    report_file(junit, "--junit")
    paths = collect(files or [], recursive)
    if not paths:
        raise UsageError("no module files given", "kmod-py check FILE.ko [FILE ...] or -r DIR")
    trusted = []
    if cert:
        from kbuild_py.signing.verify import load_trusted

        trusted = load_trusted(cert)  # read once, before the workers fork
    infos = [target_info(t, extra_symbols) for t in _targets(kernel, kdir)] or [None]
    if extra_symbols and infos == [None]:
        say("warning: --extra-symbols has no effect without a target kernel "
            "(--kernel, --kdir or kernels in kmod.toml)")
    mode = "json" if as_json else "field" if field else "text"
    color = use_color() and mode == "text"
    outcomes, dicts = [], []
    out = sys.stdout
    pending = _Pending(out)
    for info in infos:
        for o in run_many(
            paths, info, mode=mode, field=field, color=color, want_dict=bool(junit), trusted=trusted
        ):
            outcomes.append(o)
            if o.error is not None:
                pending.flush()  # a terminal shows stdout and stderr in order
                say(f"error: {_printable(o.error)}", red=True)
                dicts.append(rc.unreadable_dict(o.path, o.error))
                continue
            dicts.append(o.data)
            if mode == "field":
                _emit(out, "".join(v + "\n" for v in o.payload))  # type: ignore[attr-defined]
            elif mode == "text":
                pending.add(o.payload)  # type: ignore[arg-type]
    pending.flush()
    if junit:
        junit.write_text(rc.to_junit(dicts))
    if mode == "json":
        _emit(out, rc.to_json(dicts, [i.release if i else None for i in infos]))
    elif mode == "text" and len(outcomes) > 1:
        _emit(out, rc.tally_line(outcomes))
    out.flush()
    if any(o.error is not None for o in outcomes):
        return 2
    return 0 if all(o.ok for o in outcomes) else 1


class _Pending:
    """Text reports (already bytes, encoded in the workers) written 256 KiB at a time."""

    def __init__(self, out) -> None:  # type: ignore[no-untyped-def]
        self.out, self.parts, self.size = out, [], 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= 1 << 18:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            self.size = 0
            _write(self.out, data)


def _emit(out, text: str) -> None:  # type: ignore[no-untyped-def]
    """Write text; bytes a module held that are not UTF-8 go out as they were (like modinfo)."""
    _write(out, text.encode("utf-8", "surrogateescape"))


def _write(out, data: bytes) -> None:  # type: ignore[no-untyped-def]
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()
        buf.write(data)
    else:
        out.write(data.decode("utf-8", "replace"))


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
