"""kmod-py test: boot each target kernel in QEMU, load the module, report what the kernel said."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def test(
    path: Annotated[Path, typer.Argument(help="Module directory (built first).")] = Path("."),
    kernel: Annotated[list[str] | None, typer.Option(
        "--kernel", "-k", help="Kernel spec; repeat for several (default: kmod.toml).")] = None,
    ko: Annotated[list[Path] | None, typer.Option(
        "--ko", help="Test this prebuilt .ko instead of building PATH.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Module parameter NAME=VALUE for insmod.")] = None,
    module: Annotated[list[str] | None, typer.Option(
        "--module", "-m", help="Test only this module (repeatable); each is loaded and "
        "unloaded on its own.")] = None,
    make_var: Annotated[list[str] | None, typer.Option(
        "--make-var", help="Extra make variable NAME=VALUE for the build.")] = None,
    script: Annotated[Path | None, typer.Option(
        "--script", help="Shell script run in the guest after insmod; exit code counts.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds per kernel before the guest is killed (default 120).")] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Kernels booted at once.")] = 1,
    accel: Annotated[str, typer.Option("--accel", help="auto, kvm or tcg.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror.")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream the console.")] = False,
    sig_enforce: Annotated[bool, typer.Option(
        "--sig-enforce", help="Boot with module.sig_enforce=1: unsigned or untrusted is refused."
    )] = False,
    sign: Annotated[bool, typer.Option(
        "--sign", help="Sign what is built (key: kmod.toml [sign], DKMS's, or keygen's)."
    )] = False,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Fail at once if another kmod-py builds this project for a kernel "
        "(or a needed image), instead of waiting.")] = False,
) -> None:
    """Boot each target kernel in QEMU, load the module, and judge the kernel's log."""
    from kbuild_py.cli.testmain import run_test

    code = run_test(path, kernel, ko, param, module, make_var, script, timeout, jobs, accel,
                    as_json, junit, mirror, verbose, say=lambda m: typer.echo(m, err=True),
                    sig_enforce=sig_enforce, sign=sign, no_wait=no_wait)
    if code:
        raise typer.Exit(code)
