"""kmod-py check: what the kernel's loader will check, before insmod does."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kbuild_py.cli import app, report_file


def _targets(kernel: str | None, kdir: Path | None) -> list:  # type: ignore[type-arg]
    """Build trees to check against: --kdir, --kernel SPEC, else kmod.toml's kernels (resolved
    like `kmod-py build` does), else none: only the target-free rules run."""
    from kbuild_py.project import load_project
    from kbuild_py.targets import resolve_targets

    specs = [kernel] if kernel else []
    if kdir is None and not specs:
        specs = load_project(Path.cwd()).kernels
        if not specs:
            return []
        typer.echo(f"target kernels from kmod.toml: {', '.join(specs)}", err=True)
    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    return [t.tree for t in resolve_targets(specs, kdir, progress=say)]


def _list_rules() -> None:
    from kbuild_py.checks import rules_table
    from kbuild_py.render import table

    rows = [
        [r.id, r.severity, "target" if r.needs_target else "-", r.summary] for r in rules_table()
    ]
    typer.echo(table(["RULE", "SEVERITY", "NEEDS", "CHECKS"], rows))


@app.command()
def check(
    # str, not Path: typer's per-argument Path coercion costs ~60 us a file with thousands
    files: list[str] = typer.Argument(None, help="Module files (.ko, .ko.xz, .ko.zst, .ko.gz)."),
    recursive: list[Path] = typer.Option(
        [], "-r", "--recursive", help="Check every module under DIR."
    ),
    kernel: str = typer.Option(
        None, "--kernel", "-k", help="Target kernel spec (release, debian:SUITE, ...)."
    ),
    kdir: Path = typer.Option(None, "--kdir", help="Target kernel build tree."),
    extra_symbols: list[Path] = typer.Option(
        [], "--extra-symbols", help="Module.symvers of other modules (KBUILD_EXTRA_SYMBOLS)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    junit: Path = typer.Option(None, "--junit", help="Also write a JUnit XML report to FILE."),
    field: str = typer.Option(
        None, "-F", "--field", help="Print only FIELD's values, like modinfo -F."
    ),
    list_rules: bool = typer.Option(False, "--list-rules", help="List the rules and exit."),
) -> None:
    """Check modules the way the kernel's loader will: ELF, modinfo, license, vermagic,
    symbol versions, unknown symbols, namespaces, signature, taints.

    Exit status: 0 all rules passed, 1 a rule failed, 2 a file could not be read.
    """
    from kbuild_py import report_check as rc
    from kbuild_py.checkrun import collect, run_many
    from kbuild_py.checks import target_info
    from kbuild_py.errors import UsageError
    from kbuild_py.render import use_color

    if list_rules:
        _list_rules()
        return
    if kernel is not None and kdir is not None:
        raise UsageError("--kernel and --kdir both given", "pass one target kernel")
    report_file(junit, "--junit")
    paths = collect([Path(f) for f in files or []], recursive)
    if not paths:
        raise UsageError("no module files given", "kmod-py check FILE.ko [FILE ...] or -r DIR")
    infos = [target_info(t, extra_symbols) for t in _targets(kernel, kdir)] or [None]
    mode = "json" if as_json else "field" if field else "text"
    color = use_color() and mode == "text"
    outcomes, dicts = [], []
    out = sys.stdout
    for info in infos:
        for o in run_many(paths, info, mode=mode, field=field, color=color, want_dict=bool(junit)):
            outcomes.append(o)
            if o.error is not None:
                typer.secho(f"error: {_printable(o.error)}", err=True, fg=typer.colors.RED)
                dicts.append(rc.unreadable_dict(o.path, o.error))
                continue
            dicts.append(o.data)
            if mode == "field":
                _emit(out, "".join(v + "\n" for v in o.payload))  # type: ignore[attr-defined]
            elif mode == "text":
                _emit(out, o.payload)  # type: ignore[arg-type]
    if junit:
        junit.write_text(rc.to_junit(dicts))
    if mode == "json":
        _emit(out, rc.to_json(dicts, [i.release if i else None for i in infos]))
    elif mode == "text" and len(outcomes) > 1:
        _emit(out, rc.tally_line(outcomes))
    out.flush()
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(2)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def _emit(out, text: str) -> None:  # type: ignore[no-untyped-def]
    """Write text; bytes a module held that are not UTF-8 go out as they were (like modinfo)."""
    data = text.encode("utf-8", "surrogateescape")
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()
        buf.write(data)
    else:
        out.write(data.decode("utf-8", "replace"))


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
