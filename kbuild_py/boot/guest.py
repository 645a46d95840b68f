"""What runs inside the guest (the /init script) and what its console log means.

`init_script` is a pure function of a GuestPlan. The script prints marker lines
(`@@kmod-py STEP NAME VALUE`) around each step; the kernel's own lines land on the
same serial console in between, but printk's console output may be deferred past the
step's end (7.x prints from a thread), so each step also replays the kernel log records
it added (`kmsg` markers, read from the ring buffer with dmesg) for exact attribution.
`parse_console` (in verdict.py) reads them back. The marker kinds (Marker) and taint
points (TaintAt) are the protocol between the two: the script is written with them and
verdict.py dispatches on them.
"""

from __future__ import annotations

import gzip
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MARK = "@@kmod-py"


class Marker(StrEnum):
    """The STEP field of a marker line `@@kmod-py STEP NAME VALUE`."""

    INIT = "init"  # - UPTIME: /init started
    RELEASE = "release"  # - RELEASE: uname -r
    TAINT = "taint"  # TaintAt MASK
    BEGIN = "begin"  # KIND NAME: a step starts (KIND: StepKind)
    OUT = "out"  # KIND NAME LINE: a line the step's command printed
    KMSG = "kmsg"  # KIND NAME LINE: a kernel log record the step added
    END = "end"  # KIND NAME RC
    GROUP = "group"  # MODULE begin|end: a module tested on its own
    SKIPPED = "skipped"  # MODULE|- 'WHY': a step not run
    SYSFS = "sysfs"  # MODULE present|absent, after insmod
    SYSFS_AFTER = "sysfs-after"  # MODULE present|absent, after rmmod
    DONE = "done"  # - UPTIME: the test finished


class TaintAt(StrEnum):
    """When a `taint` marker read /proc/sys/kernel/tainted."""

    BEFORE = "before"  # before the first module (dependency or under test) was loaded
    LOADED = "loaded"  # after every module loaded (LOADED-NAME: after NAME, tested alone)
    END = "end"  # after the modules were removed


class StepKind(StrEnum):
    DEP = "dep"  # an in-kernel dependency
    REQUIRE = "require"  # a module under test another one needs (separate loading)
    INSMOD = "insmod"
    SCRIPT = "script"
    RMMOD = "rmmod"
    UNREQUIRE = "unrequire"
MODULE_DIR = "lib/kmod-py/test"  # modules under test, inside the initramfs
DEPS_DIR = "lib/kmod-py/deps"  # their in-kernel dependencies, load order
SCRIPT_PATH = "kmod-py-script"


# busybox insmod tries finit_module(2) and, when that fails for any reason, loads the file
# again with init_module(2): a module whose init fails would run its init twice. A gzipped
# file fails finit_module at the ELF magic check (the kernel says LOADER_ARTEFACT, nothing
# else runs) and busybox decompresses it for init_module: the init runs exactly once.
LOADER_ARTEFACT = "Invalid ELF header magic: != "


def pack_module(elf: bytes) -> bytes:
    """A module file as the guest loads it (see LOADER_ARTEFACT)."""
    return gzip.compress(elf, compresslevel=1, mtime=0)


@dataclass(frozen=True)
class GuestModule:
    name: str  # the module name (as /sys/module and rmmod know it)
    file: str  # file name inside its directory of the initramfs
    params: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # other modules under test it needs loaded, in load order


@dataclass(frozen=True)
class GuestPlan:
    modules: Sequence[GuestModule]  # under test, loaded in order, removed in reverse
    deps: Sequence[GuestModule] = field(default_factory=tuple)  # loaded first, never removed
    script: bool = False  # run /kmod-py-script between load and unload
    # Each module loaded, checked and unloaded on its own (its `requires` around it), its
    # steps grouped under a `group NAME` marker so each is judged on its own.
    separate: bool = False


_PRELUDE = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/ TERM=dumb
echo 8 > /proc/sys/kernel/printk
m() {{ echo "{MARK} $*"; }}
step() {{
    s=$1; n=$2; shift 2
    dmesg -c >/dev/null
    m {Marker.BEGIN} "$s" "$n"
    "$@" >/tmp/out 2>&1 </dev/null
    rc=$?
    while IFS= read -r l; do m {Marker.OUT} "$s" "$n" "$l"; done </tmp/out
    dmesg -c >/tmp/kmsg
    while IFS= read -r l; do m {Marker.KMSG} "$s" "$n" "$l"; done </tmp/kmsg
    m {Marker.END} "$s" "$n" "$rc"
    return $rc
}}
# read, not $(cut ...): every fork costs under TCG; /proc/sys/kernel/tainted cannot be read
# that way (a sysctl read byte by byte yields its first digit)
read -r up _ </proc/uptime; m {Marker.INIT} - "$up"
read -r rel </proc/sys/kernel/osrelease; m {Marker.RELEASE} - "$rel"
m {Marker.TAINT} {TaintAt.BEFORE} "$(cat /proc/sys/kernel/tainted)"
"""

_POSTLUDE = f"""m {Marker.TAINT} {TaintAt.END} "$(cat /proc/sys/kernel/tainted)"
read -r up _ </proc/uptime; m {Marker.DONE} - "$up"
sync
poweroff -f
"""


def _insmod(step: str, directory: str, mod: GuestModule) -> str:
    argv = ["insmod", f"/{directory}/{mod.file}", *mod.params]
    return f"step {step} {mod.name} {' '.join(shlex.quote(a) for a in argv)}"


def init_script(plan: GuestPlan) -> str:
    """The /init shell script for busybox sh."""
    lines = [_PRELUDE.rstrip("\n")]
    for dep in plan.deps:
        lines.append(_insmod(StepKind.DEP, DEPS_DIR, dep))
    lines += _separately(plan) if plan.separate else _together(plan)
    lines.append(_POSTLUDE.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _sysfs(mod: GuestModule, marker: Marker = Marker.SYSFS, absent_fails: bool = True) -> str:
    fail = " ok=0;" if absent_fails else ""
    return (f"if [ -d /sys/module/{mod.name} ]; then m {marker} {mod.name} present;"
            f" else m {marker} {mod.name} absent;{fail} fi")


def _together(plan: GuestPlan) -> list[str]:
    lines = ["ok=1"]
    for mod in plan.modules:
        lines.append(f"{_insmod(StepKind.INSMOD, MODULE_DIR, mod)} || ok=0")
        lines.append(_sysfs(mod))
    lines.append(f'm {Marker.TAINT} {TaintAt.LOADED} "$(cat /proc/sys/kernel/tainted)"')
    lines.append('if [ "$ok" = 1 ]; then')
    if plan.script:
        lines.append(f"    step {StepKind.SCRIPT} - sh /{SCRIPT_PATH}")
    for mod in reversed(plan.modules):
        lines.append(f"    step {StepKind.RMMOD} {mod.name} rmmod {mod.name}")
        lines.append("    " + _sysfs(mod, Marker.SYSFS_AFTER, absent_fails=False))
    lines.append("else")
    for mod in reversed(plan.modules):
        lines.append(f"    m {Marker.SKIPPED} {mod.name} 'rmmod skipped: a module did not load'")
    if plan.script:
        lines.append(f"    m {Marker.SKIPPED} - 'script skipped: a module did not load'")
    lines.append("fi")
    return lines


def _separately(plan: GuestPlan) -> list[str]:
    by_name = {m.name: m for m in plan.modules}
    lines: list[str] = []
    for mod in plan.modules:
        reqs = [by_name[r] for r in mod.requires if r in by_name]
        lines.append(f"m {Marker.GROUP} {mod.name} begin")
        lines.append("ok=1")
        for r in reqs:
            lines.append(f"{_insmod(StepKind.REQUIRE, MODULE_DIR, r)} || ok=0")
        lines.append('if [ "$ok" = 1 ]; then')
        lines.append(f"    {_insmod(StepKind.INSMOD, MODULE_DIR, mod)} || ok=0")
        lines.append("    " + _sysfs(mod))
        lines.append("else")
        why = "insmod skipped: a module it needs did not load"
        lines.append(f"    m {Marker.SKIPPED} {mod.name} '{why}'")
        lines.append("fi")
        tainted = '"$(cat /proc/sys/kernel/tainted)"'
        lines.append(f"m {Marker.TAINT} {TaintAt.LOADED}-{mod.name} {tainted}")
        lines.append('if [ "$ok" = 1 ]; then')
        if plan.script:
            lines.append(f"    step {StepKind.SCRIPT} {mod.name} sh /{SCRIPT_PATH}")
        lines.append(f"    step {StepKind.RMMOD} {mod.name} rmmod {mod.name}")
        lines.append("    " + _sysfs(mod, Marker.SYSFS_AFTER, absent_fails=False))
        lines.append("else")
        why = "it did not load" if not reqs else "it or a module it needs did not load"
        lines.append(f"    m {Marker.SKIPPED} {mod.name} 'rmmod skipped: {why}'")
        lines.append("fi")
        for r in reversed(reqs):
            lines.append(f"if [ -d /sys/module/{r.name} ]; then step {StepKind.UNREQUIRE} {r.name} "
                         f"rmmod {r.name}; fi")
        lines.append(f"m {Marker.GROUP} {mod.name} end")
    lines.append(f'm {Marker.TAINT} {TaintAt.LOADED} "$(cat /proc/sys/kernel/tainted)"')
    return lines
