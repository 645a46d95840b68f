"""The check service: `kmod-py check`'s body, behind both ways in (cli.check with typer,
cli.checkmain without). Output goes to stdout; messages go through the caller's `say`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

from kbuild_py.check.engine import target_info
from kbuild_py.check.model import TargetInfo
from kbuild_py.check.parallel import collect, run_many
from kbuild_py.check.target import struct_module_size
from kbuild_py.errors import KmodError, UsageError
from kbuild_py.paths import report_file
from kbuild_py.report import check as rc
from kbuild_py.report.table import use_color


class Say(Protocol):
    def __call__(self, line: str, *, red: bool = False) -> None: ...


def _targets(kernel: str | None, kdir: Path | None, say: Say) -> list:
    """Build trees to check against: --kdir, --kernel SPEC, else kmod.toml's kernels (resolved
    like `kmod-py build` does), else none: only the target-free rules run."""
    specs = [kernel] if kernel else []
    if kdir is None and not specs:
        # lazily, for start-up: tomllib only when kmod.toml is read
        from kbuild_py.project.config import load_project

        specs = load_project(Path.cwd()).kernels
        if not specs:
            return []
        say(f"target kernels from kmod.toml: {', '.join(specs)}")
    # lazily, for start-up: resolving specs brings in Debian, Docker and image code that
    # checking with no target kernel never needs
    from kbuild_py.kernels.select import resolve_targets

    targets = resolve_targets(specs, kdir, progress=say)
    for t in targets:
        if t.suite:
            _ensure_struct_size(t.release, t.suite, t.tree.path, say)
    return [t.tree for t in targets]


def _ensure_struct_size(release: str, suite: str, tree: Path, say: Say) -> None:
    """A Debian kernel's sizeof(struct module) comes from one of its own modules: fetch its
    linux-image package (once, cached) when no module of it is on this machine yet."""
    if struct_module_size(release, tree) is not None:
        return
    say(f"{release}: fetching linux-image-{release} from Debian {suite} "
        "(its modules tell struct module's size)")
    # lazily, for start-up: the archive reader only when a kernel package must be fetched
    from kbuild_py.debian.linuximage import fetch_kernel

    try:
        fetch_kernel(release, suite)
    except KmodError as err:
        say(f"warning: {err.message}: the module-struct-size rule is skipped")


def run_check(
    files: list[str] | None,
    recursive: list[Path],
    kernel: str | None,
    kdir: Path | None,
    extra_symbols: list[Path],
    as_json: bool,
    junit: Path | None,
    field: str | None,
    cert: list[Path] | None = None,
    *,
    say: Say,
    verbose: bool = False,
) -> int:
    """Check the modules; the exit status: 0 all passed, 1 a rule failed, 2 unreadable.
    cert: verify signatures against these certificates (the kernel's trusted keys)."""
    if kernel is not None and kdir is not None:
        raise UsageError("--kernel and --kdir both given", "pass one target kernel")
    if as_json and field:
        raise UsageError("-F and --json both given", "use -F FIELD for bare values, or --json")
    report_file(junit, "--junit")
    paths = collect(files or [], recursive)
    if not paths:
        raise UsageError("no module files given", "kmod-py check FILE.ko [FILE ...] or -r DIR")
    trusted = []
    if cert:
        # lazily, for start-up: the X.509/CMS libraries only when --cert is given
        from kbuild_py.signing.verify import load_trusted

        trusted = load_trusted(cert)  # read once, before the workers fork
    infos: list[TargetInfo | None] = [
        target_info(t, extra_symbols) for t in _targets(kernel, kdir, say)] or [None]
    if extra_symbols and infos == [None]:
        say("warning: --extra-symbols has no effect without a target kernel "
            "(--kernel, --kdir or kernels in kmod.toml)")
    mode = "json" if as_json else "field" if field else "text"
    color = use_color() and mode == "text"
    outcomes, dicts = [], []
    out = sys.stdout
    pending = _Pending(out)
    for info in infos:
        for o in run_many(
            paths, info, mode=mode, field=field, color=color, want_dict=bool(junit),
            trusted=trusted, verbose=verbose,
        ):
            outcomes.append(o)
            if o.error is not None:
                pending.flush()  # a terminal shows stdout and stderr in order
                say(f"error: {_printable(o.error)}", red=True)
                dicts.append(rc.unreadable_dict(o.path, o.error))
                continue
            dicts.append(o.data if o.data is not None else {})
            if mode == "field":
                _emit(out, "".join(v + "\n" for v in o.payload))  # type: ignore[attr-defined]
            elif mode == "text":
                pending.add(o.payload)  # type: ignore[arg-type]
    pending.flush()
    if junit:
        junit.write_text(rc.to_junit(dicts))
    if mode == "json":
        _emit(out, rc.to_json(dicts, [i.release if i else None for i in infos]))
    elif mode == "text" and len(outcomes) > 1:
        _emit(out, rc.tally_line(outcomes))
    out.flush()
    if any(o.error is not None for o in outcomes):
        return 2
    return 0 if all(o.ok for o in outcomes) else 1


class _Pending:
    """Text reports (already bytes, encoded in the workers) written 256 KiB at a time."""

    def __init__(self, out) -> None:
        self.out, self.size = out, 0
        self.parts: list[bytes] = []

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= 1 << 18:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            self.size = 0
            _write(self.out, data)


def _emit(out, text: str) -> None:
    """Write text; bytes a module held that are not UTF-8 go out as they were (like modinfo)."""
    _write(out, text.encode("utf-8", "surrogateescape"))


def _write(out, data: bytes) -> None:
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()
        buf.write(data)
    else:
        out.write(data.decode("utf-8", "replace"))


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
