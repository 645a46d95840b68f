"""QEMU argv as data, the accelerator choice through a fake seam, and the real process seam
(HostQemu) driven with small stand-in programs: timeout, silence, console file, no leftovers."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from kbuild_py.errors import InfraError
from kbuild_py.seams import process, qemu
from kbuild_py.seams.qemu import BootResult, RunOutcome, VmSpec, boot, qemu_argv

SPEC = VmSpec(kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd.gz"))


def fell_back(res: BootResult) -> bool:
    return any("retried under TCG" in n for n in res.notes)


def test_argv_is_headless_diskless_networkless() -> None:
    argv = qemu_argv(SPEC)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-M") + 1] == "q35,accel=tcg"
    for flag in ("-nodefaults", "-no-reboot", "-no-user-config"):
        assert flag in argv
    assert argv[argv.index("-display") + 1] == "none"
    assert argv[argv.index("-serial") + 1] == "stdio"
    assert argv[argv.index("-net") + 1] == "none"
    assert argv[argv.index("-kernel") + 1] == "/k/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/k/initrd.gz"
    append = argv[argv.index("-append") + 1]
    assert "console=ttyS0" in append and "panic=-1" in append
    assert not any(a.startswith(("-hda", "-drive", "-netdev")) for a in argv)
    kvm = qemu_argv(VmSpec(SPEC.kernel, SPEC.initrd, accel="kvm", memory_mb=256, smp=2))
    assert kvm[kvm.index("-M") + 1] == "q35,accel=kvm"
    assert kvm[kvm.index("-m") + 1] == "256" and kvm[kvm.index("-smp") + 1] == "2"
    with pytest.raises(ValueError):
        qemu_argv(VmSpec(SPEC.kernel, SPEC.initrd, accel="hvf"))


class FakeQemu:
    """Plays back one outcome per call and records the argv and limits it got."""

    def __init__(self, *outcomes: RunOutcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[list[str], float, float | None]] = []

    def run(self, argv, console, *, timeout, silence_deadline=None, on_output=None):  # type: ignore[no-untyped-def]
        self.calls.append((list(argv), timeout, silence_deadline))
        return self.outcomes.pop(0)

    def accels(self) -> list[str]:
        return [a[a.index("-M") + 1].split("=")[1] for a, _, _ in self.calls]


@pytest.fixture(autouse=True)
def _fresh_kvm_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path / "cache"))
    qemu._kvm_hangs.clear()
    yield
    qemu._kvm_hangs.clear()


def test_auto_uses_kvm_when_it_works(tmp_path: Path) -> None:
    fake = FakeQemu(RunOutcome(0, 1.0, printed=True))
    res = boot(SPEC, tmp_path / "c.log", timeout=120, qemu=fake, kvm_ok=True)
    assert fake.accels() == ["kvm"] and res.accel == "kvm" and not fell_back(res)
    assert fake.calls[0][2] == qemu.KVM_SILENCE_DEADLINE


def test_silent_kvm_guest_is_retried_under_tcg_and_remembered(tmp_path: Path) -> None:
    fake = FakeQemu(RunOutcome(None, 4.0, silent=True), RunOutcome(0, 8.0, printed=True))
    res = boot(SPEC, tmp_path / "c.log", timeout=60, qemu=fake, kvm_ok=True)
    assert fake.accels() == ["kvm", "tcg"]
    assert res.accel == "tcg" and fell_back(res)
    assert "printed nothing" in res.notes[0] and "retried under TCG" in res.notes[0]
    assert fake.calls[1][1] <= 60 and fake.calls[1][2] is None  # TCG: no silence deadline
    # only the KVM probe pays for early console output
    assert "earlyprintk=serial" in fake.calls[0][0][-1]
    assert "earlyprintk" not in fake.calls[1][0][-1]
    assert qemu.kvm_known_silent()
    assert (Path(os.environ["KMOD_PY_CACHE"]) / "kvm-silent").is_file()
    # the next auto boot skips KVM (the real probe says /dev/kvm is usable or not: either way TCG)
    fake2 = FakeQemu(RunOutcome(0, 8.0, printed=True))
    res2 = boot(SPEC, tmp_path / "c.log", timeout=60, qemu=fake2)
    assert fake2.accels() == ["tcg"] and res2.notes


def test_kvm_crashing_before_any_output_falls_back(tmp_path: Path) -> None:
    fake = FakeQemu(RunOutcome(134, 0.1, printed=False), RunOutcome(0, 8.0, printed=True))
    res = boot(SPEC, tmp_path / "c.log", timeout=60, qemu=fake, kvm_ok=True)
    assert fake.accels() == ["kvm", "tcg"] and "exited with 134" in res.notes[0]


def test_tcg_and_no_kvm_never_try_kvm(tmp_path: Path) -> None:
    fake = FakeQemu(RunOutcome(0, 1.0, printed=True))
    assert boot(SPEC, tmp_path / "c", timeout=9, accel="tcg", qemu=fake, kvm_ok=True).accel == "tcg"
    fake = FakeQemu(RunOutcome(0, 1.0, printed=True))
    res = boot(SPEC, tmp_path / "c", timeout=9, qemu=fake, kvm_ok=False)
    assert fake.accels() == ["tcg"] and "not usable" in res.notes[0]
    with pytest.raises(InfraError, match="/dev/kvm"):
        boot(SPEC, tmp_path / "c", timeout=9, accel="kvm", qemu=FakeQemu(), kvm_ok=False)
    with pytest.raises(ValueError):
        boot(SPEC, tmp_path / "c", timeout=9, accel="fast", qemu=FakeQemu())


def test_forced_kvm_has_no_silence_deadline(tmp_path: Path) -> None:
    fake = FakeQemu(RunOutcome(None, 9.0, timed_out=True))
    res = boot(SPEC, tmp_path / "c", timeout=9, accel="kvm", qemu=fake, kvm_ok=True)
    assert fake.calls[0][2] is None and res.accel == "kvm" and res.outcome.timed_out


# --- the real seam, with stand-in programs ------------------------------------------------

def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_host_seam_writes_console_and_returns_exit_code(tmp_path: Path) -> None:
    seen: list[bytes] = []
    out = qemu.HostQemu().run(
        _py("import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"),
        tmp_path / "console.log", timeout=30, on_output=seen.append,
    )
    assert out.returncode == 3 and out.printed and not out.timed_out
    assert (tmp_path / "console.log").read_text() == "hello\n"
    assert b"".join(seen) == b"hello\n" and "oops" in out.stderr


def test_host_seam_kills_the_whole_group_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "print('started', flush=True); time.sleep(600)\n"
    )
    start = time.monotonic()
    out = qemu.HostQemu().run(_py(code), tmp_path / "c.log", timeout=3)
    assert out.timed_out and out.returncode is None
    assert time.monotonic() - start < 15
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "a grandchild of the killed QEMU stand-in survived"
    assert not process._cancel_callbacks  # the guest left the one cancel registry


def test_host_seam_silence_deadline(tmp_path: Path) -> None:
    out = qemu.HostQemu().run(_py("import time; time.sleep(600)"), tmp_path / "c.log",
                              timeout=60, silence_deadline=1.0)
    assert out.silent and not out.timed_out and out.duration < 10
    out = qemu.HostQemu().run(_py("import time; print('x', flush=True); time.sleep(2)"),
                              tmp_path / "c.log", timeout=60, silence_deadline=1.0)
    assert out.returncode == 0 and not out.silent


def test_missing_qemu_binary_is_an_infra_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="not found"):
        qemu.HostQemu().run(["/nonexistent/qemu-system-x86_64"], tmp_path / "c", timeout=5)


def test_cancel_all_kills_a_running_guest_and_refuses_new_ones(tmp_path: Path) -> None:
    """One registry: process.cancel_all() (what Ctrl-C does) stops QEMU like any process."""
    import threading

    code = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
    out: list[RunOutcome] = []
    th = threading.Thread(target=lambda: out.append(
        qemu.HostQemu().run(_py(code), tmp_path / "c.log", timeout=120)))
    th.start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "c.log").exists() or not (tmp_path / "c.log").read_text():
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.05)
    try:
        process.cancel_all()
        th.join(timeout=15)
        assert not th.is_alive() and out[0].returncode is not None and not out[0].timed_out
        with pytest.raises(InfraError, match="interrupted"):
            qemu.HostQemu().run(_py(code), tmp_path / "d.log", timeout=120)
        assert not (tmp_path / "d.log").exists()
    finally:
        process.rearm()
    assert not process._cancel_callbacks
