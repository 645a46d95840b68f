"""kmod-py ci: write GitHub Actions / GitLab CI files from kmod.toml, and the two helpers the
generated jobs run (prepare, save)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ci_app = typer.Typer(
    name="ci",
    help="CI pipelines: write GitHub Actions / GitLab CI files that build, check and boot "
    "every kernel in kmod.toml.",
    no_args_is_help=True,
)

PathArg = Annotated[Path, typer.Argument(help="Module directory (with kmod.toml).")]
KernelOpt = Annotated[list[str] | None, typer.Option(
    "--kernel", "-k", help="Kernel spec; repeat for several (default: kmod.toml's kernels).")]
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write here instead of the CI system's usual path.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]
CheckOpt = Annotated[bool, typer.Option(
    "--check", help="Write nothing; exit 1 if the file differs from what would be written.")]
NoBootOpt = Annotated[bool, typer.Option(
    "--no-boot", help="Build and check only; no QEMU boot test in the jobs.")]


def _generate(system: str, path: Path, kernel: list[str] | None, output: Path | None,
              force: bool, check: bool, boot: bool, **options: str) -> None:
    from kbuild_py import __version__
    from kbuild_py.ci import model, render
    from kbuild_py.ci.files import write_or_check
    from kbuild_py.project.config import find_module_dir, load_project

    project_dir = find_module_dir(path)
    project = load_project(project_dir)
    pipe = model.pipeline(system, kernel or [], project.kernels, boot=boot,
                          version=__version__, **options)
    default = model.GITHUB_PATH if system == "github" else model.GITLAB_PATH
    target = output if output is not None else project_dir / default
    code = write_or_check(target, render.render(pipe), force=force, check=check,
                          regenerate=pipe.command, say=typer.echo)
    if code:
        raise typer.Exit(code)


@ci_app.command()
def github(
    path: PathArg = Path("."),
    kernel: KernelOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    check: CheckOpt = False,
    no_boot: NoBootOpt = False,
    runs_on: Annotated[str, typer.Option("--runs-on", help="GitHub runner label.")] = (
        "ubuntu-24.04"),
    python: Annotated[str, typer.Option("--python", help="Python for kmod-py.")] = "3.12",
) -> None:
    """Write .github/workflows/kmod-py.yml: one job per kernel spec."""
    _generate("github", path, kernel, output, force, check, not no_boot,
              runs_on=runs_on, python=python)


@ci_app.command()
def gitlab(
    path: PathArg = Path("."),
    kernel: KernelOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    check: CheckOpt = False,
    no_boot: NoBootOpt = False,
    runner: Annotated[str, typer.Option(
        "--runner", help="dind (Docker executor + docker:dind service), socket (Docker "
        "executor + the host's socket) or shell (shell executor).")] = "dind",
    image: Annotated[str, typer.Option(
        "--image", help="Job image for Docker executors.")] = "python:3.12-bookworm",
) -> None:
    """Write .gitlab-ci.yml: a parallel:matrix job over the kernel specs."""
    _generate("gitlab", path, kernel, output, force, check, not no_boot,
              runner=runner, image=image)


@ci_app.command()
def prepare(
    kernel: Annotated[str, typer.Option("--kernel", "-k", help="The job's kernel spec.")],
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror.")] = None,
) -> None:
    """(In a CI job) resolve the kernel spec and load its saved kernel-headers image."""
    from kbuild_py.cli.cimain import run_prepare

    run_prepare(kernel, mirror, typer.echo)


@ci_app.command()
def save(
    kernel: Annotated[str, typer.Option("--kernel", "-k", help="The job's kernel spec.")],
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror.")] = None,
) -> None:
    """(In a CI job) docker save the kernel's image into kmod-py's cache for the next job."""
    from kbuild_py.cli.cimain import run_save

    run_save(kernel, mirror, typer.echo)
