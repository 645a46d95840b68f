"""`kmod-py test`: for each kernel, boot it in QEMU with the module(s) and judge the log.

One KernelTest per target kernel: fetch the kernel image (cached), resolve the
module's in-kernel dependencies in that kernel's module tree, write an initramfs
(busybox-static, deps, the modules, an /init), boot it with a hard timeout, save
the console log to PROJECT/.kmod-py/<release>/test-console.log, parse a verdict.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.boot import deps as moddeps
from kbuild_py.boot import guest, initramfs
from kbuild_py.boot.verdict import Verdict, parse_console
from kbuild_py.debian import linuximage
from kbuild_py.debian.archive import extract_deb
from kbuild_py.debian.linuximage import KernelImage, fetch_kernel
from kbuild_py.debian.suites import arch_of
from kbuild_py.errors import InfraError, KmodError, UsageError
from kbuild_py.paths import cache_dir
from kbuild_py.seams import qemu
from kbuild_py.seams.process import parallel_map

DEFAULT_TIMEOUT = 120.0
SIG_ENFORCE = "module.sig_enforce=1"  # refuse modules without a trusted signature
CONSOLE_LOG = "test-console.log"
INITRAMFS = "test-initramfs.cpio"


@dataclass(frozen=True)
class TestOptions:
    params: tuple[str, ...] = ()  # k=v, passed to insmod of every module under test
    script: Path | None = None  # run in the guest after loading; its exit code counts
    timeout: float = DEFAULT_TIMEOUT  # whole boot, KVM fallback included
    accel: str = "auto"
    memory_mb: int = 512
    compress: bool = False  # gzip saves disk, costs boot time under TCG
    modules: tuple[str, ...] = ()  # --module: test only these (each on its own); () = all
    sig_enforce: bool = False  # boot with module.sig_enforce=1: only trusted signatures load


@dataclass(frozen=True)
class KernelTest:
    label: str  # what the user asked for (the spec), for the report
    release: str
    modules: tuple[Path, ...]  # .ko files built for this release
    out_dir: Path  # PROJECT/.kmod-py/<release>/
    suite: str | None = None
    mirror: str | None = None  # the Debian mirror the kernel image comes from (--mirror)

    @property
    def arch(self) -> str:
        """The kernel's Debian architecture (from its release: 6.1.0-57-arm64 -> arm64)."""
        return arch_of(self.release)


@dataclass
class TestResult:
    label: str
    release: str
    status: str  # pass, fail, timeout, error
    verdict: Verdict | None = None
    accel: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall clock of the boot
    console: Path | None = None
    error: str | None = None  # infrastructure problem: no image, QEMU failed to start
    modules: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


_EM = {"amd64": "EM_X86_64", "arm64": "EM_AARCH64"}


def _busybox_for(given: Path | None, arch: str, mirror: str | None = None) -> Path:
    """The busybox passed in unless it is an ELF file for another architecture (an arm64
    busybox must not boot an amd64 kernel), else find_busybox(arch)."""
    if given is not None and _elf_machine(given) in (None, _EM.get(arch)):
        return given
    return find_busybox(arch=arch, mirror=mirror)


_EM_NAMES = {62: "EM_X86_64", 183: "EM_AARCH64"}


def _elf_facts(path: Path) -> tuple[str | None, bool]:
    """(e_machine name, statically linked) of a 64-bit little-endian ELF executable, read
    with struct (pyelftools costs ~0.17 s to import); (None, False) when it is not one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4:6] != b"\x02\x01":
                return None, False
            machine = struct.unpack_from("<H", head, 18)[0]
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except OSError:
        return None, False
    types = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)
             if (i + 1) * phentsize <= len(table)]
    name = _EM_NAMES.get(machine, f"EM_{machine}")
    return name, 3 not in types  # PT_INTERP: a dynamic executable


def _elf_machine(path: Path) -> str | None:
    """e_machine of an ELF file ('EM_AARCH64'), None when it is not one."""
    return _elf_facts(path)[0]


def find_busybox(fetch_deb: Callable[[str], Path] | None = None, arch: str = "amd64",
                 mirror: str | None = None) -> Path:
    """A statically linked busybox for `arch`: the host's (from busybox-static) when it is one,
    else Debian's busybox-static package of that architecture (from `mirror`, authenticated),
    fetched once into the cache (unpacked there: the host's dpkg and apt are not touched)."""
    for cand in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if cand.is_file() and _is_static(cand, arch):
            return cand
    dest = cache_dir() / ("busybox-static" if arch == "amd64" else f"busybox-static-{arch}")
    exe = dest / "bin" / "busybox"
    if not exe.is_file():
        if fetch_deb is not None:
            deb = fetch_deb("busybox-static")
        else:
            deb = linuximage.fetch_deb("busybox-static", mirror=mirror, arch=arch)
        extract_deb(deb, dest)
    if not exe.is_file() or not _is_static(exe, arch):
        raise InfraError(f"no static busybox for {arch} found", "install busybox-static")
    return exe


def _is_static(path: Path, arch: str = "amd64") -> bool:
    machine, static = _elf_facts(path)
    return static and machine == _EM.get(arch)


@dataclass(frozen=True)
class Prepared:
    plan: guest.GuestPlan
    files: dict[str, bytes | Path]


def load_order(needs: dict[str, list[str]]) -> list[str]:
    """Modules under test, each after the others of them it depends on (given order kept)."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise UsageError(f"modules depend on each other: {' -> '.join(chain + (name,))}")
        for dep in needs[name]:
            dep = moddeps.module_name(dep)
            if dep in needs:
                visit(dep, chain + (name,))
        order.append(name)

    for name in needs:
        visit(name, ())
    return order


def choose_modules(order: list[str], names: Sequence[str]) -> list[str]:
    """The modules --module names (in load order), or all; an unknown name is refused."""
    if not names:
        return order
    norm = {n.replace("-", "_"): n for n in names}
    unknown = [n for k, n in norm.items() if k not in order]
    if unknown:
        raise UsageError(
            f"--module {', '.join(unknown)}: not among the modules built: {', '.join(order)}",
            "name a built module (without .ko)",
        )
    return [n for n in order if n in norm]


def requires(name: str, needs: dict[str, list[str]], order: list[str]) -> tuple[str, ...]:
    """The other modules under test `name` needs loaded first (transitively), in load order."""
    seen: set[str] = set()
    todo = [moddeps.module_name(d) for d in needs.get(name, [])]
    while todo:
        dep = todo.pop()
        if dep in needs and dep not in seen and dep != name:
            seen.add(dep)
            todo += [moddeps.module_name(d) for d in needs[dep]]
    return tuple(n for n in order if n in seen)


def prepare(
    modules: Sequence[Path], image: KernelImage, opts: TestOptions, busybox: Path
) -> Prepared:
    """The guest plan and initramfs contents for testing `modules` on `image`."""
    files: dict[str, bytes | Path] = {"bin/busybox": busybox}
    needs: dict[str, list[str]] = {}  # module under test -> its depends=
    for path in modules:
        if not path.is_file():
            raise UsageError(f"module file not found: {path}", "build it first: kmod-py build")
        elf = moddeps.decompress(path.read_bytes(), str(path))
        info = moddeps.modinfo(elf, str(path))
        name = (info.get("name") or [moddeps.module_name(path)])[0]
        needs[name] = moddeps.depends(info)
        files[f"{guest.MODULE_DIR}/{name}.ko.gz"] = guest.pack_module(elf)
    order = load_order(needs)
    chosen = choose_modules(order, opts.modules)
    mods = [
        guest.GuestModule(n, f"{n}.ko.gz", tuple(opts.params), requires(n, needs, order))
        for n in chosen
    ]
    wanted = [d for ds in needs.values() for d in ds if moddeps.module_name(d) not in needs]
    deps = []
    if wanted:  # the kernel's module tree (thousands of files) only when something is needed
        tree = moddeps.ModuleTree(image.module_files(), image.release)
        deps = tree.resolve(wanted, moddeps.builtin_names(image.modules_dir))
    gdeps = [guest.GuestModule(d.name, f"{d.name}.ko.gz") for d in deps]
    for d in deps:
        files[f"{guest.DEPS_DIR}/{d.name}.ko.gz"] = guest.pack_module(d.elf())
    if opts.script is not None:
        if not opts.script.is_file():
            raise UsageError(f"script not found: {opts.script}")
        files[guest.SCRIPT_PATH] = opts.script.read_bytes()
    plan = guest.GuestPlan(tuple(mods), tuple(gdeps), script=opts.script is not None,
                           separate=len(mods) > 1 or bool(opts.modules))
    return Prepared(plan, files)


def run_one(
    job: KernelTest,
    opts: TestOptions,
    *,
    vm: qemu.Qemu | None = None,
    fetch: Callable[[str, str | None, str | None], KernelImage] = fetch_kernel,
    busybox: Path | None = None,
    on_output: Callable[[bytes], None] | None = None,
) -> TestResult:
    """Test `job.modules` on one kernel. Infrastructure failures become status=error."""
    result = TestResult(job.label, job.release, "error")
    try:
        arch = job.arch
        image = fetch(job.release, job.suite, job.mirror)
        prep = prepare(job.modules, image, opts, _busybox_for(busybox, arch, job.mirror))
        result.modules = [m.name for m in prep.plan.modules]
        result.deps = [d.name for d in prep.plan.deps]
        init = guest.init_script(prep.plan)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        initrd = initramfs.write(
            job.out_dir / INITRAMFS,
            initramfs.build(prep.files, init, executables=["bin/busybox"], compress=opts.compress),
        )
        spec = qemu.VmSpec(kernel=image.vmlinuz, initrd=initrd, memory_mb=opts.memory_mb,
                           arch=arch, append=qemu.default_append(arch))
        if opts.sig_enforce:
            spec = dataclasses.replace(spec, append=f"{spec.append} {SIG_ENFORCE}")
        console = job.out_dir / CONSOLE_LOG
        result.console = console
        start = time.monotonic()
        booted = qemu.boot(spec, console, timeout=opts.timeout, accel=opts.accel,
                           qemu=vm, on_output=on_output)
        result.seconds = time.monotonic() - start
    except KmodError as err:
        result.error = err.message + (f" (hint: {err.hint})" if err.hint else "")
        return result
    result.accel, result.notes = booted.accel, booted.notes
    out = booted.outcome
    text = console.read_text("utf-8", "replace") if console.is_file() else ""
    v = parse_console(text, result.modules, timed_out=out.timed_out, timeout=opts.timeout,
                      release=job.release, sig_enforce=opts.sig_enforce)
    result.verdict = v
    result.status = v.status
    if not out.timed_out and v.init_uptime is None and out.returncode and out.stderr.strip():
        result.status = "error"
        result.error = f"QEMU exited {out.returncode}: {out.stderr.strip().splitlines()[-1]}"
    return result


def run_all(
    jobs: Sequence[KernelTest],
    opts: TestOptions,
    *,
    parallel: int = 1,
    on_done: Callable[[TestResult], None] | None = None,
    **kw,
) -> list[TestResult]:
    """run_one for every job, `parallel` at a time; results in job order."""
    given = kw.pop("busybox", None)
    boxes: dict[str, Path] = {}
    for arch in sorted({j.arch for j in jobs}):  # fetched once, before the workers start
        try:
            boxes[arch] = _busybox_for(given, arch, jobs[0].mirror)
        except KmodError:
            pass  # that kernel's result says so

    def one(job: KernelTest) -> TestResult:
        res = run_one(job, opts, busybox=boxes.get(job.arch, given), **kw)
        if on_done:
            on_done(res)
        return res

    # Ctrl-C/SIGTERM: parallel_map cancels every worker's QEMU and refuses new ones
    return parallel_map(one, jobs, parallel)


def vermagic_release(ko: Path) -> str:
    """The release a module was built for (first word of its vermagic)."""
    info = moddeps.modinfo(moddeps.decompress(ko.read_bytes(), str(ko)), str(ko))
    magic = (info.get("vermagic") or [""])[0].split()
    if not magic:
        raise UsageError(f"{ko} has no vermagic", "pass --kernel SPEC")
    return magic[0]


def jobs_from_builds(builds: Sequence, project: Path, mirror: str | None = None
                     ) -> tuple[list[KernelTest], list[TestResult]]:
    """KernelTests for kernels whose build produced modules; error results for the others."""
    jobs: list[KernelTest] = []
    failed: list[TestResult] = []
    for b in builds:
        t = b.target
        if b.built and b.modules and any(j.release == t.release for j in jobs):
            continue  # two specs for one release: one boot (they share the output dir)
        if b.excluded is not None and not b.error:
            continue  # dkms.conf's BUILD_EXCLUSIVE_* rules this kernel out: nothing to test
        if b.built and b.modules:
            jobs.append(KernelTest(t.spec, t.release, tuple(b.modules), b.outdir, t.suite,
                                   mirror))
        else:
            why = f"{b.why_failed()}; log: {b.log_path}"
            failed.append(TestResult(t.spec, t.release, "error", error=f"not tested: {why}"))
    return jobs, failed


def parse_params(pairs: Sequence[str], defaults: dict[str, str] | None = None) -> tuple[str, ...]:
    """kmod.toml's [test] params, overridden by --param k=v, as insmod arguments."""
    params = dict(defaults or {})
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key or not key.replace("_", "a").replace(".", "a").isalnum():
            raise UsageError(f"--param {p!r} is not NAME=VALUE", "e.g. --param debug=1")
        params[key] = value
    return tuple(f"{k}={v}" for k, v in params.items())
