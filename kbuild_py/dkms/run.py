"""Running a dkms.conf project's build for one kernel, as dkms does, in the per-kernel copy.

Order (dkms's do_build): read dkms.conf for this kernel -> stop if BUILD_EXCLUSIVE_* rules
the kernel out -> CLEAN (dkms 3.0 runs it; kmod-py only when the copy holds an earlier
build) -> patches -> PRE_BUILD -> MAKE -> POST_BUILD. Every step runs through the target's
runner (the host or the kernel's container) in the copy, with its output in build.log.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kbuild_py.build.layout import CopyLayout
from kbuild_py.build.sources import sync_sources
from kbuild_py.dkms.conf import CONF_FILE, ConfContext, read_conf
from kbuild_py.dkms.plan import DkmsPlan, plan_dkms
from kbuild_py.seams.process import HostRunner

if TYPE_CHECKING:
    from kbuild_py.build.plan import BuildOptions
    from kbuild_py.build.run import BuildLog
    from kbuild_py.kernels.spec import Target

STEP_TIMEOUT = 600.0
_ARCH = {"x86": "x86_64", "arm64": "aarch64"}


def kernel_cc_env(target: Target) -> dict[str, str]:
    """dkms exports CC as the first word of the kernel's CONFIG_CC_VERSION_TEXT when that
    program exists (a kernel image always has it; on the host, look)."""
    cc = target.compiler.split(" ", 1)[0] if target.compiler else ""
    if not cc or (target.where == "host" and shutil.which(cc) is None):
        return {}
    return {"CC": cc, "KERNEL_CC": cc}


def _script(command: str) -> str:
    """A PRE_BUILD/POST_BUILD line run as dkms runs it: relative to the build directory,
    only when its first word is executable."""
    first = shlex.quote(command.split(" ", 1)[0])
    return (
        f'run="$PWD/"{shlex.quote(command)}\n'
        f'if [[ -x "$PWD/"{first} ]]; then eval "$run"; '
        f'else echo "warning: dkms.conf script {command.split(" ", 1)[0]} is not executable: '
        'skipped (as dkms does)"; fi'
    )


def run_dkms(
    layout: CopyLayout,
    target: Target,
    opts: BuildOptions,
    log: BuildLog,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Build per dkms.conf; fills log.result. Returns the module names dkms.conf expects."""
    result = log.result
    copy = layout.copy
    arch = _ARCH.get(target.tree.srcarch, target.tree.srcarch)
    ctx = ConfContext(
        kernelver=target.release,
        kernel_source_dir=target.kdir,
        arch=arch,
        dkms_tree=str(layout.dkms_tree),
        source_tree=str(layout.dkms_tree / "source"),
        build_dir=str(copy),
        parallel_jobs=opts.make_jobs,
    )
    log.write(f"# reading {CONF_FILE} for {target.release} ({arch})")
    conf = read_conf(target.runner, ctx, layout.root / CONF_FILE, env=env)
    for msg in conf.messages:
        log.write(msg)
        result.notes.append(f"{CONF_FILE}: {msg}")
    build_dir = copy  # $dkms_tree/<module>/<version>/build (build.layout)
    link_source_tree(layout, conf.module or "module", conf.module_version or "0")
    plan = plan_dkms(
        conf,
        kernelver=target.release,
        kernel_source_dir=target.kdir,
        build_dir=str(build_dir),
        config=target.tree.config,
        make_jobs=opts.make_jobs,
        make_vars=_make_vars(opts),
    )
    result.package, result.version = plan.package or None, plan.version or None
    result.notes += plan.warnings
    result.ignored = plan.install_time
    result.expected = [m.name for m in plan.expected]
    if plan.problems:
        result.error = f"{CONF_FILE}: " + "; ".join(plan.problems)
        return result.expected
    if plan.excluded:
        result.excluded = plan.excluded
        result.returncode = 0
        log.write(f"# excluded: {plan.excluded}")
        return result.expected
    if not _steps(plan, layout, target, opts, log, env):
        return result.expected
    _locate(plan, layout, log)
    return result.expected


def _make_vars(opts: BuildOptions) -> dict[str, str]:
    variables = dict(opts.make_vars)
    if opts.extra_symvers and "KBUILD_EXTRA_SYMBOLS" not in variables:
        variables["KBUILD_EXTRA_SYMBOLS"] = " ".join(str(p) for p in opts.extra_symvers)
    return variables


def _steps(
    plan: DkmsPlan,
    layout: CopyLayout,
    target: Target,
    opts: BuildOptions,
    log: BuildLog,
    env: Mapping[str, str] | None,
) -> bool:
    """CLEAN, patches, PRE_BUILD, MAKE, POST_BUILD; False (result filled) at the first
    failing step."""
    result, copy = log.result, layout.copy
    run_env = {**kernel_cc_env(target), **(env or {})}
    reused = (copy / ".kmod-py-built").exists()
    if plan.patches and reused:
        # A patch applies to pristine sources only: start from a fresh copy (as dkms does).
        fresh_copy(layout)
        reused = False
    steps: list[tuple[str, str, bool]] = []  # (label, shell command, must succeed)
    if plan.clean and reused:
        steps.append(("CLEAN", plan.clean, False))
    for p in plan.patches:
        steps.append((f"PATCH {p}", f"patch -p1 < ./patches/{shlex.quote(p)}", True))
    if plan.pre_build:
        steps.append(("PRE_BUILD", _script(plan.pre_build), True))
    steps.append(("MAKE", plan.make, True))
    if plan.post_build:
        steps.append(("POST_BUILD", _script(plan.post_build), True))
    for label, command, required in steps:
        timeout = opts.timeout if label == "MAKE" else min(STEP_TIMEOUT, opts.timeout)
        res = log.run(["bash", "-c", command], copy, run_env, timeout, label)
        if label == "MAKE":
            (copy / ".kmod-py-built").touch()
        if res.timed_out:
            result.returncode, result.timed_out = res.returncode or 124, True
            return False
        if res.returncode != 0 and required:
            result.returncode = res.returncode
            if label != "MAKE":
                result.failure = f"{CONF_FILE} {label} failed (exit {res.returncode})"
                result.returncode = 0  # make never ran: the failure names the step
            return False
    result.returncode = 0
    return True


def fresh_copy(layout: CopyLayout) -> None:
    """Copy the sources again into an emptied copy (dkms's copy is its own directory)."""
    if layout.copy != layout.base:
        shutil.rmtree(layout.copy)
    sync_sources(layout.root, layout.copy)


def _locate(plan: DkmsPlan, layout: CopyLayout, log: BuildLog) -> None:
    """dkms looks for each module at BUILT_MODULE_LOCATION/NAME.ko in the build directory;
    one built elsewhere is as missing for dkms, and so for kmod-py."""
    for m in plan.expected:
        if not (layout.copy / m.relpath).is_file():
            log.write(f"# missing: {m.relpath}")
            log.result.missing.append(m.name)


def link_source_tree(layout: CopyLayout, module: str, version: str) -> None:
    """$source_tree/<module>-<version>, as dkms.conf files may name it, leads to the copy (a
    relative link, so it also resolves inside a container)."""
    if "/" in module or "/" in version or module in ("", ".", "..") or version in ("..", "."):
        return
    link = layout.dkms_tree / "source" / f"{module}-{version}"
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(layout.copy, link.parent)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def package_of(root: Path, target: Target) -> tuple[str, str]:
    """PACKAGE_NAME and PACKAGE_VERSION of root/dkms.conf, read by the host's bash before the
    copy exists (the copy's path holds them); ("module", "0") when the file names none."""
    ctx = ConfContext(
        kernelver=target.release,
        kernel_source_dir=target.kdir if target.where == "host" else str(target.tree.path),
        arch=_ARCH.get(target.tree.srcarch, target.tree.srcarch),
        dkms_tree="/var/lib/dkms",
        source_tree="/usr/src",
        build_dir=str(root),
    )
    conf = read_conf(HostRunner(), ctx, root / CONF_FILE)
    return conf.module or "module", conf.module_version or "0"
