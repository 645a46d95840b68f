"""Build plans: the make command line for a kernel, which compiler it uses, how many kernels
build at once. Pure, except compiler_in_use (it asks the target's runner).
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.build.toolchain import Toolchain, gcc_program, toolchain_for
from kbuild_py.kernels.spec import Target
from kbuild_py.signing.service import SignSettings

BUILD_TIMEOUT = 1800.0


@dataclass
class BuildOptions:
    make_jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    make_vars: dict[str, str] = field(default_factory=dict)
    timeout: float = BUILD_TIMEOUT
    run_checks: bool = True
    extra_symvers: Sequence[Path] = ()
    expected_modules: Sequence[str] = ()  # kmod.toml's module names: each must be built
    follow_dkms_conf: bool = True  # kmod.toml's [build] follow_dkms_conf
    sign: SignSettings | None = None  # --sign: strip -> sign each module after make


def target_toolchain(target: Target, make_vars: Mapping[str, str]) -> Toolchain:
    """Compiler, LLVM= and cross-compiling variables for a target (user variables win)."""
    return toolchain_for(
        target.tree.config, target.tree.srcarch, make_vars,
        machine=platform.machine(),
        which=shutil.which if target.where == "host" else None,
    )


def make_argv(target: Target, outdir: Path, opts: BuildOptions) -> list[str]:
    """The exact make command line for one kernel. Pure (apart from looking up programs)."""
    argv = ["make", "-C", target.kdir, f"M={outdir}", f"-j{max(1, opts.make_jobs)}"]
    variables = {**opts.make_vars, **target_toolchain(target, opts.make_vars).variables}
    if opts.extra_symvers and "KBUILD_EXTRA_SYMBOLS" not in variables:
        variables["KBUILD_EXTRA_SYMBOLS"] = " ".join(str(p) for p in opts.extra_symvers)
    argv += [f"{k}={v}" for k, v in variables.items()]
    argv.append("modules")
    return argv


def kernel_compiler_program(cc_version_text: str) -> str | None:
    """'gcc-12 (Debian 12.2.0-14) 12.2.0' -> 'gcc-12' (also triplet-prefixed names such as
    'x86_64-linux-gnu-gcc-14'); a plain 'gcc', or clang -> None (see build.toolchain)."""
    return gcc_program(cc_version_text)


def compiler_in_use(target: Target, make_vars: Mapping[str, str]) -> str:
    """First line of `CC --version` for the compiler this build will use (via the runner)."""
    chosen = Toolchain({**target_toolchain(target, make_vars).variables, **make_vars})
    cc = chosen.cc or chosen.variables.get("CROSS_COMPILE", "") + "gcc"
    if target.where == "host" and not shutil.which(cc):
        cc = "gcc"
    lines: list[str] = []
    try:
        res = target.runner.run([cc, "--version"], timeout=60, on_line=lines.append)
    except Exception:
        return ""
    return lines[0].strip() if res.returncode == 0 and lines else ""


def compiler_mismatch(kernel_cc: str, used_cc: str) -> bool:
    """Kbuild compares the whole --version line; so do we (ignoring surrounding space)."""
    return bool(kernel_cc and used_cc) and kernel_cc.strip() != used_cc.strip()


def plan_parallelism(opts: BuildOptions, n_targets: int, jobs: int, make_jobs: int) -> int:
    """Kernels at once (default 1, or 2 for a matrix); each gets its share of make -j."""
    if make_jobs:
        opts.make_jobs = make_jobs
    jobs = jobs or (2 if n_targets > 1 else 1)
    if n_targets > 1 and not make_jobs:
        opts.make_jobs = max(1, opts.make_jobs // min(jobs, n_targets))
    return jobs


def compiler_mismatches(
    targets: Sequence[Target], make_vars: Mapping[str, str]
) -> list[tuple[Target, str]]:
    """(target, compiler in use) for host targets whose compiler differs from the kernel's."""
    out = []
    for t in targets:
        if t.where == "host":
            used = compiler_in_use(t, make_vars)
            if compiler_mismatch(t.compiler, used):
                out.append((t, used))
    return out
