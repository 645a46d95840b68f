"""kmod-py build: run Kbuild for one or many kernels, then check the modules."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kbuild_py.cli.base import showing_progress, sigterm_interrupts
from kbuild_py.paths import report_file


def build(
    path: Path = typer.Argument(
        Path("."), help="Module directory (Kbuild or Makefile with obj-m)."
    ),
    kernel: list[str] = typer.Option([], "--kernel", "-k", help="Kernel spec; repeat for several."),
    kdir: Path = typer.Option(None, "--kdir", help="A kernel build tree to build against."),
    jobs: int = typer.Option(
        0, "-j", "--jobs", help="Kernels built at once (default: 1, or 2 for a matrix)."
    ),
    make_jobs: int = typer.Option(
        0, "--make-jobs", help="make -j inside each build (default: cores)."
    ),
    make_var: list[str] = typer.Option(
        [], "--make-var", help="Extra make variable NAME=VALUE (any make name: ccflags-y=...)."
    ),
    extra_symbols: list[Path] = typer.Option(
        [], "--extra-symbols", help="Module.symvers of other modules this one uses (repeatable)."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failing kernel."),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror for container images."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    junit: Path = typer.Option(
        None, "--junit", help="Write JUnit XML: a case per kernel and module (build + check)."
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show every make output line."),
    explain_with: list[str] = typer.Option(
        [], "--explain-with", help="Another kernel whose headers explain failures (not built)."
    ),
    no_explain: bool = typer.Option(False, "--no-explain", help="Do not explain failed builds."),
    sign: bool = typer.Option(
        False, "--sign", help="Sign the modules with each kernel's scripts/sign-file."
    ),
    key: Path = typer.Option(None, "--key", help="Signing key for --sign (PEM)."),
    cert: Path = typer.Option(None, "--cert", help="Certificate for --sign (DER or PEM)."),
    strip: bool = typer.Option(False, "--strip", help="With --sign: strip debug info first."),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Fail at once if another kmod-py builds this project for a "
        "kernel (or builds a needed image), instead of waiting."
    ),
) -> None:
    """Build the module for each target kernel and check the result.

    --sign: strip (--strip) -> sign each module with the kernel's own sign-file and its
    CONFIG_MODULE_SIG_HASH; the key pair comes from --key/--cert, kmod.toml [sign], DKMS's
    /var/lib/dkms/mok.key + mok.pub, or `kmod-py keygen`."""
    from kbuild_py.build import plan
    from kbuild_py.build.layout import layout_for
    from kbuild_py.build.run import build_all
    from kbuild_py.errors import UsageError
    from kbuild_py.kernels.select import resolve_targets
    from kbuild_py.project.config import find_module_dir, load_project
    from kbuild_py.project.makevars import parse_make_vars
    from kbuild_py.report import build as rb
    from kbuild_py.report.table import append_step_summary
    from kbuild_py.trust import fs

    if kdir is not None and kernel:
        raise UsageError("--kernel and --kdir both given", "pass --kdir DIR or --kernel SPEC")
    for f in extra_symbols:
        if not f.is_file():
            raise UsageError(f"--extra-symbols {f}: no such file", "pass a Module.symvers file")
    report_file(junit, "--junit")
    fs.POLICY.wait = not no_wait
    project_dir = find_module_dir(path)
    project = load_project(project_dir)
    opts = plan.BuildOptions(
        make_vars={**project.make_vars, **parse_make_vars(make_var)},
        extra_symvers=[p.resolve() for p in extra_symbols],
        expected_modules=project.modules,
        follow_dkms_conf=project.follow_dkms_conf,
        sign=_sign_settings(sign, key, cert, strip, project),
    )
    with showing_progress():  # image builds, debootstrap, downloads; before the live view
        targets = resolve_targets(
            kernel, kdir, project.kernels, mirror=mirror,
            progress=lambda m: typer.echo(m, err=True))
    for t in targets:  # a symlinked .kmod-py or a release that is no plain name: refuse now
        layout_for(project_dir, t.release)
    jobs = plan.plan_parallelism(opts, len(targets), jobs, make_jobs)
    for t in targets:
        for note in plan.target_toolchain(t, opts.make_vars).notes:
            typer.echo(f"kernel {t.release}: {note}", err=True)
    for t, used in plan.compiler_mismatches(targets, opts.make_vars):
        for line in rb.compiler_warning(t.release, t.compiler, used):
            typer.echo(line, err=True)
    view = rb.LiveView(project_dir, len(targets) > 1, verbose, sys.stderr if as_json else None)
    on_done = view.done
    if not no_explain:
        on_done = _explaining(view.done, targets, explain_with, mirror)

    try:
        with sigterm_interrupts():
            results = build_all(
                project_dir,
                targets,
                opts,
                jobs=jobs,
                fail_fast=fail_fast,
                on_line=view.line,
                on_done=on_done,
            )
    finally:
        view.close()
    if junit:
        junit.write_text(rb.to_junit(results, project_dir, project.modules))
    append_step_summary(rb.step_summary(results))
    if as_json:
        typer.echo(rb.to_json(results))
    elif len(targets) > 1:
        typer.echo("")
        typer.echo(rb.summary_table(results))
    skipped = len(targets) - len(results)
    if skipped:
        typer.echo(f"{skipped} kernel(s) not built (--fail-fast)", err=True)
    if skipped or not all(r.ok for r in results):
        raise typer.Exit(1)


def _explaining(done, targets, explain_with, mirror):
    """view.done, after a failed kernel's errors are explained from every kernel's headers."""
    from kbuild_py.explain.service import Explainer
    from kbuild_py.kernels.select import resolve_targets

    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    extra = resolve_targets(explain_with, None, mirror=mirror, progress=say) if explain_with else []
    explainer = Explainer([*targets, *extra], say)

    def explained(res):
        res.explanations = explainer.explain_result(res)
        done(res)

    return explained


def _sign_settings(sign: bool, key: Path | None, cert: Path | None, strip: bool, project):
    """--sign's key pair and steps (None without --sign); --key/--cert/--strip need --sign."""
    from kbuild_py.errors import UsageError

    if not sign:
        if key or cert or strip:
            raise UsageError("--key, --cert and --strip go with --sign", "add --sign")
        return None
    from kbuild_py.signing.service import settings_for

    return settings_for(key, cert, None, strip, project.sign, project.path)
