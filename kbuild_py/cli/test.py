"""kmod-py test: boot each target kernel in QEMU, load the module, report what the kernel said."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from kbuild_py.cli.base import sigterm_interrupts
from kbuild_py.paths import report_file


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
) -> None:
    """Boot each target kernel in QEMU, load the module, and judge the kernel's log."""
    from kbuild_py.boot import run as tr
    from kbuild_py.errors import UsageError
    from kbuild_py.project.makevars import parse_make_vars
    from kbuild_py.report import test as rt

    make_vars = parse_make_vars(make_var or [])
    if ko and make_vars:
        raise UsageError("--make-var with --ko: nothing is built", "drop one of them")
    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel {accel!r}", "use auto, kvm or tcg")
    report_file(junit, "--junit")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: must be more than 0 s", "e.g. --timeout 120")
    for f in [*(ko or []), *([script] if script else [])]:
        if not f.is_file():
            raise UsageError(f"{f}: no such file", "pass an existing file")
    out = sys.stderr if as_json else sys.stdout
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    if ko:
        base = Path.cwd()
        project_params: dict[str, str] = {}
        project_script, project_timeout = None, None
        test_jobs, failed = _prebuilt_jobs(ko, kernel or [], mirror)
    else:
        base, project_params, project_script, project_timeout, test_jobs, failed = _build(
            path, kernel or [], mirror, jobs, say, make_vars)
    built = {k.name.split(".ko")[0].replace("-", "_") for j in test_jobs for k in j.modules}
    unknown = [m for m in module or () if built and m.replace("-", "_") not in built]
    if unknown:
        raise UsageError(f"--module {', '.join(unknown)}: not among the modules built: "
                         f"{', '.join(sorted(built))}", "name a built module (without .ko)")
    if project_script is not None and not project_script.is_file():
        raise UsageError(f"kmod.toml [test] script {project_script}: no such file",
                         "fix the path (relative to the module directory)")
    opts = tr.TestOptions(
        params=tr.parse_params(param or [], project_params),
        script=script or project_script,
        timeout=timeout or project_timeout or tr.DEFAULT_TIMEOUT,
        accel=accel,
        modules=tuple(module or ()),
    )
    lock = threading.Lock()

    def on_done(res) -> None:  # type: ignore[no-untyped-def]
        with lock:
            print("\n".join(rt.render_result(res, base)), file=out, flush=True)

    def stream(chunk: bytes) -> None:
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()

    for f in failed:
        on_done(f)
    with sigterm_interrupts():
        results = failed + tr.run_all(test_jobs, opts, parallel=jobs, on_done=on_done,
                                      on_output=stream if verbose else None)
    if junit:
        junit.write_text(rt.to_junit(results, base))
    if as_json:
        typer.echo(rt.to_json(results, base))
    elif len(results) > 1:
        typer.echo("\n" + rt.summary_table(results))
    if not results or not all(r.passed for r in results):
        raise typer.Exit(1)


def _prebuilt_jobs(kos: list[Path], specs: list[str], mirror: str | None):  # type: ignore[no-untyped-def]
    from kbuild_py.boot import run as tr
    from kbuild_py.kernels.resolve import place
    from kbuild_py.paths import output_dir

    if not specs:
        release, suite = tr.vermagic_release(kos[0]), None
        pairs = [(release, release, suite)]
    else:
        placed = [place(s, mirror=mirror) for s in specs]
        pairs = [(p.spec, p.release, p.suite) for p in placed]
        pairs = [p for i, p in enumerate(pairs) if p[1] not in {q[1] for q in pairs[:i]}]
    # The console log goes to PROJECT/.kmod-py/<release>/: for a module kmod-py built that is
    # its own directory; for any other .ko it is under the current directory (never next to
    # a module in, say, /lib/modules).
    ko_dir = kos[0].resolve().parent
    project = ko_dir.parent.parent if ko_dir.parent.name == ".kmod-py" else Path.cwd()
    return [tr.KernelTest(label, rel, tuple(kos), output_dir(project, rel), suite, mirror)
            for label, rel, suite in pairs], []


def _build(path: Path, specs: list[str], mirror: str | None, jobs: int, say,  # type: ignore[no-untyped-def]
           make_vars: dict[str, str]):
    from kbuild_py.boot import run as tr
    from kbuild_py.build import plan
    from kbuild_py.build.run import build_all
    from kbuild_py.kernels.select import resolve_targets
    from kbuild_py.project.config import find_module_dir, load_project

    project_dir = find_module_dir(path)
    project = load_project(project_dir)
    targets = resolve_targets(specs, None, project.kernels, mirror=mirror, progress=say)
    opts = plan.BuildOptions(
        make_vars={**project.make_vars, **make_vars},
        expected_modules=project.modules,
        follow_dkms_conf=project.follow_dkms_conf,
    )
    say(f"building for {len(targets)} kernel(s): {', '.join(t.release for t in targets)}")
    builds = build_all(project_dir, targets, opts, jobs=max(1, jobs), on_done=lambda r: say(
        f"built {r.target.release}: {len(r.modules)} module(s)" if r.built
        else f"excluded {r.target.release}: {r.excluded}" if r.excluded and not r.error
        else f"build failed for {r.target.release}: {r.why_failed()}"))
    test_jobs, failed = tr.jobs_from_builds(builds, project_dir, mirror)
    script = project_dir / project.test_script if project.test_script else None
    return (project_dir, project.test_params, script, project.test_timeout, test_jobs, failed)

