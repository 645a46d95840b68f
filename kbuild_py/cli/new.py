"""kmod-py new: scaffold a module project."""

from __future__ import annotations

from pathlib import Path

import typer


def new(
    name: str = typer.Argument(..., help="Module name: a C identifier, at most 55 characters."),
    dir: Path = typer.Option(Path("."), "--dir", help="Parent directory to create NAME/ in."),
    license: str = typer.Option("GPL", "--license", help="MODULE_LICENSE string."),
    author: str = typer.Option("Your Name <you@example.com>", "--author", help="MODULE_AUTHOR."),
    description: str = typer.Option("", "--description", help="MODULE_DESCRIPTION."),
    allow_proprietary: bool = typer.Option(
        False, "--allow-proprietary", help="Accept a license that is not GPL-compatible."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rewrite kmod-py's files in an existing NAME/ (others are kept)."
    ),
) -> None:
    """Create a module project: NAME.c, Kbuild, Makefile, kmod.toml, .gitignore, README.md,
    dkms.conf."""
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    spec = ModuleSpec(
        name=name,
        license=license,
        author=author,
        description=description,
        allow_proprietary=allow_proprietary,
    )
    result = scaffold_module(spec, dir, force=force)
    for w in result.warnings:
        typer.secho(f"warning: {w}", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"created {result.path}")
    for f in result.written:
        typer.echo(f"  {f.relative_to(result.path)}")
    if result.kept:
        typer.echo(
            f"kept {len(result.kept)} file(s) of yours untouched: "
            + ", ".join(p.name for p in result.kept)
        )
    typer.echo(f"next: cd {result.path} && kmod-py build")
