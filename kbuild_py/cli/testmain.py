"""The body of `kmod-py test`, and a way in that does not need typer.

Importing typer and building its commands costs ~0.45 s (typer 0.29 builds its parameter
converters with pydantic): a quarter of an arm64 boot under TCG. main_fast parses the plain
forms of test's options itself (`--kernel R`, `-k R`, `--ko F`, `--json`, a PATH ...) and runs
the same body as the typer command; anything else (--help, `--`, an unknown option, a value
that is not a number, a missing value) returns None and typer parses the command line.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from kbuild_py.cli.base import exit_code_for, showing_progress, sigterm_interrupts
from kbuild_py.paths import report_file

# option -> (parameter, takes a value, may repeat); short options are exact tokens only
_OPTIONS = {
    "--kernel": ("kernel", True, True),
    "-k": ("kernel", True, True),
    "--ko": ("ko", True, True),
    "--param": ("param", True, True),
    "-p": ("param", True, True),
    "--module": ("module", True, True),
    "-m": ("module", True, True),
    "--make-var": ("make_var", True, True),
    "--script": ("script", True, False),
    "--timeout": ("timeout", True, False),
    "-j": ("jobs", True, False),
    "--jobs": ("jobs", True, False),
    "--accel": ("accel", True, False),
    "--json": ("as_json", False, False),
    "--junit": ("junit", True, False),
    "--mirror": ("mirror", True, False),
    "-v": ("verbose", False, False),
    "--verbose": ("verbose", False, False),
    "--sig-enforce": ("sig_enforce", False, False),
    "--sign": ("sign", False, False),
    "--no-wait": ("no_wait", False, False),
}


def parse_fast(args: Sequence[str]) -> dict[str, object] | None:
    """run_test's arguments for the plain forms of test's options, else None."""
    found: dict[str, list[str]] = {}
    paths: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("-"):
            if not tok or paths:
                return None  # one PATH at most
            paths.append(tok)
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
    one = {k: v[0] for k, v in found.items()}
    try:
        timeout = float(one["timeout"]) if "timeout" in one else None
        jobs = int(one.get("jobs", "1"))
    except ValueError:
        return None  # typer says what is wrong with it
    return {
        "path": Path(paths[0]) if paths else Path("."),
        "kernel": found.get("kernel"),
        "ko": [Path(v) for v in found["ko"]] if "ko" in found else None,
        "param": found.get("param"),
        "module": found.get("module"),
        "make_var": found.get("make_var"),
        "script": Path(one["script"]) if "script" in one else None,
        "timeout": timeout,
        "jobs": jobs,
        "accel": one.get("accel", "auto"),
        "as_json": "as_json" in found,
        "junit": Path(one["junit"]) if "junit" in one else None,
        "mirror": one.get("mirror"),
        "verbose": "verbose" in found,
        "sig_enforce": "sig_enforce" in found,
        "sign": "sign" in found,
        "no_wait": "no_wait" in found,
    }


def main_fast(args: Sequence[str]) -> int | None:
    """Run `kmod-py test ARGS` without typer; None when typer must parse ARGS."""
    opts = parse_fast(args)
    if opts is None:
        return None
    try:
        return run_test(**opts, say=say)  # type: ignore[arg-type]
    except (KeyboardInterrupt, Exception) as err:
        return exit_code_for(err)


def say(line: str) -> None:
    """A progress line on stderr."""
    print(line, file=sys.stderr, flush=True)


def run_test(
    path: Path,
    kernel: list[str] | None,
    ko: list[Path] | None,
    param: list[str] | None,
    module: list[str] | None,
    make_var: list[str] | None,
    script: Path | None,
    timeout: float | None,
    jobs: int,
    accel: str,
    as_json: bool,
    junit: Path | None,
    mirror: str | None,
    verbose: bool,
    *,
    say: Callable[[str], None],
    sig_enforce: bool = False,
    sign: bool = False,
    no_wait: bool = False,
) -> int:
    """Boot each target kernel in QEMU, load the module, judge the kernel's log; the exit
    status: 0 every kernel passed, 1 any did not."""
    from kbuild_py.boot import run as tr
    from kbuild_py.errors import UsageError
    from kbuild_py.project.config import seconds_ok
    from kbuild_py.project.makevars import parse_make_vars
    from kbuild_py.report import test as rt
    from kbuild_py.report.table import append_step_summary
    from kbuild_py.trust import fs

    make_vars = parse_make_vars(make_var or [])
    if ko and (make_vars or sign):
        raise UsageError(f"{'--sign' if sign else '--make-var'} with --ko: nothing is built",
                         "sign a prebuilt module with kmod-py sign" if sign else "drop one")
    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel {accel!r}", "use auto, kvm or tcg")
    report_file(junit, "--junit")
    if timeout is not None and not seconds_ok(timeout):
        raise UsageError(f"--timeout {timeout:g}: must be a finite number of seconds more than 0",
                         "e.g. --timeout 120")
    fs.POLICY.wait = not no_wait
    for f in [*(ko or []), *([script] if script else [])]:
        if not f.is_file():
            why = "not a regular file" if f.exists() else "no such file"
            raise UsageError(f"{f}: {why}", "pass an existing file")
    bars = nullcontext() if verbose else showing_progress()  # --verbose streams the console
    if ko:
        base = Path.cwd()
        project_params: dict[str, str] = {}
        project_script, project_timeout = None, None
        with bars:
            test_jobs, failed = _prebuilt_jobs(ko, kernel or [], mirror)
    else:
        with bars:
            base, project_params, project_script, project_timeout, test_jobs, failed = _build(
                path, kernel or [], mirror, jobs, say, make_vars, sign)
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
        sig_enforce=sig_enforce,
    )
    lock = threading.Lock()

    def on_done(res) -> None:
        with lock:  # sys.stdout looked up now: progress bars may have redirected it
            print("\n".join(rt.render_result(res, base)),
                  file=sys.stderr if as_json else sys.stdout, flush=True)

    def stream(chunk: bytes) -> None:
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()

    for f in failed:
        on_done(f)
    with sigterm_interrupts(), nullcontext() if verbose else showing_progress():
        results = failed + tr.run_all(test_jobs, opts, parallel=jobs, on_done=on_done,
                                      on_output=stream if verbose else None)
    if junit:
        junit.write_text(rt.to_junit(results, base))
    append_step_summary(rt.step_summary(results))
    if as_json:
        print(rt.to_json(results, base), flush=True)
    elif len(results) > 1:
        print("\n" + rt.summary_table(results), flush=True)
    return 0 if results and all(r.passed for r in results) else 1




def _prebuilt_jobs(kos: list[Path], specs: list[str], mirror: str | None):
    from kbuild_py.boot import run as tr
    from kbuild_py.kernels.resolve import place
    from kbuild_py.paths import output_dir

    if not specs:
        release, suite = tr.vermagic_release(kos[0]), None
        pairs: list[tuple[str, str, str | None]] = [(release, release, suite)]
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


def _build(path: Path, specs: list[str], mirror: str | None, jobs: int, say,
           make_vars: dict[str, str], sign: bool = False):
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
    if sign:  # the key pair: kmod.toml [sign], else DKMS's, else keygen's
        from kbuild_py.signing.service import settings_for

        opts.sign = settings_for(None, None, None, False, project.sign, project_dir)
    say(f"building for {len(targets)} kernel(s): {', '.join(t.release for t in targets)}")
    builds = build_all(project_dir, targets, opts, jobs=max(1, jobs), on_done=lambda r: say(
        f"built {r.target.release}: {len(r.modules)} module(s)" if r.built
        else f"excluded {r.target.release}: {r.excluded}" if r.excluded and not r.error
        else f"build failed for {r.target.release}: {r.why_failed()}"))
    test_jobs, failed = tr.jobs_from_builds(builds, project_dir, mirror)
    script = project_dir / project.test_script if project.test_script else None
    return (project_dir, project.test_params, script, project.test_timeout, test_jobs, failed)

