"""kmod-py explain: why the project's build fails on a kernel, from the kernels' headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kbuild_py.cli.base import sigterm_interrupts


def explain(
    path: Annotated[Path, typer.Argument(help="Module directory.")] = Path("."),
    kernel: Annotated[
        list[str] | None,
        typer.Option(
            "--kernel", "-k", help="Kernel spec; repeat for several (default: kmod.toml)."
        ),
    ] = None,
    kdir: Annotated[Path | None, typer.Option("--kdir", help="A kernel build tree.")] = None,
    explain_with: Annotated[
        list[str] | None,
        typer.Option("--explain-with", help="Another kernel to compare headers with (not built)."),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build again instead of reading the last build.log.")
    ] = False,
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Explain build errors from the kernels' headers: what changed, and since when.

    For each kernel whose build failed: the kernel identifiers its errors name, their
    declarations in every kernel's headers, and the version range where they changed."""
    from kbuild_py.build.plan import BuildOptions
    from kbuild_py.build.run import build_one as build_for
    from kbuild_py.explain import render
    from kbuild_py.explain.service import Explainer, explain_project
    from kbuild_py.kernels.select import resolve_targets
    from kbuild_py.paths import output_dir
    from kbuild_py.project.config import find_module_dir, load_project

    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    project_dir = find_module_dir(path)
    project = load_project(project_dir)
    targets = resolve_targets(kernel or [], kdir, project.kernels, mirror=mirror, progress=say)
    extra = resolve_targets(explain_with, None, mirror=mirror, progress=say) if explain_with else []
    opts = BuildOptions(make_vars=dict(project.make_vars), run_checks=False)

    def build_one(target):
        say(f"building for {target.release} ...")
        res = build_for(project_dir, target, opts)
        return res.log_path, res.outdir

    with sigterm_interrupts():
        reports = explain_project(
            targets,
            lambda t: output_dir(project_dir, t.release),
            Explainer([*targets, *extra], say),
            build_one,
            rebuild,
        )
    if as_json:
        typer.echo(json.dumps(render.reports_json(reports), indent=2))
    else:
        for line in render.render_reports(reports):
            typer.echo(line)
    if not all(r.built for r in reports):
        raise typer.Exit(1)
