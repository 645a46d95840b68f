"""The toolchain a kernel's modules must be built with, as make variables. Pure.

Read from the build tree's config: the compiler Debian built the kernel with
(CONFIG_CC_VERSION_TEXT), clang/lld kernels (CONFIG_CC_IS_CLANG, CONFIG_LD_IS_LLD: Kbuild's
`LLVM=1`, as dkms 3.2 does), and another architecture than the machine the build runs on
(`ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# Kbuild's SRCARCH -> the GNU triplet prefix of Debian's cross compilers.
CROSS_PREFIX = {"arm64": "aarch64-linux-gnu-", "x86": "x86_64-linux-gnu-"}
# uname -m -> SRCARCH
MACHINE_SRCARCH = {"x86_64": "x86", "aarch64": "arm64"}

Which = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Toolchain:
    variables: dict[str, str] = field(default_factory=dict)  # make VAR=value, in order
    notes: tuple[str, ...] = ()  # what was chosen and why, for the user

    @property
    def cc(self) -> str | None:
        """The C compiler program these variables select (None: Kbuild's default gcc)."""
        if "LLVM" in self.variables:
            return llvm_program("clang", self.variables["LLVM"])
        return self.variables.get("CC")


def llvm_program(tool: str, llvm: str) -> str:
    """Kbuild's LLVM= spelling: 1 -> clang, -16 -> clang-16, /usr/lib/llvm-16/bin/ -> …/clang."""
    if llvm.startswith("-"):
        return f"{tool}{llvm}"
    if llvm.endswith("/"):
        return f"{llvm}{tool}"
    return tool


def gcc_program(cc_version_text: str) -> str | None:
    """'gcc-12 (Debian 12.2.0-14) 12.2.0' -> 'gcc-12' (also triplet-prefixed names such as
    'x86_64-linux-gnu-gcc-14'); a plain 'gcc' -> None."""
    prog = cc_version_text.split(" ", 1)[0] if cc_version_text else ""
    if prog != "gcc" and re.fullmatch(r"(?:[\w.]+-)*gcc(-\d+)?", prog):
        return prog
    return None


def clang_major(cc_version_text: str) -> str | None:
    """'Debian clang version 16.0.6 (15)' -> '16'."""
    m = re.search(r"clang version (\d+)", cc_version_text)
    return m.group(1) if m else None


def toolchain_for(
    config: Mapping[str, str],
    srcarch: str,
    user_vars: Mapping[str, str],
    *,
    machine: str,
    which: Which | None,
) -> Toolchain:
    """Make variables for a kernel (config, SRCARCH) built on `machine` (uname -m).

    `which` looks a program up where the build runs (None: a kmod-py container, which holds
    exactly the kernel's compiler). Variables the user set (--make-var, kmod.toml) win.
    """
    cc_text = config.get("CONFIG_CC_VERSION_TEXT", "")
    out: dict[str, str] = {}
    notes: list[str] = []
    prefix = ""
    if srcarch and srcarch != MACHINE_SRCARCH.get(machine, machine):
        prefix = user_vars.get("CROSS_COMPILE", CROSS_PREFIX.get(srcarch, ""))
        out["ARCH"] = srcarch
        if prefix:
            out["CROSS_COMPILE"] = prefix
        notes.append(f"cross-compiling for {srcarch}: ARCH={srcarch} CROSS_COMPILE={prefix}")
    if "CC" in user_vars or "LLVM" in user_vars:
        pass  # the user chose the compiler
    elif config.get("CONFIG_CC_IS_CLANG") == "y":
        major = clang_major(cc_text)
        lld = config.get("CONFIG_LD_IS_LLD") == "y"
        versioned = f"clang-{major}" if major else ""
        use_versioned = bool(versioned) and (which is None or which(versioned) is not None)
        if lld:
            out["LLVM"] = f"-{major}" if use_versioned else "1"
        else:
            out["CC"] = versioned if use_versioned else "clang"
        chosen = f"LLVM={out['LLVM']}" if lld else f"CC={out['CC']}"
        why = "CONFIG_CC_IS_CLANG=y" + (", CONFIG_LD_IS_LLD=y" if lld else "")
        notes.append(f"clang-built kernel ({why}, {cc_text or 'clang'}): building with {chosen}")
        if major and not use_versioned:
            notes.append(f"{versioned} is not installed: using the default clang")
    else:
        gcc = gcc_program(cc_text)
        if gcc and prefix and not gcc.startswith(prefix):
            gcc = prefix + gcc
        if gcc and (which is None or which(gcc) is not None):
            out["CC"] = gcc
    return Toolchain({k: v for k, v in out.items() if k not in user_vars}, tuple(notes))
