"""Build plans and the multi-kernel build orchestrator.

Pure parts (plan_build, parse_diagnostics, the source-copy selection) are separate
from the one impure step, `target.runner.run(...)`, which is the host or a container.
Each kernel builds in its own copy of the sources at PROJECT/.kmod-py/<release>/,
so kernels never mix objects and the user's tree stays clean.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.kernels.resolve import Target
from kbuild_py.paths import output_dir
from kbuild_py.seams.process import signals_to_main_thread

# Files Kbuild writes; never copied from the user's tree into an output directory.
BUILD_OUTPUTS = (
    "*.o",
    "*.ko",
    "*.ko.*",
    "*.mod",
    "*.mod.c",
    "*.a",
    ".*.cmd",
    "*.cmd",
    ".*.d",
    "*.dwo",
    "*.symtypes",
    "Module.symvers",
    "Module.markers",
    "modules.order",
    ".module-common.o",
    "*.tmp",
)
SKIP_DIRS = {".kmod-py", ".git", ".hg", ".svn", ".tmp_versions", "__pycache__", ".venv"}
BUILD_TIMEOUT = 1800.0

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
class BuildOptions:
    make_jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    make_vars: dict[str, str] = field(default_factory=dict)
    timeout: float = BUILD_TIMEOUT
    run_checks: bool = True
    extra_symvers: Sequence[Path] = ()


def make_argv(target: Target, outdir: Path, opts: BuildOptions) -> list[str]:
    """The exact make command line for one kernel. Pure."""
    argv = ["make", "-C", target.kdir, f"M={outdir}", f"-j{max(1, opts.make_jobs)}"]
    variables = dict(opts.make_vars)
    cc = kernel_compiler_program(target.compiler)
    usable = target.where != "host" or shutil.which(cc or "") is not None
    if cc and usable and "CC" not in variables and "LLVM" not in variables:
        variables["CC"] = cc
    if opts.extra_symvers and "KBUILD_EXTRA_SYMBOLS" not in variables:
        variables["KBUILD_EXTRA_SYMBOLS"] = " ".join(str(p) for p in opts.extra_symvers)
    argv += [f"{k}={v}" for k, v in variables.items()]
    argv.append("modules")
    return argv


def kernel_compiler_program(cc_version_text: str) -> str | None:
    """'gcc-12 (Debian 12.2.0-14) 12.2.0' -> 'gcc-12' (also triplet-prefixed names such as
    'x86_64-linux-gnu-gcc-14'); a plain 'gcc'/'clang' -> None."""
    prog = cc_version_text.split(" ", 1)[0] if cc_version_text else ""
    if prog not in ("gcc", "clang") and re.fullmatch(r"(?:[\w.]+-)*(gcc|clang)(-\d+)?", prog):
        return prog
    return None


def source_files(project: Path) -> list[Path]:
    """The user's files to copy into an output directory (relative paths)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, pat) for pat in BUILD_OUTPUTS):
                continue
            if not os.path.isfile(os.path.join(root, name)):
                continue  # a broken link (an editor's lock file such as .#m.c), a FIFO, a socket
            out.append(Path(root, name).relative_to(project))
    return out


SOURCES_MANIFEST = ".kmod-py-sources"  # in outdir: the files the last sync copied


def sync_sources(project: Path, outdir: Path) -> None:
    """Mirror the sources into outdir; unchanged files keep their mtime (make stays incremental).
    A source removed from the project since the last sync is removed from outdir too."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = source_files(project)
    manifest = outdir / SOURCES_MANIFEST
    now = {str(rel) for rel in files}
    raw = "utf-8", "surrogateescape"  # file names are bytes; keep undecodable ones as they are
    before = manifest.read_text(*raw).splitlines() if manifest.is_file() else []
    for rel in before:
        gone = outdir / rel
        if rel not in now and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            if gone.is_file() or gone.is_symlink():
                gone.unlink()
    manifest.write_text("".join(f"{r}\n" for r in sorted(now) if "\n" not in r), *raw)
    for rel in files:
        src, dst = project / rel, outdir / rel
        st = src.stat()
        if dst.exists():
            dt = dst.stat()
            if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


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
        from kbuild_py.check.engine import check_module

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
            from kbuild_py.errors import KmodError

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
            from kbuild_py.seams.process import cancel_all

            cancel_all()  # kill running makes / remove containers, then let threads finish
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in sorted(results)]


def compiler_in_use(target: Target, make_vars: Mapping[str, str]) -> str:
    """First line of `CC --version` for the compiler this build will use (via the runner)."""
    if "LLVM" in make_vars:
        llvm = make_vars["LLVM"]
        cc = (
            f"clang{llvm}"
            if llvm.startswith("-")
            else (f"{llvm}clang" if llvm.endswith("/") else "clang")
        )
    else:
        cc = make_vars.get("CC") or kernel_compiler_program(target.compiler) or "gcc"
        if target.where == "host" and not shutil.which(cc):
            cc = "gcc"
    lines: list[str] = []
    try:
        res = target.runner.run([cc, "--version"], timeout=60, on_line=lines.append)
    except Exception:
        return ""
    return lines[0].strip() if res.returncode == 0 and lines else ""


def compiler_mismatch(kernel_cc: str, used_cc: str) -> bool:
    """Kbuild compares the whole --version line; so do we (ignoring surrounding space)."""
    return bool(kernel_cc and used_cc) and kernel_cc.strip() != used_cc.strip()


def plan_parallelism(opts: BuildOptions, n_targets: int, jobs: int, make_jobs: int) -> int:
    """Kernels at once (default 1, or 2 for a matrix); each gets its share of make -j."""
    if make_jobs:
        opts.make_jobs = make_jobs
    jobs = jobs or (2 if n_targets > 1 else 1)
    if n_targets > 1 and not make_jobs:
        opts.make_jobs = max(1, opts.make_jobs // min(jobs, n_targets))
    return jobs


def compiler_mismatches(
    targets: Sequence[Target], make_vars: Mapping[str, str]
) -> list[tuple[Target, str]]:
    """(target, compiler in use) for host targets whose compiler differs from the kernel's."""
    out = []
    for t in targets:
        if t.where == "host":
            used = compiler_in_use(t, make_vars)
            if compiler_mismatch(t.compiler, used):
                out.append((t, used))
    return out
