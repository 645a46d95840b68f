"""From a guest's serial console log to a verdict: pure functions over text.

The /init script (guest.py) brackets every step with marker lines; the kernel's
own messages fall in between. A run passes when init ran, every module loaded,
appeared in /sys/module, the optional script exited 0, every module unloaded, and
the kernel reported no Oops / BUG / WARNING / Call Trace / KASAN / panic / lockup once
the first module began loading. What the kernel reported before that (a soft lockup of a
guest starved by a loaded TCG host) is a warning, and the taint it set is not the
module's: taint is shown relative to the `taint before` marker.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kbuild_py.boot.guest import LOADER_ARTEFACT, MARK, Marker, StepKind, TaintAt

# kernel/panic.c taint_flags, by bit
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"

PROBLEM = re.compile(
    r"\bOops\b|\bBUG:|kernel BUG at|WARNING:|Call Trace:|KASAN|UBSAN:|Kernel panic"
    r"|soft lockup|hard LOCKUP|general protection fault|blocked for more than \d+ seconds"
    r"|Unable to handle kernel"
)
_KERNEL_REASON = re.compile(
    r"Unknown symbol|version magic|disagrees about version|Invalid|invalid|module_layout"
    r"|no symbol version|Required key|rejected|Unknown parameter|out of memory",
)
_ERRNO_NAME = {os.strerror(n): name for n, name in errno.errorcode.items()}
# include/linux/errno.h: kernel-internal values a module's init may return; libc knows them
# only as "Unknown error N".
KERNEL_ERRNO = {
    512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK", 517: "EPROBE_DEFER", 518: "EOPENSTALE", 519: "ENOPARAM",
    521: "EBADHANDLE", 522: "ENOTSYNC", 523: "EBADCOOKIE", 524: "ENOTSUPP", 525: "ETOOSMALL",
    526: "ESERVERFAULT", 527: "EBADTYPE", 528: "EJUKEBOX", 529: "EIOCBQUEUED",
    530: "ERECALLCONFLICT",
}
_UNKNOWN_ERRNO = re.compile(r"Unknown error (\d+)$")
# kernel/params.c: "<module>: unknown parameter '<name>' ignored"
_IGNORED_PARAM = re.compile(r"(\S+): unknown parameter '([^']*)' ignored")
EXCERPT_LINES = 30

# kernel/module/signing.c module_sig_check(), under module.sig_enforce=1: the refusal, what
# it means, and what to do about it.
SIG_UNSIGNED = "Loading of unsigned module is rejected"
SIG_REJECTIONS = (
    (SIG_UNSIGNED, "unsigned module",
     "sign it: kmod-py build --sign (a key: kmod-py keygen), then enrol the certificate on "
     "the machine (mokutil --import CERT)"),
    ("Loading of module with unavailable key is rejected",
     "signed with a key the kernel does not trust",
     "enrol the signer's certificate (mokutil --import CERT, Secure Boot machines) or use a "
     "kernel built with it in CONFIG_SYSTEM_TRUSTED_KEYS; a QEMU guest has no UEFI MOK list, "
     "so a distribution kernel trusts only its own built-in keys here"),
    ("Loading of module with unsupported crypto is rejected",
     "signature in a form the kernel cannot check",
     "sign with the kernel's own scripts/sign-file (PKCS#7) and a hash it supports"),
)  # fmt: skip
_KEY_REJECTED = "Key was rejected by service"


def taint_letters(mask: int) -> str:
    """Letters for the set taint bits, in bit order (e.g. 0x3000 -> 'OE')."""
    out = "".join(ch for bit, ch in enumerate(TAINT_LETTERS) if mask & (1 << bit))
    extra = mask >> len(TAINT_LETTERS)
    return out + (f"+0x{extra << len(TAINT_LETTERS):x}" if extra else "")


@dataclass
class Step:
    kind: str  # dep, require, insmod, rmmod, unrequire, script
    name: str  # module name, or "-"
    group: str = "-"  # the module under test this step belongs to (separate loading)
    rc: int | None = None  # None: began and never ended
    output: list[str] = field(default_factory=list)  # what the command printed
    kernel: list[str] = field(default_factory=list)  # kernel lines seen meanwhile
    exact: bool = False  # kernel lines come from the step's own kmsg replay


@dataclass
class Verdict:
    status: str  # pass, fail, timeout
    problems: list[str] = field(default_factory=list)
    release: str | None = None
    init_uptime: float | None = None  # guest seconds from kernel start to /init
    steps: list[Step] = field(default_factory=list)
    sysfs: dict[str, str] = field(default_factory=dict)  # module -> present/absent after load
    taint_before: int | None = None  # before the first module was loaded
    taint: int | None = None  # after loading
    taint_end: int | None = None  # after unloading (a WARNING at rmmod adds W here)
    excerpt: list[str] = field(default_factory=list)
    finished: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (module or "-", why)
    warnings: list[str] = field(default_factory=list)  # e.g. a parameter the kernel ignored
    groups: list[str] = field(default_factory=list)  # modules tested one at a time
    module_problems: dict[str, list[str]] = field(default_factory=dict)  # per group
    hints: list[str] = field(default_factory=list)  # what to do about a signature rejection

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def taint_added(self) -> int | None:
        """The taint the loaded modules added (bits already set before loading are not
        theirs: e.g. L when the soft-lockup watchdog fired during boot)."""
        if self.taint is None:
            return None
        return self.taint & ~(self.taint_before or 0)

    @property
    def taint_text(self) -> str:
        """Letters of the taint the modules added, and of what was set before them."""
        added = self.taint_added
        if added is None:
            return "-"
        text = taint_letters(added) or "none"
        if self.taint_before:
            text += f" ({taint_letters(self.taint_before)} before loading)"
        return text

    def step(self, kind: str, name: str) -> Step | None:
        return next((s for s in self.steps if s.kind == kind and s.name == name), None)


def _errno_name(text: str) -> str:
    m = _UNKNOWN_ERRNO.search(text)
    if m and int(m.group(1)) in KERNEL_ERRNO:
        return f"{text} (-{KERNEL_ERRNO[int(m.group(1))]})"
    for msg, name in _ERRNO_NAME.items():
        if text.endswith(msg):
            return f"{text} (-{name})"
    return text


def _reason(step: Step) -> str:
    said = [_errno_name(re.sub(r"^(insmod|rmmod): ", "", o)) for o in step.output if o.strip()]
    said += [_strip_time(k) for k in step.kernel if _KERNEL_REASON.search(k)]
    return "; ".join(said) or "no message"


def _strip_time(line: str) -> str:
    return re.sub(r"^\[\s*\d+\.\d+\]\s*", "", line)


def _split(line: str) -> tuple[str, str | None]:
    """(kernel text, marker fields) of one console line."""
    i = line.find(MARK + " ")
    if i < 0:
        return line, None
    return line[:i], line[i + len(MARK) + 1 :]


def _excerpt(lines: list[str], start: int) -> list[str]:
    return [ln for ln in lines[start : start + EXCERPT_LINES] if MARK not in ln]


@dataclass(frozen=True)
class _Fields:
    """One marker line after MARK: `KIND NAME REST`, REST split once more for steps."""

    kind: str
    name: str
    rest: str
    parts: list[str]


class _Parser:
    def __init__(self) -> None:
        self.v = Verdict(status="fail")
        self.current: Step | None = None
        self.first_problem: int | None = None  # first problem line once a step began
        self.boot_problem: int | None = None  # first problem line before any step began
        self.group = "-"

    def feed(self, index: int, line: str) -> None:
        text, marker = _split(line)
        if LOADER_ARTEFACT in text:
            text = ""  # our own loading trick, not the module's doing (guest.pack_module)
        if text.strip():
            if PROBLEM.search(text):
                if not self.v.steps:
                    if self.boot_problem is None:
                        self.boot_problem = index
                elif self.first_problem is None:
                    self.first_problem = index
            if self.current is not None and not self.current.exact:
                self.current.kernel.append(text)
        if marker is not None:
            parts = marker.split(" ", 3)
            fields = _Fields(
                parts[0],
                parts[1] if len(parts) > 1 else "-",
                " ".join(parts[2:]) if len(parts) > 2 else "",
                parts,
            )
            handler = _HANDLERS.get(fields.kind)
            if handler is not None:  # an unknown marker (a newer guest script) is ignored
                handler(self, fields)

    def begin(self, f: _Fields) -> None:
        if len(f.parts) >= 3:
            self.current = Step(kind=f.parts[1], name=f.parts[2], group=self.group)
            self.v.steps.append(self.current)

    def out(self, f: _Fields) -> None:
        if self.current is not None and len(f.parts) >= 3:
            self.current.output.append(f.parts[3] if len(f.parts) > 3 else "")

    def kmsg(self, f: _Fields) -> None:
        if self.current is None or len(f.parts) < 3:
            return
        # The ring buffer's record of this step replaces what the console interleaved.
        if not self.current.exact:
            self.current.exact, self.current.kernel = True, []
        text = f.parts[3] if len(f.parts) > 3 else ""
        if text.strip() and LOADER_ARTEFACT not in text:
            self.current.kernel.append(text)

    def end(self, f: _Fields) -> None:
        if self.current is not None and len(f.parts) >= 4:
            self.current.rc = _int(f.parts[3])

    def group_mark(self, f: _Fields) -> None:
        self.group = f.name if f.rest == "begin" else "-"
        if f.rest == "begin":
            self.v.groups.append(f.name)

    def skipped(self, f: _Fields) -> None:
        self.v.skipped.append((f.name, f.rest.strip("'")))

    def init(self, f: _Fields) -> None:
        self.v.init_uptime = _float(f.rest)

    def release(self, f: _Fields) -> None:
        self.v.release = f.rest or None

    def taint(self, f: _Fields) -> None:
        v, value = self.v, _int(f.rest)
        if f.name == TaintAt.BEFORE:
            v.taint_before = value
        if f.name == TaintAt.LOADED or (f.name == TaintAt.END and v.taint is None):
            v.taint = value
        if f.name == TaintAt.END:
            v.taint_end = value
            self.current = None

    def sysfs(self, f: _Fields) -> None:
        self.v.sysfs[f.name] = f.rest

    def sysfs_after(self, f: _Fields) -> None:
        if f.rest == "present":
            self.v.problems.append(f"{f.name} is still in /sys/module after rmmod")

    def done(self, f: _Fields) -> None:
        self.v.finished = True
        self.current = None


# guest.Marker -> what the parser does with it (a per-module `taint loaded-NAME` is ignored)
_HANDLERS: dict[str, Callable[[_Parser, _Fields], None]] = {
    Marker.BEGIN: _Parser.begin,
    Marker.OUT: _Parser.out,
    Marker.KMSG: _Parser.kmsg,
    Marker.END: _Parser.end,
    Marker.GROUP: _Parser.group_mark,
    Marker.SKIPPED: _Parser.skipped,
    Marker.INIT: _Parser.init,
    Marker.RELEASE: _Parser.release,
    Marker.TAINT: _Parser.taint,
    Marker.SYSFS: _Parser.sysfs,
    Marker.SYSFS_AFTER: _Parser.sysfs_after,
    Marker.DONE: _Parser.done,
}


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def parse_console(
    text: str, modules: list[str], *, timed_out: bool = False, timeout: float | None = None,
    release: str | None = None, sig_enforce: bool = False,
) -> Verdict:
    """The verdict for a console log of a guest that tested `modules` on kernel `release`
    (when given, a guest that booted another release fails); sig_enforce: the guest ran
    with module.sig_enforce=1."""
    lines = [ln.rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]
    p = _Parser()
    for i, line in enumerate(lines):
        p.feed(i, line)
    v = p.v
    if sig_enforce:
        _drop_sig_artefact(v.steps)
        v.hints = _sig_hints(v.steps)
    problems = _step_problems(v, modules)
    boot_notes: list[str] = []
    if p.boot_problem is not None and not v.steps:  # it never got to load a module
        p.first_problem = p.boot_problem
    elif p.boot_problem is not None:
        said = _strip_time(lines[p.boot_problem]).strip()
        boot_notes.append(f"the kernel reported '{said}' during boot, before any module was "
                          "loaded (host overloaded?); not counted against the module")
    if p.first_problem is not None:
        first = _strip_time(lines[p.first_problem]).strip()
        problems.append(f"kernel reported: {first}")
        v.excerpt = _excerpt(lines, max(0, p.first_problem - 2))
    if timed_out:
        hung = next((s for s in v.steps if s.rc is None), None)
        where = f": {hung.kind} {hung.name} never returned" if hung else ""
        limit = f" after {timeout:.0f} s" if timeout else ""
        problems.insert(0, f"timed out{limit}{where} (QEMU killed)")
    elif v.init_uptime is None:
        problems.insert(0, "the guest never reached /init (kernel did not boot)")
    elif not v.finished and not problems:
        problems.append("the guest stopped before the test finished")
    if release is not None and v.init_uptime is not None and v.release != release:
        problems.insert(0, f"the guest booted kernel {v.release or '(unknown)'}, not the target "
                           f"{release}: the kernel image is not the one asked for")
    if not v.excerpt and (timed_out or v.init_uptime is None or not v.finished):
        start = next((i for i, ln in enumerate(lines) if f"{MARK} init " in ln), 0)
        tail = [ln for ln in lines[start:] if ln.strip() and MARK not in ln]
        v.excerpt = tail[-EXCERPT_LINES:]
    v.problems = problems + v.problems
    v.warnings = boot_notes + _ignored_params(v)
    v.module_problems = _group_problems(v)
    v.status = "timeout" if timed_out else ("pass" if not v.problems else "fail")
    return v


def _drop_sig_artefact(steps: list[Step]) -> None:
    """Under enforcement the kernel checks the signature before the ELF header, so the
    first finit_module(2) of the gzipped file (guest.LOADER_ARTEFACT) is refused as an
    unsigned module, once per load; busybox then loads the real bytes, whose verdict counts."""
    for s in steps:
        if s.kind in (StepKind.INSMOD, StepKind.DEP, StepKind.REQUIRE):
            i = next((i for i, k in enumerate(s.kernel) if SIG_UNSIGNED in k), None)
            if i is not None:
                del s.kernel[i]


def sig_rejection(step: Step) -> tuple[str, str] | None:
    """(what, what to do) when the kernel refused this load over its signature."""
    if step.rc in (None, 0):
        return None
    for line, what, todo in SIG_REJECTIONS:
        if any(line in k for k in step.kernel):
            return what, todo
    if any(_KEY_REJECTED in o for o in step.output):  # -EKEYREJECTED without a notice
        return (
            "signature does not verify",
            "the module changed after it was signed, or the signature is corrupt: re-sign it "
            "(kmod-py sign); kmod-py check --cert CERT says which",
        )
    return None


def _sig_hints(steps: list[Step]) -> list[str]:
    out = []
    for s in steps:
        found = sig_rejection(s)
        if found is not None:
            hint = f"{s.name} rejected: {found[0]} (module.sig_enforce=1): {found[1]}"
            if hint not in out:
                out.append(hint)
    return out


def _ignored_params(v: Verdict) -> list[str]:
    out = []
    for s in v.steps:
        for k in s.kernel:
            m = _IGNORED_PARAM.search(k)
            if m:
                w = f"{m.group(1)}: the kernel ignored unknown parameter '{m.group(2)}'"
                if w not in out:
                    out.append(w)
    return out


def _group_problems(v: Verdict) -> dict[str, list[str]]:
    """Each separately tested module's own problems: its failed steps, and what the kernel
    reported while its steps ran (an oops during one module's init fails that module)."""
    out: dict[str, list[str]] = {}
    for g in v.groups:
        mine = [s for s in v.steps if s.group == g]
        probs = [p for p in _step_problems(Verdict("fail", steps=mine, sysfs=v.sysfs), [g])]
        bad = next((k for s in mine for k in s.kernel if PROBLEM.search(k)), None)
        if bad is not None:
            probs.append(f"kernel reported: {_strip_time(bad).strip()}")
        if mine and mine[-1].rc is None:
            probs.append(f"{mine[-1].kind} {mine[-1].name} never returned")
        if not any(s.kind == StepKind.INSMOD for s in mine):
            probs += [why for name, why in v.skipped if name == g]
        out[g] = probs
    return out


def _step_problems(v: Verdict, modules: list[str]) -> list[str]:
    problems: list[str] = []
    for s in v.steps:
        if s.rc in (None, 0):
            continue
        labels: dict[str, str] = {StepKind.DEP: "in-kernel dependency", StepKind.SCRIPT: "script",
                StepKind.REQUIRE: "required module",
                StepKind.UNREQUIRE: "rmmod of required module"}
        what = labels.get(s.kind, s.kind)
        if s.kind == StepKind.SCRIPT:
            problems.append(f"script exited {s.rc}" + (f": {s.output[-1]}" if s.output else ""))
        else:
            problems.append(f"{what} {s.name} failed (exit {s.rc}): {_reason(s)}")
    for name in modules:
        ins = v.step(StepKind.INSMOD, name)
        if ins is None:
            continue
        if ins.rc == 0 and v.sysfs.get(name) == "absent":
            problems.append(f"{name} loaded but /sys/module/{name} does not exist")
    return problems
