"""kmod-py check: what the kernel's loader will check, before insmod does.

The typer command; its body is kbuild_py.check.service.run_check, which `kmod-py
check` with plain arguments also reaches without typer (see checkmain).
"""

from __future__ import annotations

from pathlib import Path

import typer


def _list_rules() -> None:
    from kbuild_py.check.engine import rules_table
    from kbuild_py.report.table import table

    rows = [
        [r.id, r.severity, "target" if r.needs_target else "-", r.summary] for r in rules_table()
    ]
    typer.echo(table(["RULE", "SEVERITY", "NEEDS", "CHECKS"], rows))


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
    cert: list[Path] = typer.Option(
        [], "--cert", help="Verify signatures against this certificate (DER or PEM); repeatable."
    ),
    verbose: bool = typer.Option(
        False, "-v", "--verbose", help="Every finding (repeats of one rule are grouped)."
    ),
) -> None:
    """Check modules the way the kernel's loader will: ELF, modinfo, license, vermagic,
    symbol versions, unknown symbols, namespaces, signature, taints.

    Exit status: 0 all rules passed, 1 a rule failed, 2 a file could not be read.
    """
    from kbuild_py.check.service import run_check
    from kbuild_py.cli.checkmain import say

    if list_rules:
        _list_rules()
        return
    code = run_check(
        files, recursive, kernel, kdir, extra_symbols, as_json, junit, field, cert, say=say,
        verbose=verbose,
    )
    if code:
        raise typer.Exit(code)
