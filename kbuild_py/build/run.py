"""Running builds: one kernel (build_one) or several at once (build_all), and reading make's
output into diagnostics. The one impure step is `target.runner.run(...)`, the host or a
container; the plan (build.plan) and the source copy (build.sources) are separate.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.build.plan import BuildOptions, make_argv
from kbuild_py.build.sources import sync_sources
from kbuild_py.check.engine import check_module
from kbuild_py.errors import KmodError
from kbuild_py.kernels.spec import Target
from kbuild_py.paths import output_dir
from kbuild_py.seams.process import cancel_all, signals_to_main_thread

_DIAG = re.compile(
    r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<kind>fatal error|error|warning): (?P<msg>.*)$"
)
_MODPOST = re.compile(r"^(?P<kind>ERROR|WARNING): modpost: (?P<msg>.*)$")
_MAKE_ERR = re.compile(r"^make(?:\[\d+\])?: \*\*\* (?P<msg>.*)$")
# make's own fatal errors in a makefile: `Kbuild:3: *** $(error ...) text.  Stop.`
_MAKEFILE_ERR = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+): \*\*\* (?P<msg>.*)$")
_PROGRESS = re.compile(r"^\s{2}(CC|LD|AR|AS|MODPOST|BTF|SIGN|STRIP|INSTALL|DEPMOD|CLEAN)\b")


@dataclass(frozen=True)
class Diagnostic:
    kind: str  # "error" or "warning"
    text: str  # the compiler's line, with paths mapped back to the user's tree
    file: str | None = None
    line: int | None = None


def parse_diagnostic(
    line: str, outdir: Path | None = None, project: Path | None = None
) -> Diagnostic | None:
    """A compiler/modpost/make diagnostic in one output line, or None."""
    text = line.rstrip()
    if outdir is not None and project is not None:
        text = text.replace(f"{outdir}/", f"{project}/")
    m = _DIAG.match(text)
    if m:
        kind = "error" if "error" in m.group("kind") else "warning"
        return Diagnostic(kind, text, m.group("file"), int(m.group("line")))
    m = _MODPOST.match(text)
    if m:
        return Diagnostic("error" if m.group("kind") == "ERROR" else "warning", text)
    if text.startswith("warning: the compiler differs"):
        return Diagnostic("warning", text)
    if _MAKE_ERR.match(text):
        return Diagnostic("error", text)
    m = _MAKEFILE_ERR.match(text)
    if m:
        return Diagnostic("error", text, m.group("file"), int(m.group("line")))
    return None


def is_progress(line: str) -> bool:
    """A Kbuild progress line (CC/LD/MODPOST ...) shown in the concise live view."""
    return bool(_PROGRESS.match(line))


@dataclass
class BuildResult:
    target: Target
    outdir: Path
    log_path: Path
    returncode: int = -1
    timed_out: bool = False
    duration: float = 0.0
    modules: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reports: list = field(default_factory=list)  # checks.ModuleReport per module
    error: str | None = None  # an infrastructure failure (image build, daemon ...)

    @property
    def built(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None

    @property
    def ok(self) -> bool:
        return self.built and all(r.ok for r in self.reports)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind == "warning"]


LineCallback = Callable[[Target, str], None]


def build_one(
    project: Path,
    target: Target,
    opts: BuildOptions,
    on_line: LineCallback | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildResult:
    """Build the project for one kernel, write build.log, then check each .ko against it."""
    outdir = output_dir(project, target.release)
    result = BuildResult(target=target, outdir=outdir, log_path=outdir / "build.log")
    sync_sources(project, outdir)
    for stale in outdir.rglob("*.ko"):
        stale.unlink()
    argv = make_argv(target, outdir, opts)
    with open(result.log_path, "w") as log:
        log.write(f"# kernel {target.spec} ({target.release}) in {target.where}\n")
        log.write("# " + " ".join(argv) + "\n")

        def line_seen(line: str) -> None:
            log.write(line + "\n")
            diag = parse_diagnostic(line, outdir, project)
            if diag and diag not in result.diagnostics:
                result.diagnostics.append(diag)
            if on_line:
                on_line(target, line)

        res = target.runner.run(
            argv,
            cwd=outdir,
            env={"LC_ALL": "C", **(env or {})},
            timeout=opts.timeout,
            on_line=line_seen,
        )
        log.write(f"# exit {res.returncode}{' (timed out)' if res.timed_out else ''}\n")
    result.returncode, result.timed_out, result.duration = (
        res.returncode,
        res.timed_out,
        res.duration,
    )
    if result.timed_out:
        result.error = f"build timed out after {opts.timeout:.0f} s"
    result.modules = sorted(outdir.rglob("*.ko"))
    if result.built and opts.run_checks:
        # The project's own exports count: its modules may use each other's symbols.
        own = outdir / "Module.symvers"
        extra = [*opts.extra_symvers, *([own] if own.is_file() else [])]
        result.reports = [
            check_module(ko, target.tree, extra_symvers=extra) for ko in result.modules
        ]
    return result


def build_all(
    project: Path,
    targets: Sequence[Target],
    opts: BuildOptions,
    jobs: int = 1,
    fail_fast: bool = False,
    on_line: LineCallback | None = None,
    on_done: Callable[[BuildResult], None] | None = None,
) -> list[BuildResult]:
    """Build for several kernels, up to `jobs` at once; results in the targets' order."""
    stop = threading.Event()
    results: dict[int, BuildResult] = {}

    def one(i: int, target: Target) -> None:
        if stop.is_set():
            return
        started = time.monotonic()
        try:
            res = build_one(project, target, opts, on_line)
        except Exception as err:  # an infrastructure failure of this kernel only
            if not isinstance(err, KmodError):
                raise
            outdir = output_dir(project, target.release)
            res = BuildResult(
                target,
                outdir,
                outdir / "build.log",
                error=err.message,
                duration=time.monotonic() - started,
            )
        results[i] = res
        if on_done:
            on_done(res)
        if fail_fast and not res.ok:
            stop.set()

    if jobs <= 1 or len(targets) <= 1:
        for i, t in enumerate(targets):
            one(i, t)
    else:
        # Workers block SIGINT/SIGTERM so the main thread always receives them and can
        # cancel every running build (a signal taken by a worker would leave it waiting).
        pool = ThreadPoolExecutor(max_workers=jobs, initializer=signals_to_main_thread)
        futures = [pool.submit(one, i, t) for i, t in enumerate(targets)]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            stop.set()
            cancel_all()  # kill running makes / remove containers, then let threads finish
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in sorted(results)]


