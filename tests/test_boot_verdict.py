"""The guest's /init script and the console-log verdict.

tests/data/console/*.log are real serial console logs of Debian's 6.1 kernel booted by
`kmod-py test` under TCG with the negative modules of test_boot_run.py.
"""

from __future__ import annotations

from pathlib import Path

from kbuild_py.boot.guest import GuestModule, GuestPlan, init_script
from kbuild_py.boot.verdict import Verdict, parse_console, taint_letters

DATA = Path(__file__).parent / "data" / "console"


def kernel_lines(v: Verdict, kind: str, name: str) -> list[str]:
    """The kernel log lines attributed to one guest step."""
    s = v.step(kind, name)
    return s.kernel if s else []


def log(name: str) -> str:
    return (DATA / name).read_text()


def test_taint_letters_follow_the_kernels_bit_order() -> None:
    assert taint_letters(0) == ""
    assert taint_letters(0x3000) == "OE"
    assert taint_letters(0x3080) == "DOE"
    assert taint_letters(1) == "P"
    assert taint_letters(1 << 18) == "N"
    assert taint_letters(1 << 25).startswith("+0x")


def test_init_script_orders_steps_and_quotes_params() -> None:
    plan = GuestPlan(
        modules=[GuestModule("a", "a.ko", ("x=1", "msg=hello world")), GuestModule("b", "b.ko")],
        deps=[GuestModule("crc_itu_t", "crc_itu_t.ko")],
        script=True,
    )
    s = init_script(plan)
    assert s.startswith("#!/bin/busybox sh\n")
    order = [s.index(x) for x in (
        "step dep crc_itu_t insmod /lib/kmod-py/deps/crc_itu_t.ko",
        "step insmod a insmod /lib/kmod-py/test/a.ko x=1 'msg=hello world'",
        "step insmod b ",
        "step script - sh /kmod-py-script",
        "step rmmod b rmmod b",
        "step rmmod a rmmod a",
        "poweroff -f",
    )]
    assert order == sorted(order)
    assert "[ -d /sys/module/a ]" in s and "/proc/sys/kernel/tainted" in s
    assert "kmod-py-script" not in init_script(GuestPlan([GuestModule("a", "a.ko")]))


def test_real_pass_with_in_kernel_dependency() -> None:
    v = parse_console(log("6.1-crc-dep.log"), ["kmodpy_crc"])
    assert v.status == "pass", v.problems
    assert v.release == "6.1.0-56-amd64" and 0 < (v.init_uptime or 0) < 30
    assert v.step("dep", "crc_itu_t").rc == 0
    assert any("crc_itu_t=31c3" in k for k in kernel_lines(v, "insmod", "kmodpy_crc"))
    assert any("bye" in k for k in kernel_lines(v, "rmmod", "kmodpy_crc"))
    assert v.sysfs == {"kmodpy_crc": "present"}
    assert v.taint_text == "OE" and v.finished and not v.excerpt


def test_real_param_and_script() -> None:
    v = parse_console(log("6.1-param-script.log"), ["kmodpy_param"])
    assert v.passed
    assert any("answer=42" in k for k in kernel_lines(v, "insmod", "kmodpy_param"))
    assert v.step("script", "-").output == ["answer is 42"] and v.step("script", "-").rc == 0


def test_real_init_returning_enodev() -> None:
    v = parse_console(log("6.1-nodev.log"), ["kmodpy_nodev"])
    assert v.status == "fail"
    assert v.step("insmod", "kmodpy_nodev").rc != 0
    assert v.problems[0].startswith("insmod kmodpy_nodev failed")
    assert "No such device (-ENODEV)" in v.problems[0]
    assert "verification failed" not in v.problems[0]  # a taint note, not the reason
    assert v.sysfs["kmodpy_nodev"] == "absent"
    assert v.step("rmmod", "kmodpy_nodev") is None and v.finished
    # the init ran once (busybox's init_module retry is defused), our loader trick is hidden
    init_lines = kernel_lines(v, "insmod", "kmodpy_nodev")
    assert sum("no device here" in k for k in init_lines) == 1
    assert "Invalid ELF header magic" in log("6.1-nodev.log")
    assert not any("Invalid ELF" in k for k in init_lines)


def test_real_null_dereference_oops() -> None:
    v = parse_console(log("6.1-oops.log"), ["kmodpy_oops"])
    assert v.status == "fail"
    assert v.step("insmod", "kmodpy_oops").rc == 137  # insmod killed by the oops
    assert "kernel reported: BUG: kernel NULL pointer dereference" in "\n".join(v.problems)
    text = "\n".join(v.excerpt)
    assert "BUG: kernel NULL pointer dereference" in text and "Oops:" in text
    assert "kmodpy_oops_init" in text and "Call Trace:" in text
    assert "D" in v.taint_text  # TAINT_DIE


def test_real_timeout() -> None:
    v = parse_console(log("6.1-hang-timeout.log"), ["kmodpy_hang"], timed_out=True, timeout=12)
    assert v.status == "timeout"
    assert v.problems[0] == "timed out after 12 s: insmod kmodpy_hang never returned (QEMU killed)"
    assert any("never returning" in x for x in v.excerpt)
    assert not any("Linux version" in x for x in v.excerpt)  # the tail after /init


def _synthetic(*body: str) -> str:
    head = ["[    0.000000] Linux version 6.1.0-56-amd64",
            "@@kmod-py init - 1.50", "@@kmod-py release - 6.1.0-56-amd64",
            "@@kmod-py taint before 0"]
    return "\r\n".join(head + list(body)) + "\r\n"


def test_unknown_symbol_reason_comes_from_the_kernel() -> None:
    v = parse_console(_synthetic(
        "@@kmod-py begin insmod m",
        "[    1.600000] m: Unknown symbol crc_itu_t (err -2)",
        "@@kmod-py out insmod m insmod: can't insert '/lib/kmod-py/test/m.ko': "
        "unknown symbol in module, or unknown parameter",
        "@@kmod-py end insmod m 1",
        "@@kmod-py sysfs m absent", "@@kmod-py taint loaded 12288",
        "@@kmod-py taint end 12288", "@@kmod-py done - 1.7",
    ), ["m"])
    assert v.status == "fail"
    assert "m: Unknown symbol crc_itu_t (err -2)" in v.problems[0]


def test_warning_during_unload_and_module_left_behind_fail() -> None:
    v = parse_console(_synthetic(
        "@@kmod-py begin insmod m", "@@kmod-py end insmod m 0", "@@kmod-py sysfs m present",
        "@@kmod-py taint loaded 12288",
        "@@kmod-py begin rmmod m",
        "[    1.700000] WARNING: CPU: 0 PID: 90 at m.c:12 m_exit+0x5/0x10 [m]",
        "[    1.700001] Call Trace:",
        "@@kmod-py end rmmod m 0", "@@kmod-py sysfs-after m present",
        "@@kmod-py taint end 12800", "@@kmod-py done - 1.8",
    ), ["m"])
    assert v.status == "fail"
    assert any(p.startswith("kernel reported: WARNING: CPU: 0") for p in v.problems)
    assert "m is still in /sys/module after rmmod" in v.problems
    assert v.taint_text == "OE"  # taint after load; W came at unload
    assert taint_letters(v.taint_end or 0) == "WOE"


def test_kernel_that_never_reaches_init() -> None:
    text = ("[    0.9] VFS: Cannot open root device\r\n"
            "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    v = parse_console(text, ["m"])
    assert v.status == "fail"
    assert v.problems[0] == "the guest never reached /init (kernel did not boot)"
    assert any("Kernel panic" in p for p in v.problems)
    assert v.excerpt


def test_marker_glued_to_kernel_text_is_split() -> None:
    v = parse_console(_synthetic(
        "@@kmod-py begin insmod m",
        "[    1.6] m: hello@@kmod-py end insmod m 0",
        "@@kmod-py sysfs m present", "@@kmod-py taint loaded 4096",
        "@@kmod-py begin rmmod m", "@@kmod-py end rmmod m 0",
        "@@kmod-py taint end 4096", "@@kmod-py done - 1.8",
    ), ["m"])
    assert v.passed and v.step("insmod", "m").rc == 0
    assert kernel_lines(v, "insmod", "m") == ["[    1.6] m: hello"]
    assert v.taint_text == "O"


def test_stopped_guest_without_done_fails() -> None:
    v = parse_console(_synthetic("@@kmod-py begin insmod m", "@@kmod-py end insmod m 0"), ["m"])
    assert v.status == "fail" and "stopped before the test finished" in v.problems[-1]


def test_deferred_console_lines_are_attributed_by_the_kmsg_replay() -> None:
    """7.x prints the console from a thread: a step's kernel lines may reach the serial
    console after the step has ended; the step's kmsg replay keeps attribution exact."""
    v = parse_console(_synthetic(
        "@@kmod-py begin insmod m",
        "@@kmod-py kmsg insmod m [    1.500000] m: loading out-of-tree module taints kernel.",
        "@@kmod-py kmsg insmod m [    1.510000] m: loaded",
        "@@kmod-py end insmod m 0",
        "@@kmod-py sysfs m present", "@@kmod-py taint loaded 12288",
        "@@kmod-py begin rmmod m",
        "[    1.500000] m: loading out-of-tree module taints kernel.",  # deferred console copy
        "[    1.510000] m: loaded",
        "@@kmod-py kmsg rmmod m [    1.600000] m: unloaded",
        "@@kmod-py end rmmod m 0",
        "[    1.600000] m: unloaded",
        "@@kmod-py taint end 12288", "@@kmod-py done - 1.7",
    ), ["m"])
    assert v.status == "pass", v.problems
    insmod = kernel_lines(v, "insmod", "m")
    rmmod = kernel_lines(v, "rmmod", "m")
    assert any("m: loaded" in k for k in insmod)
    assert rmmod == ["[    1.600000] m: unloaded"]


def test_init_script_replays_each_steps_kernel_records() -> None:
    script = init_script(GuestPlan([GuestModule("m", "m.ko.gz")]))
    # each step clears the ring buffer before it runs and replays what it added (no wc/tail:
    # forks cost under TCG)
    assert script.count("dmesg -c") == 2 and "m kmsg" in script
    assert "read -r up _ </proc/uptime" in script and "$(cat /proc/sys/kernel/tainted)" in script


def test_guest_that_booted_another_release_fails() -> None:
    log = "\n".join(["@@kmod-py init - 1.50", "@@kmod-py release - 6.1.0-57-amd64",
                     "@@kmod-py taint before 0", "@@kmod-py taint loaded 0",
                     "@@kmod-py taint end 0", "@@kmod-py done - 2.0"])
    ok = parse_console(log, [], release="6.1.0-57-amd64")
    assert ok.status == "pass" and ok.problems == []
    v = parse_console(log, [], release="6.6.6-evil-amd64")
    assert v.status == "fail"
    assert v.problems == ["the guest booted kernel 6.1.0-57-amd64, not the target "
                          "6.6.6-evil-amd64: the kernel image is not the one asked for"]
    silent = parse_console(log.replace("@@kmod-py release - 6.1.0-57-amd64\n", ""), [],
                           release="6.6.6-evil-amd64")
    assert silent.problems[0].startswith("the guest booted kernel (unknown), not the target")


def test_real_sig_enforce_unsigned_module() -> None:
    """Debian 6.1 with module.sig_enforce=1: the gzipped first attempt's refusal is dropped,
    the real one counts, and the report says what to do."""
    v = parse_console(log("6.1-sig-enforce-unsigned.log"), ["hello_module"], sig_enforce=True)
    assert v.status == "fail"
    lines = kernel_lines(v, "insmod", "hello_module")
    assert [x.split("] ", 1)[-1] for x in lines] == ["Loading of unsigned module is rejected"]
    assert "Key was rejected by service (-EKEYREJECTED)" in v.problems[0]
    (hint,) = v.hints
    assert hint.startswith("hello_module rejected: unsigned module (module.sig_enforce=1)")
    assert "kmod-py build --sign" in hint and "mokutil --import" in hint
    # without enforcement the same log keeps both kernel lines and gives no signing hint
    plain = parse_console(log("6.1-sig-enforce-unsigned.log"), ["hello_module"])
    assert len(kernel_lines(plain, "insmod", "hello_module")) == 2 and plain.hints == []


def test_real_sig_enforce_module_signed_with_an_unknown_key() -> None:
    v = parse_console(log("6.1-sig-enforce-unknown-key.log"), ["hello_module"], sig_enforce=True)
    assert v.status == "fail"
    lines = [x.split("] ", 1)[-1] for x in kernel_lines(v, "insmod", "hello_module")]
    assert lines == ["Loading of module with unavailable key is rejected"]
    (hint,) = v.hints
    assert "signed with a key the kernel does not trust" in hint
    assert "CONFIG_SYSTEM_TRUSTED_KEYS" in hint


def test_sig_enforce_bad_signature_and_a_module_that_loads() -> None:
    bad = _synthetic(
        "@@kmod-py begin insmod m",
        "[    1.60] Loading of unsigned module is rejected",
        "@@kmod-py out insmod m insmod: can't insert '/lib/kmod-py/test/m.ko.gz': "
        "Key was rejected by service",
        "@@kmod-py end insmod m 1",
        "@@kmod-py sysfs m absent", "@@kmod-py done - 2.0",
    )  # fmt: skip
    v = parse_console(bad, ["m"], sig_enforce=True)
    assert v.hints and "signature does not verify" in v.hints[0]
    good = _synthetic(
        "@@kmod-py begin insmod m",
        "[    1.60] Loading of unsigned module is rejected",
        "[    1.70] m: loaded",
        "@@kmod-py end insmod m 0",
        "@@kmod-py sysfs m present",
        "@@kmod-py begin rmmod m", "@@kmod-py end rmmod m 0",
        "@@kmod-py sysfs-after m absent", "@@kmod-py taint end 4096", "@@kmod-py done - 2.0",
    )  # fmt: skip
    v = parse_console(good, ["m"], sig_enforce=True)
    assert v.status == "pass" and v.hints == []
    assert kernel_lines(v, "insmod", "m") == ["[    1.70] m: loaded"]


def test_every_marker_the_script_prints_has_a_handler() -> None:
    """guest.Marker is the protocol: the script uses only its kinds, the parser handles all."""
    import re

    from kbuild_py.boot import verdict
    from kbuild_py.boot.guest import Marker, StepKind

    assert set(verdict._HANDLERS) == set(Marker)
    plan = GuestPlan((GuestModule("a", "a.ko.gz"), GuestModule("b", "b.ko.gz", requires=("a",))),
                     (GuestModule("d", "d.ko.gz"),), script=True)
    marks: set[str] = set()
    for p in (plan, GuestPlan(plan.modules, plan.deps, script=True, separate=True)):
        script = init_script(p)
        marks |= set(re.findall(r"\bm (\S+) ", script))
        assert set(re.findall(r"\bstep (\w+) ", script)) <= set(StepKind)
    assert marks == set(Marker), marks ^ set(Marker)


def test_skipped_markers_are_reported() -> None:
    v = parse_console(_synthetic(
        "@@kmod-py begin insmod m", "insmod: can't insert '/lib/m.ko.gz': No such device",
        "@@kmod-py end insmod m 1", "@@kmod-py sysfs m absent", "@@kmod-py taint loaded 0",
        "@@kmod-py skipped m 'rmmod skipped: a module did not load'",
        "@@kmod-py taint end 0", "@@kmod-py done - 2.0"), ["m"])
    assert v.status == "fail"
    assert v.skipped == [("m", "rmmod skipped: a module did not load")]


def test_unknown_marker_is_ignored() -> None:
    v = parse_console(_synthetic("@@kmod-py frobnicate x y", "@@kmod-py taint end 0",
                                 "@@kmod-py done - 2.0"), [])
    assert v.status == "pass"


def test_problem_during_boot_before_any_module_is_a_warning() -> None:
    """A soft lockup while the kernel booted on a starved TCG host is not the module's."""
    v = parse_console(_synthetic(
        "[   24.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]",
        "[   24.1] Call Trace:",
        "@@kmod-py begin insmod m", "[   24.5] m: loading out-of-tree module taints kernel.",
        "@@kmod-py end insmod m 0", "@@kmod-py sysfs m present",
        "@@kmod-py taint loaded 28672",
        "@@kmod-py begin rmmod m", "@@kmod-py end rmmod m 0",
        "@@kmod-py sysfs-after m absent", "@@kmod-py taint end 28672",
        "@@kmod-py done - 25.0").replace("taint before 0", "taint before 16384"), ["m"])
    assert v.status == "pass", v.problems
    assert v.warnings == ["the kernel reported 'watchdog: BUG: soft lockup - CPU#0 stuck for "
                          "22s! [swapper/0:1]' during boot, before any module was loaded (host "
                          "overloaded?); not counted against the module"]
    assert v.taint_before == 16384
    assert v.taint_text == "OE (L before loading)"  # the module added O and E, not L


def test_problem_after_the_first_insmod_still_fails() -> None:
    v = parse_console(_synthetic(
        "[   20.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]",
        "@@kmod-py begin insmod m", "@@kmod-py end insmod m 0", "@@kmod-py sysfs m present",
        "[   24.6] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [insmod:60]",
        "@@kmod-py taint loaded 16384", "@@kmod-py begin rmmod m", "@@kmod-py end rmmod m 0",
        "@@kmod-py taint end 16384", "@@kmod-py done - 25.0"), ["m"])
    assert v.status == "fail"
    assert "kernel reported: watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [insmod:60]" \
        in v.problems
    assert v.taint_text == "L"  # set after loading: the module's


def test_boot_problem_of_a_guest_that_never_loaded_anything_fails() -> None:
    v = parse_console(_synthetic("[   20.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"),
                      ["m"])
    assert v.status == "fail"
    assert any("soft lockup" in p for p in v.problems)
