"""`kmod-py test` end to end: real modules built on the host, booted in Debian's kernel in QEMU.

Boots are the expensive part: the negatives share one parallel run (-j 2); every other
boot asserts several things. The unit tests at the top need no QEMU.
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import pytest
import zstandard
from conftest import require, run_kmod_py
from typer.testing import CliRunner

from kbuild_py.boot import deps as moddeps
from kbuild_py.boot import run as tr
from kbuild_py.boot.verdict import parse_console
from kbuild_py.cli import app
from kbuild_py.errors import UsageError
from kbuild_py.report import test as report_test
from kbuild_py.seams import qemu

DATA = Path(__file__).parent / "data" / "console"
runner = CliRunner()

# --- unit ---------------------------------------------------------------------------------


def test_params_merge_project_defaults_and_reject_garbage() -> None:
    assert tr.parse_params(["b=2", "c=x y"], {"a": "1", "b": "0"}) == ("a=1", "b=2", "c=x y")
    for bad in ("novalue", "=1", "a b=1"):
        with pytest.raises(UsageError):
            tr.parse_params([bad])


def test_module_names_and_decompression_by_magic() -> None:
    assert moddeps.module_name("/x/crc-itu-t.ko.xz") == "crc_itu_t"
    assert moddeps.module_name("a,b.ko.zst") == "a_b"
    elf = b"\x7fELF" + bytes(range(256)) * 4
    for packed in (lzma.compress(elf), gzip.compress(elf),
                   zstandard.ZstdCompressor().compress(elf), elf):
        assert moddeps.decompress(packed) == elf


def test_modules_under_test_load_after_the_ones_they_need() -> None:
    needs = {"user": ["prov", "crc-itu-t"], "prov": [], "solo": ["libcrc32c"]}
    assert tr.load_order(needs) == ["prov", "user", "solo"]
    with pytest.raises(UsageError, match="a -> b -> a"):
        tr.load_order({"a": ["b"], "b": ["a"]})


def test_builds_become_jobs_or_error_results(tmp_path: Path) -> None:
    from kbuild_py.build.run import BuildResult, Diagnostic

    t = SimpleNamespace(spec="debian:bookworm", release="6.1.0-9-amd64", suite="bookworm")
    out = tmp_path / ".kmod-py" / "6.1.0-9-amd64"
    ok = BuildResult(target=t, outdir=out, log_path=out / "build.log", returncode=0,  # type: ignore[arg-type]
                     modules=[tmp_path / "m.ko"])
    bad = BuildResult(target=SimpleNamespace(spec="x", release="7.0-amd64", suite=None),  # type: ignore[arg-type]
                      outdir=tmp_path, log_path=tmp_path / "b.log", returncode=2, diagnostics=[
                          Diagnostic("error", "make: *** [Makefile:1: all] Error 2"),
                          Diagnostic("error", "m.o: error: objtool: init_module(): Magic",
                                     "m.o", None, "objtool")])
    excluded = BuildResult(target=SimpleNamespace(spec="y", release="2.6", suite=None),  # type: ignore[arg-type]
                           outdir=tmp_path, log_path=tmp_path / "c.log", returncode=0,
                           excluded="BUILD_EXCLUSIVE_KERNEL")
    jobs, failed = tr.jobs_from_builds([ok, bad, ok, excluded], tmp_path)  # one job per release
    assert jobs == [tr.KernelTest("debian:bookworm", "6.1.0-9-amd64", (tmp_path / "m.ko",),
                               out, "bookworm")]
    assert len(failed) == 1 and failed[0].status == "error"
    assert (failed[0].error or "").startswith("not tested: m.o: error: objtool: init_module()")


def test_separate_plan_and_its_verdict_without_a_guest() -> None:
    from kbuild_py.boot import guest
    from kbuild_py.boot.verdict import parse_console

    plan = guest.GuestPlan((guest.GuestModule("a", "a.ko.gz"),
                            guest.GuestModule("b", "b.ko.gz", requires=("a",))), separate=True)
    script = guest.init_script(plan)
    assert "m group b begin" in script and "step require a insmod /lib/kmod-py/test/a.ko.gz" in (
        script)
    M = guest.MARK
    log = "\n".join([
        f"{M} init - 1.0", f"{M} release - 6.1.0-9-amd64", f"{M} taint before 0",
        f"{M} group a begin", f"{M} begin insmod a", f"{M} kmsg insmod a [1.1] a: hi",
        f"{M} end insmod a 0", f"{M} sysfs a present", f"{M} begin rmmod a", f"{M} end rmmod a 0",
        f"{M} group a end", f"{M} group b begin", f"{M} begin require a", f"{M} end require a 0",
        f"{M} begin insmod b", f"{M} out insmod b insmod: can't insert 'b.ko.gz': "
        "Unknown error 517", f"{M} kmsg insmod b [1.2] b: unknown parameter 'x' ignored",
        f"{M} kmsg insmod b [1.3] BUG: kernel NULL pointer dereference, address: 0",
        f"{M} end insmod b 1", f"{M} sysfs b absent",
        f"{M} skipped b 'rmmod skipped: it or a module it needs did not load'",
        f"{M} begin unrequire a", f"{M} end unrequire a 0", f"{M} group b end",
        f"{M} taint loaded 12288", f"{M} taint end 12288", f"{M} done - 2.0",
    ])
    v = parse_console(log, ["a", "b"])
    assert v.status == "fail" and v.groups == ["a", "b"]
    assert v.module_problems["a"] == []
    assert "(-EPROBE_DEFER)" in v.module_problems["b"][0]
    assert not any("does not exist" in p for p in v.module_problems["b"])  # it never loaded
    assert any("kernel reported: BUG: kernel NULL" in p for p in v.module_problems["b"])
    assert v.skipped == [("b", "rmmod skipped: it or a module it needs did not load")]
    assert v.warnings == ["b: the kernel ignored unknown parameter 'x'"]
    junit = report_test.to_junit([tr.TestResult("k", "6.1.0-9-amd64", v.status, verdict=v,
                                                 modules=["a", "b"])])
    assert 'tests="2" failures="1"' in junit and 'classname="kmod-py.test.b"' in junit


def _result(log: str, module: str, **kw) -> tr.TestResult:  # type: ignore[no-untyped-def]
    v = parse_console((DATA / log).read_text(), [module], **kw)
    return tr.TestResult("debian:bookworm", "6.1.0-56-amd64", v.status, verdict=v, accel="tcg",
                      seconds=4.2, modules=[module])


def test_json_junit_and_summary_from_real_logs() -> None:
    results = [_result("6.1-crc-dep.log", "kmodpy_crc"), _result("6.1-oops.log", "kmodpy_oops"),
               _result("6.1-hang-timeout.log", "kmodpy_hang", timed_out=True, timeout=12),
               tr.TestResult("image:x", "7.0-amd64", "error", error="no kernel image")]
    data = json.loads(report_test.to_json(results))
    assert [d["result"] for d in data] == ["pass", "fail", "timeout", "error"]
    assert data[0]["taint_flags"] == "OE"
    assert data[0]["steps"][1]["step"] == "insmod" and data[0]["steps"][1]["exit"] == 0
    suite = ET.fromstring(report_test.to_junit(results))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")
    cases = suite.findall("testcase")
    assert cases[0].find("failure") is None
    assert "NULL pointer" in cases[1].find("failure").get("message")
    assert cases[2].find("failure").get("type") == "timeout"
    table = report_test.summary_table(results).splitlines()
    assert table[0].split() == ["KERNEL", "RELEASE", "RESULT", "TIME", "ACCEL", "LOAD",
                                "UNLOAD", "TAINT"]
    assert table[2].split()[2:] == ["PASS", "4.2", "s", "tcg", "ok", "ok", "OE"]
    assert "hung" in table[4]
    text = "\n".join(report_test.render_result(results[1], color=False))
    assert "more kernel lines" in text and "log excerpt:" in text


def test_prebuilt_module_of_another_file_type_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.ko"
    bogus.write_bytes(b"not an elf")
    res = runner.invoke(app, ["test", "--ko", str(bogus)])
    assert res.exit_code == 2 and "not an ELF kernel module" in res.output


# --- QEMU tier ----------------------------------------------------------------------------

SOURCES = {
    "kmodpy_nodev": """
static int __init t_init(void) { pr_info("kmodpy_nodev: no device here\\n"); return -ENODEV; }
""",
    "kmodpy_oops": """
static int *target;
static int __init t_init(void)
{
\tpr_info("kmodpy_oops: about to dereference NULL\\n");
\t*READ_ONCE(target) = 1;
\treturn 0;
}
""",
    "kmodpy_crc": """
#include <linux/crc-itu-t.h>
static int __init t_init(void)
{
\tstatic const u8 check[] = "123456789";
\tpr_info("kmodpy_crc: crc_itu_t=%04x\\n", crc_itu_t(0, check, 9));
\treturn 0;
}
""",
    "kmodpy_hang": """
#include <linux/delay.h>
static int __init t_init(void)
{
\tpr_info("kmodpy_hang: never returning\\n");
\tfor (;;)
\t\tmsleep(1000);
\treturn 0;
}
""",
    "kmodpy_param": """
static int answer = 1;
module_param(answer, int, 0444);
static int __init t_init(void) { pr_info("kmodpy_param: answer=%d\\n", answer); return 0; }
""",
    "kmodpy_defer": """
static int __init t_init(void) { pr_info("kmodpy_defer: not yet\\n"); return -517; }
""",
    "kmodpy_prov": """
int kmodpy_prov_answer(void) { return 42; }
EXPORT_SYMBOL_GPL(kmodpy_prov_answer);
static int __init t_init(void) { pr_info("kmodpy_prov: ready\\n"); return 0; }
""",
    "kmodpy_user": """
int kmodpy_prov_answer(void);
static int __init t_init(void)
{
\tpr_info("kmodpy_user: answer=%d\\n", kmodpy_prov_answer());
\treturn 0;
}
""",
}
TAIL = """
static void __exit t_exit(void) { pr_info("%s: bye\\n", KBUILD_MODNAME); }
module_init(t_init);
module_exit(t_exit);
MODULE_LICENSE("GPL");
"""


@pytest.fixture(scope="session")
def modules(tmp_path_factory: pytest.TempPathFactory, host_kdir: Path) -> dict[str, Path]:
    require(shutil.which("make") is not None, "make")
    d = tmp_path_factory.mktemp("negatives")
    for name, body in SOURCES.items():
        (d / f"{name}.c").write_text("#include <linux/module.h>\n" + body + TAIL)
    (d / "Kbuild").write_text("obj-m := " + " ".join(f"{n}.o" for n in SOURCES) + "\n")
    subprocess.run(["make", "-C", str(host_kdir), f"M={d}", "modules"],
                   check=True, capture_output=True, timeout=600)
    return {n: d / f"{n}.ko" for n in SOURCES}


@pytest.fixture(scope="session")
def image(host_release: str):  # type: ignore[no-untyped-def]
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86_64 (qemu-system-x86)")
    from kbuild_py.debian.linuximage import fetch_kernel

    return fetch_kernel(host_release)


def qemus_under(path: Path) -> list[int]:
    """PIDs of QEMU processes whose command line mentions `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and b"qemu-system" in cmd[0] and any(str(path).encode() in a for a in cmd):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="session")
def negatives(modules, image, tmp_path_factory):  # type: ignore[no-untyped-def]
    """hang (30 s timeout) overlaps nodev, oops and crc: one -j 2 run."""
    out = tmp_path_factory.mktemp("negatives-run")
    names = ["kmodpy_hang", "kmodpy_nodev", "kmodpy_oops", "kmodpy_crc"]
    jobs = [tr.KernelTest(n, image.release, (modules[n],), out / n) for n in names]
    start = time.monotonic()
    results = tr.run_all(jobs, tr.TestOptions(timeout=30), parallel=2)
    return {r.label: r for r in results}, out, time.monotonic() - start




@pytest.mark.qemu
@pytest.mark.headers
def test_dependency_on_in_kernel_module_loads_through_it(negatives) -> None:  # type: ignore[no-untyped-def]
    r = negatives[0]["kmodpy_crc"]
    assert r.status == "pass", r.verdict.problems if r.verdict else r.error
    assert r.deps == ["crc_itu_t"] and r.verdict.step("dep", "crc_itu_t").rc == 0
    assert any("crc_itu_t=31c3" in k for k in r.verdict.step("insmod", "kmodpy_crc").kernel)
    assert r.verdict.taint_text == "OE"
    assert r.console == negatives[1] / "kmodpy_crc" / "test-console.log" and r.console.is_file()


@pytest.mark.qemu
@pytest.mark.headers
def test_init_returning_enodev_is_a_load_failure_with_the_error(negatives) -> None:  # type: ignore[no-untyped-def]
    r = negatives[0]["kmodpy_nodev"]
    assert r.status == "fail"
    assert r.verdict.problems[0].startswith("insmod kmodpy_nodev failed")
    assert "No such device (-ENODEV)" in r.verdict.problems[0]
    assert r.verdict.sysfs["kmodpy_nodev"] == "absent"
    init = r.verdict.step("insmod", "kmodpy_nodev").kernel
    assert sum("no device here" in k for k in init) == 1  # init ran once


@pytest.mark.qemu
@pytest.mark.headers
def test_null_dereference_in_init_is_reported_with_the_oops(negatives) -> None:  # type: ignore[no-untyped-def]
    r = negatives[0]["kmodpy_oops"]
    assert r.status == "fail"
    assert any(p.startswith("kernel reported: BUG: kernel NULL pointer dereference")
               for p in r.verdict.problems)
    excerpt = "\n".join(r.verdict.excerpt)
    assert "Oops:" in excerpt and "kmodpy_oops" in excerpt and "Call Trace:" in excerpt


@pytest.mark.qemu
@pytest.mark.headers
def test_init_that_never_returns_times_out_and_leaves_no_qemu(negatives) -> None:  # type: ignore[no-untyped-def]
    results, out, wall = negatives
    r = results["kmodpy_hang"]
    assert r.status == "timeout"
    assert r.verdict.problems[0].startswith("timed out after 30 s: insmod kmodpy_hang never")
    assert 25 < r.seconds < 40
    assert not qemus_under(out), "a QEMU outlived its test run"
    assert wall < 120  # the other three ran alongside the 30 s hang


@pytest.mark.qemu
@pytest.mark.headers
def test_param_and_script_pass_and_a_failing_script_fails(modules, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good, bad = tmp_path / "good.sh", tmp_path / "bad.sh"
    good.write_text('v=$(cat /sys/module/kmodpy_param/parameters/answer)\necho "got $v"\n'
                    '[ "$v" = 42 ]\n')
    bad.write_text("echo 'device missing' >&2\nexit 3\n")
    job = tr.KernelTest("p", image.release, (modules["kmodpy_param"],), tmp_path / "p")
    r = tr.run_one(job, tr.TestOptions(params=("answer=42",), script=good, timeout=60))
    assert r.status == "pass", r.verdict.problems if r.verdict else r.error
    assert r.verdict.step("script", "-").output == ["got 42"]
    assert any("answer=42" in k for k in r.verdict.step("insmod", "kmodpy_param").kernel)
    assert any("bye" in k for k in r.verdict.step("rmmod", "kmodpy_param").kernel)
    r = tr.run_one(job, tr.TestOptions(script=bad, timeout=60))
    assert r.status == "fail" and r.verdict.problems == ["script exited 3: device missing"]
    assert r.verdict.step("rmmod", "kmodpy_param").rc == 0  # still unloaded cleanly


@pytest.mark.qemu
@pytest.mark.headers
def test_two_modules_under_test_load_in_dependency_order(modules, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = tr.KernelTest("pair", image.release, (modules["kmodpy_user"], modules["kmodpy_prov"]),
                     tmp_path / "pair")
    r = tr.run_one(job, tr.TestOptions(timeout=60))
    assert r.status == "pass", r.verdict.problems if r.verdict else r.error
    assert r.modules == ["kmodpy_prov", "kmodpy_user"] and r.deps == []
    # each on its own: the user loads with its provider around it, and both are judged apart
    steps = [(s.group, s.kind, s.name) for s in r.verdict.steps]
    assert steps == [("kmodpy_prov", "insmod", "kmodpy_prov"),
                     ("kmodpy_prov", "rmmod", "kmodpy_prov"),
                     ("kmodpy_user", "require", "kmodpy_prov"),
                     ("kmodpy_user", "insmod", "kmodpy_user"),
                     ("kmodpy_user", "rmmod", "kmodpy_user"),
                     ("kmodpy_user", "unrequire", "kmodpy_prov")]
    assert r.verdict.module_problems == {"kmodpy_prov": [], "kmodpy_user": []}
    assert any("answer=42" in k for k in r.verdict.step("insmod", "kmodpy_user").kernel)


@pytest.mark.qemu
@pytest.mark.headers
def test_each_module_is_judged_on_its_own(modules, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = tr.KernelTest("three", image.release, tuple(
        modules[n] for n in ("kmodpy_param", "kmodpy_defer", "kmodpy_oops")), tmp_path / "three")
    r = tr.run_one(job, tr.TestOptions(timeout=90, params=("nosuch=1",)))
    v = r.verdict
    assert r.status == "fail" and v is not None, r.error
    assert v.module_problems["kmodpy_param"] == []
    assert "-EPROBE_DEFER" in v.module_problems["kmodpy_defer"][0]
    assert any("kernel reported" in p for p in v.module_problems["kmodpy_oops"])
    assert ("kmodpy_defer", "rmmod skipped: it did not load") in v.skipped
    assert "kmodpy_param: the kernel ignored unknown parameter 'nosuch'" in v.warnings
    text = "\n".join(report_test.render_result(r, color=False))
    assert "module kmodpy_param: ok" in text and "module kmodpy_defer: FAIL" in text
    assert "skipped kmodpy_defer: rmmod skipped" in text
    # --module picks one: only it is loaded
    only = tr.run_one(job, tr.TestOptions(timeout=60, modules=("kmodpy_param",)))
    assert only.status == "pass" and only.modules == ["kmodpy_param"], only.verdict


@pytest.mark.qemu
@pytest.mark.headers
def test_dependencies_resolve_through_the_kernels_tree(image, modules) -> None:  # type: ignore[no-untyped-def]
    tree = moddeps.ModuleTree(image.module_files(), image.release)
    builtin = moddeps.builtin_names(image.modules_dir)
    order = [d.name for d in tree.resolve(["ext4"], builtin)]
    assert order[-1] == "ext4" and {"jbd2", "mbcache"} <= set(order)
    with pytest.raises(UsageError, match="not in kernel"):
        tree.resolve(["no_such_module_xyz"])
    assert tr.vermagic_release(modules["kmodpy_crc"]) == image.release
    busybox = tr.find_busybox()
    prep = tr.prepare([modules["kmodpy_crc"]], image, tr.TestOptions(), busybox)
    dep = prep.files["lib/kmod-py/deps/crc_itu_t.ko.gz"]
    assert isinstance(dep, bytes) and gzip.decompress(dep).startswith(b"\x7fELF")
    assert [m.name for m in prep.plan.deps] == ["crc_itu_t"]


@pytest.mark.qemu
@pytest.mark.headers
def test_cli_prebuilt_scaffolded_module_json_and_junit(  # type: ignore[no-untyped-def]
    built_hello, host_release, tmp_path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    junit = tmp_path / "junit.xml"
    # a .ko outside .kmod-py/: the console log goes under the cwd
    res = run_kmod_py(["test", "--ko", built_hello, "--kernel", host_release,
                       "--json", "--junit", junit], cwd=work)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data[0]["result"] == "pass" and data[0]["taint_flags"] == "OE"
    steps = {s["step"]: s for s in data[0]["steps"]}
    assert any("hello_module: loaded" in k for k in steps["insmod"]["kernel"])
    assert any("hello_module: unloaded" in k for k in steps["rmmod"]["kernel"])
    assert data[0]["sysfs"] == {"hello_module": "present"}
    log = work / ".kmod-py" / host_release / "test-console.log"
    assert not (built_hello.parent / ".kmod-py").exists()
    assert log.is_file() and "Bye" not in log.read_text() and "unloaded" in log.read_text()
    assert ET.parse(junit).getroot().get("failures") == "0"


@pytest.mark.qemu
@pytest.mark.headers
def test_cli_builds_the_project_then_boots_it(scaffold, host_release) -> None:  # type: ignore[no-untyped-def]
    project = scaffold("hello_module")
    toml = project / "kmod.toml"
    assert '# script = "tests/smoke.sh"' in toml.read_text()
    toml.write_text(toml.read_text().replace('# script = "tests/smoke.sh"',
                                             'script = "tests/smoke.sh"'))
    (project / "tests").mkdir()
    (project / "tests" / "smoke.sh").write_text(
        "test -d /sys/module/hello_module/sections && echo smoke ok\n")
    res = run_kmod_py(["test", project, "--kernel", host_release])
    assert res.exit_code == 0, res.output
    assert f"PASS    {host_release}" in res.output and "taint OE" in res.output
    assert "script: ok" in res.output and "| smoke ok" in res.output  # [test] script
    assert "hello_module: loaded" in res.output and "hello_module: unloaded" in res.output
    assert (project / ".kmod-py" / host_release / "test-console.log").is_file()


@pytest.mark.qemu
@pytest.mark.headers
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signal_kills_the_guest(  # type: ignore[no-untyped-def]
        modules, image, tmp_path, sig, kmod_py_bin) -> None:
    ko = tmp_path / "kmodpy_hang.ko"
    shutil.copy(modules["kmodpy_hang"], ko)
    console = tmp_path / ".kmod-py" / image.release / "test-console.log"
    proc = subprocess.Popen([str(kmod_py_bin), "test", "--ko", str(ko),
                             "--kernel", image.release, "--timeout", "300"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if console.is_file() and "begin insmod kmodpy_hang" in console.read_text("utf-8",
                                                                                      "replace"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the guest never reached insmod")
        assert qemus_under(tmp_path)
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc != 0
    time.sleep(0.5)
    assert not qemus_under(tmp_path), "QEMU outlived kmod-py"


@pytest.mark.qemu
@pytest.mark.docker
def test_scaffolded_module_passes_on_three_debian_kernels(scaffold, debian_targets) -> None:  # type: ignore[no-untyped-def]
    """The issue's acceptance run: build in the three kernel-headers containers, boot each."""
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86_64 (qemu-system-x86)")
    specs = ["debian:bookworm", "debian:trixie", "debian:trixie-backports"]
    project = scaffold("hello_module")
    res = run_kmod_py(["test", project, *[a for s in specs for a in ("-k", s)],
                       "-j", "2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["kernel"] for d in data] == specs
    for d in data:
        assert d["release"] == debian_targets[d["kernel"]].release
        assert d["result"] == "pass" and d["taint_flags"] == "OE"
        assert d["guest_release"] == d["release"]
        steps = {s["step"]: s for s in d["steps"]}
        assert any("hello_module: loaded" in k for k in steps["insmod"]["kernel"])
        assert any("hello_module: unloaded" in k for k in steps["rmmod"]["kernel"])
        assert (project / d["console_log"]).is_file()
    # 6.12 and 7.x ship .ko.xz: in-kernel dependencies decompress in Python for busybox insmod
    from kbuild_py.debian.linuximage import fetch_kernel

    newest = fetch_kernel(data[-1]["release"], "trixie-backports")
    deps = moddeps.ModuleTree(newest.module_files(), newest.release).resolve(
        ["ext4"], moddeps.builtin_names(newest.modules_dir))
    assert deps[-1].name == "ext4" and deps[-1].path.name.endswith((".ko.xz", ".ko.zst"))
    assert all(d.elf().startswith(b"\x7fELF") for d in deps)


PARALLEL_SCRIPT = """
import signal, sys
from pathlib import Path
from kbuild_py.boot import run as tr

def stop(*_):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, stop)
ko, release, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
jobs = [tr.KernelTest(n, release, (ko,), out / n) for n in ("a", "b", "c")]
tr.run_all(jobs, tr.TestOptions(timeout=300, accel="tcg"), parallel=2)
"""


@pytest.mark.qemu
@pytest.mark.headers
def test_sigterm_during_parallel_boots_kills_every_guest(  # type: ignore[no-untyped-def]
        modules, image, tmp_path, kmod_py_bin) -> None:
    python = kmod_py_bin.parent / "python"  # the installed kbuild_py
    proc = subprocess.Popen([str(python), "-c", PARALLEL_SCRIPT, str(modules["kmodpy_hang"]),
                             image.release, str(tmp_path)])
    try:
        logs = [tmp_path / n / "test-console.log" for n in ("a", "b")]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(p.is_file() and "begin insmod" in p.read_text("utf-8", "replace")
                   for p in logs):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the two guests never reached insmod")
        assert len(qemus_under(tmp_path)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    assert not qemus_under(tmp_path), "a worker's QEMU outlived the interrupted run"
    assert not (tmp_path / "c" / "test-console.log").exists(), "a guest started after SIGTERM"


def test_missing_kernel_image_is_an_error_result(tmp_path: Path) -> None:
    from kbuild_py.errors import MirrorError

    def no_image(release: str, suite: str | None, mirror: str | None):  # type: ignore[no-untyped-def]
        raise MirrorError(f"package linux-image-{release} not found", "check the release")

    job = tr.KernelTest("x", "9.9.9-amd64", (tmp_path / "m.ko",), tmp_path / "out")
    r = tr.run_one(job, tr.TestOptions(), fetch=no_image, busybox=Path("/bin/busybox"))
    assert r.status == "error" and r.verdict is None
    assert r.error == "package linux-image-9.9.9-amd64 not found (hint: check the release)"


class BrokenQemu:
    def run(self, argv, console, *, timeout, silence_deadline=None, on_output=None):  # type: ignore[no-untyped-def]
        console.write_text("")
        return qemu.RunOutcome(1, 0.1, stderr="qemu-system-x86_64: could not load kernel\n")


@pytest.mark.qemu
@pytest.mark.headers
def test_qemu_that_cannot_start_is_an_error_not_a_verdict(modules, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = tr.KernelTest("x", image.release, (modules["kmodpy_crc"],), tmp_path / "out")
    r = tr.run_one(job, tr.TestOptions(accel="tcg"), vm=BrokenQemu())
    assert r.status == "error"
    assert r.error == "QEMU exited 1: qemu-system-x86_64: could not load kernel"
    # the initramfs handed to QEMU holds busybox, the gzipped module and its dependency
    from test_boot_initramfs import read_newc

    names = {e["name"] for e in read_newc((tmp_path / "out" / tr.INITRAMFS).read_bytes())}
    assert {"init", "bin/busybox", "dev/console", "lib/kmod-py/test/kmodpy_crc.ko.gz",
            "lib/kmod-py/deps/crc_itu_t.ko.gz"} <= names


def test_cli_junit_path_not_writable_is_refused_before_booting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["test", "--ko", str(tmp_path / "x.ko"), "--junit", str(tmp_path)])
    assert res.exit_code == 2
    assert "cannot write --junit" in res.output


@pytest.mark.parametrize("extra", [["--ko", "missing.ko"], ["--script", "missing.sh"],
                                   ["--script", "."], ["--timeout", "0"], ["--timeout", "-5"]])
def test_cli_unusable_inputs_exit_2_before_booting(tmp_path, monkeypatch, extra) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.ko").write_bytes(b"")
    res = runner.invoke(app, ["test", "--ko", "m.ko", "-k", "6.1.0-56-amd64", *extra])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "internal error" not in res.output


def _elf_header(machine: int) -> bytes:
    """A bare 64-bit little-endian ELF header (ET_EXEC) for `machine` (62 x86-64, 183 aarch64)."""
    import struct

    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0)


def test_busybox_of_another_architecture_is_not_used(tmp_path: Path) -> None:
    """An arm64 busybox handed to an amd64 kernel would fail as 'Failed to execute /init
    (error -8)': each architecture gets its own."""
    require(Path("/bin/busybox").is_file(), "busybox-static")
    arm = tmp_path / "busybox-arm64"
    arm.write_bytes(_elf_header(183))
    assert tr._elf_machine(arm) == "EM_AARCH64"
    assert tr._busybox_for(arm, "arm64") == arm
    assert tr._busybox_for(arm, "amd64") == Path("/bin/busybox")
    fake = tmp_path / "not-an-elf"
    fake.write_text("#!/bin/sh\n")
    assert tr._busybox_for(fake, "amd64") == fake  # fakes in unit tests pass through
