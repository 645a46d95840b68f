"""Running builds: one kernel (build_one) or several at once (build_all), and reading make's
output into diagnostics. The one impure step is `target.runner.run(...)`, the host or a
container; the plan (build.plan) and the source copy (build.sources) are separate.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.build.layout import CopyLayout, layout_for, project_root
from kbuild_py.build.plan import BuildOptions, make_argv, target_toolchain
from kbuild_py.build.sources import remove_stale_modules, sync_sources
from kbuild_py.check.engine import check_module
from kbuild_py.dkms.conf import CONF_FILE
from kbuild_py.dkms.run import package_of, run_dkms
from kbuild_py.errors import KmodError
from kbuild_py.kernels.spec import Target
from kbuild_py.paths import output_lock
from kbuild_py.seams.process import Result, parallel_map
from kbuild_py.signing.service import BuildSigning, sign_built
from kbuild_py.trust import fs

_DIAG = re.compile(
    r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<kind>fatal error|error|warning): (?P<msg>.*)$"
)
# objtool: `foo.o: error: objtool: init_module(): Magic init_module() function name is
# deprecated, use module_init(fn) instead` (older kernels: `foo.o: warning: objtool: ...`)
_OBJTOOL = re.compile(r"^(?:(?P<file>\S+?): )?(?:(?P<kind>error|warning): )?objtool: (?P<msg>.*)$")
# modpost and ld reading a file that is not there (a KBUILD_EXTRA_SYMBOLS path, ...)
_NO_FILE = re.compile(r"^(?P<file>/\S+|\S+\.symvers): No such file or directory$")
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
    tool: str | None = None  # "objtool", "modpost", "ld" ...: a tool's own diagnostic
    earlier: bool = False  # from an earlier build, for an object make did not recompile


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
    m = _OBJTOOL.match(text)
    if m:
        kind = "warning" if m.group("kind") == "warning" else "error"
        return Diagnostic(kind, text, m.group("file"), None, "objtool")
    m = _MODPOST.match(text)
    if m:
        kind = "error" if m.group("kind") == "ERROR" else "warning"
        return Diagnostic(kind, text, None, None, "modpost")
    m = _NO_FILE.match(text)
    if m:
        return Diagnostic("error", text, m.group("file"), None, "file")
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
    outdir: Path  # the per-kernel copy of the project (root/.kmod-py/<release>/)
    log_path: Path
    returncode: int = -1
    timed_out: bool = False
    duration: float = 0.0
    modules: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reports: list = field(default_factory=list)  # checks.ModuleReport per module
    error: str | None = None  # an infrastructure failure (image build, daemon ...)
    failure: str | None = None  # make exited 0 but the build is not what was expected
    excluded: str | None = None  # dkms.conf's BUILD_EXCLUSIVE_* rules out this kernel
    package: str | None = None  # dkms.conf's PACKAGE_NAME / PACKAGE_VERSION
    version: str | None = None
    expected: list[str] = field(default_factory=list)  # module names the project names
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # built, but not among the expected
    notes: list[str] = field(default_factory=list)  # warnings about the project itself
    compiled: int = 0  # objects (re)compiled by this build
    compiled_stems: set[str] = field(default_factory=set)
    tail: list[str] = field(default_factory=list)  # last lines of a step that failed
    ignored: list[str] = field(default_factory=list)  # dkms.conf install-time directives
    explanations: list = field(default_factory=list)  # explain.Explanation, when make failed
    signing: BuildSigning | None = None  # --sign: what was signed, or why nothing was

    @property
    def built(self) -> bool:
        return (
            self.returncode == 0
            and not self.timed_out
            and self.error is None
            and self.failure is None
            and self.excluded is None
        )

    @property
    def ok(self) -> bool:
        if self.excluded is not None and self.error is None:
            return True  # not built for this kernel by the project's own rule: not a failure
        return self.built and all(r.ok for r in self.reports)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.kind == "warning"]

    def ranked_errors(self) -> list[Diagnostic]:
        """The tools' own errors (compiler file:line, objtool, modpost) before make's `***`
        lines, which only say that something failed; warnings when there is no error."""
        diags = self.errors or self.diagnostics
        return sorted(diags, key=lambda d: d.file is None and d.tool is None)

    def why_failed(self) -> str:
        """One line: the reason this kernel has no usable build."""
        if self.error or self.failure:
            return str(self.error or self.failure)
        first = self.ranked_errors()
        where = f"make exit {self.returncode}"
        return f"{first[0].text} ({where})" if first else f"build failed ({where})"


LineCallback = Callable[[Target, str], None]
TAIL_LINES = 8
_COMPILED = re.compile(r"^\s{2}CC( \[M\])?\s+\S+\.o$")


class BuildLog:
    """One kernel's build.log: every step's command and output, diagnostics parsed as the
    lines arrive (paths in the copy mapped back to the user's tree)."""

    def __init__(
        self, result: BuildResult, layout: CopyLayout, on_line: LineCallback | None
    ) -> None:
        self.result, self.layout, self.on_line = result, layout, on_line
        self.prefixes: list[tuple[str, str]] = [(f"{layout.copy}/", f"{layout.root}/")]
        fs.remove_inside(layout.base, result.log_path.relative_to(layout.base))
        self.file = open(result.log_path, "x")  # noqa: SIM115 - closed by close()
        self.recent: deque[str] = deque(maxlen=TAIL_LINES)  # the running step's last lines

    def write(self, text: str) -> None:
        self.file.write(text + "\n")

    def line(self, line: str) -> None:
        self.file.write(line + "\n")
        mapped = line
        for old, new in self.prefixes:
            mapped = mapped.replace(old, new)
        if mapped.strip():
            self.recent.append(mapped)
        diag = parse_diagnostic(mapped)
        if diag and diag not in self.result.diagnostics:
            self.result.diagnostics.append(diag)
        if _COMPILED.match(line):
            self.result.compiled += 1
            self.result.compiled_stems.add(Path(line.split()[-1]).name.split(".")[0])
        if self.on_line:
            self.on_line(self.result.target, line)

    def run(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None,
        timeout: float,
        label: str = "",
    ) -> Result:
        self.write(f"# {label or 'run'}: " + " ".join(argv) + f"   (in {cwd})")
        self.recent.clear()
        try:
            res = self.result.target.runner.run(
                argv, cwd=cwd, env={"LC_ALL": "C", **(env or {})}, timeout=timeout,
                on_line=self.line,
            )
        except KmodError as err:  # e.g. the Docker daemon died: the log says so, then the row
            self.write(f"# error: {err.message}")
            raise
        self.write(f"# exit {res.returncode}{' (timed out)' if res.timed_out else ''}")
        if res.returncode != 0:  # what the failing step said last, for when it names no error
            self.result.tail = list(self.recent)
        self.result.duration += res.duration
        return res

    def close(self) -> None:
        self.file.close()


def _module_name(ko: Path) -> str:
    return ko.name[: -len(".ko")].replace("-", "_").replace(",", "_")


def verify_module_set(result: BuildResult, expected: Sequence[str]) -> None:
    """No .ko from a successful make is a failure; so is a missing expected module."""
    if not result.built:
        return
    names = {_module_name(k) for k in result.modules}
    want = {e.replace("-", "_") for e in expected}
    gone = {e for e in expected if e.replace("-", "_") not in names}
    result.missing = sorted(gone | set(result.missing))
    result.extra = sorted(_module_name(k) for k in result.modules if want and
                          _module_name(k) not in want)
    if not result.modules:
        result.failure = "make succeeded but built no module"
    elif result.missing:
        result.failure = "expected module(s) not built: " + ", ".join(result.missing)


def build_one(
    project: Path,
    target: Target,
    opts: BuildOptions,
    on_line: LineCallback | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildResult:
    """Build the project for one kernel, write build.log, then check each .ko against it.

    `project` is the module directory; the whole project tree above it (dkms/tree.py) is
    copied, and a dkms.conf in the module directory is followed as dkms would (its copy then
    sits at $dkms_tree/<module>/<version>/build: build.layout).

    One build per project and kernel at a time: a second one waits for the lock (saying so),
    or fails at once under --no-wait (fs.POLICY)."""
    root = project_root(Path(project))
    dkms = opts.follow_dkms_conf and Path(project).resolve() == root and (
        root / CONF_FILE
    ).is_file()
    layout = layout_for(project, target.release, package_of(root, target) if dkms else None)
    doing = f"building {layout.root} for {target.release}"
    with fs.locked(output_lock(layout.root, target.release), doing):
        return _build_locked(layout, target, opts, on_line, env, dkms)


def _build_locked(
    layout: CopyLayout,
    target: Target,
    opts: BuildOptions,
    on_line: LineCallback | None,
    env: Mapping[str, str] | None,
    dkms: bool = False,
) -> BuildResult:
    outdir = layout.copy
    result = BuildResult(target=target, outdir=outdir, log_path=layout.log_path)
    sync_sources(layout.root, outdir)
    remove_stale_modules(outdir)
    opts = _with_local_symvers(opts, outdir)
    log = BuildLog(result, layout, on_line)
    expected = list(opts.expected_modules)
    try:
        log.write(f"# kernel {target.spec} ({target.release}) in {target.where}")
        for note in target_toolchain(target, opts.make_vars).notes:
            log.write(f"# {note}")
        if dkms:
            expected = run_dkms(layout, target, opts, log, env) + expected
        else:
            argv = make_argv(target, layout.make_dir, opts)
            res = log.run(argv, layout.make_dir, env, opts.timeout, "make")
            result.returncode, result.timed_out = res.returncode, res.timed_out
    finally:
        log.close()
    if result.timed_out:
        result.error = f"build timed out after {opts.timeout:.0f} s"
    result.modules = sorted(outdir.rglob("*.ko"))
    if result.excluded is None:
        verify_module_set(result, expected)
    if result.built:
        carry_warnings(result, layout.root)
    if result.built and opts.sign is not None:  # strip -> sign, before the checks see them
        result.signing = sign_built(result.modules, target, opts.sign, opts.make_vars)
    if result.built and opts.run_checks:
        # The project's own exports count: its modules may use each other's symbols.
        own = sorted(outdir.rglob("Module.symvers"))
        extra = [*opts.extra_symvers, *_make_var_symvers(opts, layout), *own]
        result.reports = [
            check_module(ko, target.tree, extra_symvers=extra) for ko in result.modules
        ]
    return result


WARNINGS_FILE = ".kmod-py-warnings.json"  # in the copy: the last successful build's warnings


def carry_warnings(result: BuildResult, root: Path) -> None:
    """Warnings of C files make did not recompile this time are those of the earlier build:
    keep them (marked earlier), so the count does not depend on what happened to be rebuilt."""
    store = result.outdir / WARNINGS_FILE
    try:
        before = json.loads(store.read_text()) if store.is_file() else []
    except (OSError, ValueError):
        before = []
    now = {d.text for d in result.warnings}
    for item in before if isinstance(before, list) else []:
        file = item.get("file") if isinstance(item, dict) else None
        if not file or not str(file).endswith(".c") or item.get("text") in now:
            continue
        src = Path(file) if Path(file).is_absolute() else root / file
        if Path(file).stem in result.compiled_stems or not src.is_file():
            continue
        result.diagnostics.append(Diagnostic("warning", str(item["text"]), str(file),
                                             item.get("line"), item.get("tool"), earlier=True))
    kept = [{"text": d.text, "file": d.file, "line": d.line, "tool": d.tool}
            for d in result.warnings]
    try:
        store.write_text(json.dumps(kept))
    except OSError:
        pass


def _with_local_symvers(opts: BuildOptions, outdir: Path) -> BuildOptions:
    """--extra-symbols files copied into the per-kernel copy, which a container mounts."""
    if not opts.extra_symvers:
        return opts
    local = outdir / ".kmod-py-extra-symbols"
    local.mkdir(exist_ok=True)
    paths = []
    for i, src in enumerate(opts.extra_symvers):
        dst = local / f"{i}-{Path(src).name}"
        shutil.copyfile(src, dst)
        paths.append(dst)
    return dataclasses.replace(opts, extra_symvers=paths)


def _make_var_symvers(opts: BuildOptions, layout: CopyLayout) -> list[Path]:
    """KBUILD_EXTRA_SYMBOLS from make variables, as files readable on the host."""
    out = []
    for word in opts.make_vars.get("KBUILD_EXTRA_SYMBOLS", "").split():
        p = Path(word.replace("$(src)", str(layout.make_dir)).replace("$(M)", str(layout.make_dir)))
        if not p.is_absolute():
            p = layout.make_dir / p
        if p.is_file():
            out.append(p)
    return out


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
            if not isinstance(err, KmodError) or isinstance(
                err, (fs.UnsafePathError, fs.LockBusy)
            ):
                raise
            outdir = layout_for(project, target.release).base
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

    try:  # an interrupt cancels every running make and container (parallel_map)
        parallel_map(lambda it: one(*it), list(enumerate(targets)), jobs)
    except BaseException:
        stop.set()
        raise
    return [results[i] for i in sorted(results)]


