"""QEMU: the argv as data, and the one seam that runs it.

`qemu_argv` is a pure function of a VmSpec. `HostQemu` runs an argv with a hard
timeout, writes the serial console to a file as it arrives, and kills QEMU's whole
process group on timeout, on Ctrl-C/SIGTERM of kmod-py, and at interpreter exit.
`boot` picks the accelerator: KVM when /dev/kvm is usable, else TCG; a KVM guest
that prints nothing within a short deadline is killed and booted again under TCG.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kbuild_py.errors import InfraError
from kbuild_py.paths import cache_dir
from kbuild_py.seams import process

QEMU = "qemu-system-x86_64"
# Per Debian architecture: the QEMU program, machine (+ CPU) and serial console. arm64 boots
# Debian's plain Image on the virt board; cortex-a57 is 2-3x faster under TCG than -cpu max.
MACHINES = {
    "amd64": (QEMU, ["-M", "q35,accel={accel}"], "ttyS0"),
    "arm64": ("qemu-system-aarch64", ["-M", "virt,accel={accel}", "-cpu", "cortex-a57"], "ttyAMA0"),
}
# uname -m -> the Debian architecture KVM can run
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# Seconds a KVM guest may stay silent before we retry under TCG. With earlyprintk=serial
# the kernel's decompressor prints within a fraction of a second of a healthy start.
KVM_SILENCE_DEADLINE = 4.0
ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class VmSpec:
    kernel: Path
    initrd: Path
    append: str = "console=ttyS0 quiet panic=-1 edd=off"
    accel: str = "tcg"  # "kvm" or "tcg"
    memory_mb: int = 512
    smp: int = 1
    arch: str = "amd64"  # Debian architecture of the kernel (MACHINES)


def default_append(arch: str = "amd64") -> str:
    """The kernel command line for a kernel of `arch` (its serial console)."""
    console = MACHINES.get(arch, MACHINES["amd64"])[2]
    extra = " edd=off" if arch == "amd64" else ""
    return f"console={console} quiet panic=-1{extra}"


def qemu_argv(spec: VmSpec, qemu: str | None = None) -> list[str]:
    """No network, no display, no disks; the serial console on stdout; exit on poweroff/panic."""
    if spec.accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be kvm or tcg, not {spec.accel}")
    if spec.arch not in MACHINES:
        raise InfraError(f"no QEMU machine for {spec.arch} kernels", "amd64 and arm64 boot")
    program, machine, _console = MACHINES[spec.arch]
    argv = [qemu or program, *(m.format(accel=spec.accel) for m in machine)]
    argv += [
        "-m", str(spec.memory_mb), "-smp", str(spec.smp),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-monitor", "none", "-net", "none",
        "-kernel", str(spec.kernel), "-initrd", str(spec.initrd),
        "-append", spec.append,
    ]
    return argv


@dataclass
class RunOutcome:
    returncode: int | None  # None when killed
    duration: float
    timed_out: bool = False  # killed by the hard timeout
    silent: bool = False  # killed because the guest printed nothing before silence_deadline
    printed: bool = False  # the guest wrote anything to its console
    stderr: str = ""


class Qemu(Protocol):
    def run(
        self,
        argv: Sequence[str],
        console: Path,
        *,
        timeout: float,
        silence_deadline: float | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> RunOutcome: ...


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # resolved in the parent: the child must not import after fork


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the thread that started QEMU goes away."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class HostQemu:
    """Runs QEMU on this machine in its own process group."""

    poll = 0.05

    def run(
        self,
        argv: Sequence[str],
        console: Path,
        *,
        timeout: float,
        silence_deadline: float | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> RunOutcome:
        console.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        if process.cancelled():
            raise InfraError("interrupted: not starting QEMU")
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as e:
            raise InfraError(f"{argv[0]}: not found", "install qemu-system-x86") from e
        # a guest has nothing to save: SIGKILL at once (and at once if already cancelled)
        token = process.on_cancel(lambda: process.kill_group(proc, grace=0))
        if process.cancelled():  # cancelled while it started: already killed
            process.forget(token)
            raise InfraError("interrupted: QEMU stopped")
        got_output = threading.Event()
        err_chunks: list[bytes] = []
        with open(console, "wb") as log:
            threads = [
                threading.Thread(target=_pump, args=(proc.stdout, log, got_output, on_output)),
                threading.Thread(target=_pump, args=(proc.stderr, None, None, err_chunks.append)),
            ]
            for t in threads:
                t.daemon = True
                t.start()
            try:
                outcome = self._wait(proc, start, timeout, silence_deadline, got_output)
            finally:
                process.kill_group(proc, grace=0)
                process.forget(token)
                for t in threads:
                    t.join(timeout=5)
        outcome.stderr = b"".join(err_chunks).decode("utf-8", "replace")
        outcome.printed = got_output.is_set()
        return outcome

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        start: float,
        timeout: float,
        silence_deadline: float | None,
        got_output: threading.Event,
    ) -> RunOutcome:
        while True:
            rc = proc.poll()
            elapsed = time.monotonic() - start
            if rc is not None:
                return RunOutcome(rc, elapsed)
            if elapsed >= timeout:
                return RunOutcome(None, elapsed, timed_out=True)
            quiet = not got_output.is_set()
            if silence_deadline is not None and elapsed >= silence_deadline and quiet:
                return RunOutcome(None, elapsed, silent=True)
            time.sleep(self.poll)


def _pump(stream, log, flag, sink) -> None:
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        if log is not None:
            log.write(chunk)
            log.flush()
        if flag is not None:
            flag.set()
        if sink is not None:
            sink(chunk)


_kvm_hangs = threading.Event()  # a KVM guest stayed silent in this process
KVM_MEMORY = 24 * 3600  # seconds a silent KVM guest is remembered (per host kernel)


def _kvm_marker() -> Path:
    return cache_dir() / "kvm-silent"


def kvm_known_silent() -> bool:
    """A KVM guest stayed silent in this process, or recently on this host kernel."""
    if _kvm_hangs.is_set():
        return True
    try:
        marker = _kvm_marker()
        fresh = time.time() - marker.stat().st_mtime < KVM_MEMORY
        return fresh and marker.read_text().strip() == os.uname().release
    except OSError:
        return False


def _remember_kvm_silent() -> None:
    _kvm_hangs.set()
    try:
        marker = _kvm_marker()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(os.uname().release + "\n")
    except OSError:
        pass


def kvm_usable(dev: str = "/dev/kvm") -> bool:
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass
class BootResult:
    outcome: RunOutcome
    accel: str  # the accelerator of the final attempt
    notes: list[str] = field(default_factory=list)  # e.g. the KVM -> TCG fallback


def boot(
    spec: VmSpec,
    console: Path,
    *,
    timeout: float,
    accel: str = "auto",
    qemu: Qemu | None = None,
    kvm_ok: bool | None = None,
    silence_deadline: float = KVM_SILENCE_DEADLINE,
    on_output: Callable[[bytes], None] | None = None,
) -> BootResult:
    """Boot `spec` once; with accel=auto, KVM first when usable, then TCG if KVM stays silent.

    `timeout` bounds the whole call, fallback included. After a silent KVM guest, auto boots
    go straight to TCG for a day (remembered per host kernel in the cache directory).
    """
    if accel not in ACCELS:
        raise ValueError(f"--accel must be one of {', '.join(ACCELS)}")
    qemu = qemu or HostQemu()
    notes: list[str] = []
    if kvm_ok is None:
        kvm_ok = kvm_usable() if accel != "tcg" else False
        if accel == "auto" and kvm_ok and kvm_known_silent():
            kvm_ok = False
            notes.append("TCG: a KVM guest hung on this host recently (--accel kvm forces KVM)")
    import platform

    foreign = HOST_ARCH.get(platform.machine()) != spec.arch
    if foreign and accel == "kvm":
        raise InfraError(f"KVM cannot run {spec.arch} kernels on a {platform.machine()} host",
                         "use --accel tcg (or auto)")
    if foreign and accel == "auto":  # KVM runs only the host's own architecture
        kvm_ok, notes = False, [f"TCG: {spec.arch} guest on a {platform.machine()} host"]
    if accel == "kvm" and not kvm_ok:
        raise InfraError("/dev/kvm is not usable", "use --accel tcg (or auto)")
    start = time.monotonic()
    if accel in ("auto", "kvm") and kvm_ok:
        # earlyprintk: the decompressor prints at once, so a silent guest is a hung guest
        kvm = VmSpec(**{**spec.__dict__, "accel": "kvm",
                        "append": f"{spec.append} earlyprintk=serial"})
        deadline = silence_deadline if accel == "auto" else None
        out = qemu.run(qemu_argv(kvm), console, timeout=timeout,
                       silence_deadline=deadline, on_output=on_output)
        if accel == "kvm" or not (out.silent or (out.returncode and not out.printed)):
            return BootResult(out, "kvm", notes)
        why = (f"printed nothing in {silence_deadline:.0f} s" if out.silent
               else f"exited with {out.returncode} before printing anything")
        notes.append(f"KVM guest {why}: retried under TCG")
        _remember_kvm_silent()
    elif accel == "auto" and not notes:
        notes.append("/dev/kvm not usable: TCG")
    tcg = VmSpec(**{**spec.__dict__, "accel": "tcg"})
    left = max(1.0, timeout - (time.monotonic() - start))
    out = qemu.run(qemu_argv(tcg), console, timeout=left, on_output=on_output)
    return BootResult(out, "tcg", notes)
