"""What dkms would do with one dkms.conf for one kernel, decided without running anything.

plan_dkms() turns the directives bash printed (conf.DkmsConf) and facts about the kernel
into a DkmsPlan: excluded or not (and why), the patches to apply, the PRE_BUILD / MAKE /
POST_BUILD / CLEAN commands (shell strings, as dkms runs them with eval in the build copy),
and the expected modules. The rules follow dkms's read_conf/do_build: MAKE[0] unless
MAKE_MATCH[0] is set, the last MAKE[n] whose MAKE_MATCH[n] matches the kernel wins; a
leading `make` becomes `make -jN KERNELRELEASE=<kernel>`; the module count is the highest
index of BUILT_MODULE_NAME/LOCATION and DEST_MODULE_NAME/LOCATION + 1, and a single module
defaults to PACKAGE_NAME.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from kbuild_py.dkms.conf import DkmsConf


@dataclass(frozen=True)
class ExpectedModule:
    name: str  # BUILT_MODULE_NAME, without .ko
    location: str = ""  # BUILT_MODULE_LOCATION relative to the build copy, "" or ending in /

    @property
    def relpath(self) -> str:
        return f"{self.location}{self.name}.ko"


@dataclass
class DkmsPlan:
    package: str
    version: str
    excluded: str | None = None  # the reason, when a BUILD_EXCLUSIVE_* directive excludes
    patches: list[str] = field(default_factory=list)  # files under patches/
    pre_build: str = ""
    make: str = ""
    post_build: str = ""
    clean: str = ""
    expected: list[ExpectedModule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # dkms.conf errors dkms would refuse
    warnings: list[str] = field(default_factory=list)
    install_time: list[str] = field(default_factory=list)  # set, but only dkms install uses them


def ver_key(version: str) -> str:
    """dkms's VER(): every run of digits padded to at least 3 digits, so that plain string
    comparison orders kernel versions (2.6.9-1 -> 002.006.009-001)."""
    return re.sub(r"\d+", lambda m: m.group(0).rjust(3, "0"), version)


def _exclusion(conf: DkmsConf, kernelver: str, config: Mapping[str, str]) -> str | None:
    kernel_re = conf.get("BUILD_EXCLUSIVE_KERNEL")
    if kernel_re and not conf.matched("BUILD_EXCLUSIVE_KERNEL"):
        return f"BUILD_EXCLUSIVE_KERNEL={kernel_re!r} does not match {kernelver}"
    low = conf.get("BUILD_EXCLUSIVE_KERNEL_MIN")
    if low and ver_key(kernelver) < ver_key(low):
        return f"kernel {kernelver} is older than BUILD_EXCLUSIVE_KERNEL_MIN={low}"
    high = conf.get("BUILD_EXCLUSIVE_KERNEL_MAX") or conf.get("OBSOLETE_BY")
    if high and ver_key(kernelver) > ver_key(high):
        what = "BUILD_EXCLUSIVE_KERNEL_MAX" if conf.get("BUILD_EXCLUSIVE_KERNEL_MAX") else (
            "OBSOLETE_BY"
        )
        return f"kernel {kernelver} is newer than {what}={high}"
    arch_re = conf.get("BUILD_EXCLUSIVE_ARCH")
    if arch_re and not conf.matched("BUILD_EXCLUSIVE_ARCH"):
        return f"BUILD_EXCLUSIVE_ARCH={arch_re!r} does not match this kernel's arch"
    if config:  # dkms checks BUILD_EXCLUSIVE_CONFIG only when it finds the kernel's config
        for opt in conf.get("BUILD_EXCLUSIVE_CONFIG").split():
            want = not opt.startswith("!")
            name = opt.lstrip("!")
            if (config.get(name) in ("y", "m")) != want:
                state = "not set" if want else "set"
                return f"BUILD_EXCLUSIVE_CONFIG needs {opt}: {name} is {state} in this kernel"
    return None


def _make_command(conf: DkmsConf, kernel_source_dir: str, build_dir: str) -> str:
    make = conf.array("MAKE")
    chosen = make.get(0, "") if not conf.get("MAKE_MATCH", 0) else ""
    for i in sorted(make):
        if make[i] and conf.get("MAKE_MATCH", i) and conf.matched("MAKE_MATCH", i):
            chosen = make[i]
    return chosen or f"make -C {kernel_source_dir} M={build_dir}"


def expected_modules(conf: DkmsConf) -> tuple[list[ExpectedModule], list[str]]:
    """The modules dkms expects the build to leave, and dkms.conf errors about them."""
    indices = [
        i
        for name in (
            "BUILT_MODULE_NAME",
            "BUILT_MODULE_LOCATION",
            "DEST_MODULE_NAME",
            "DEST_MODULE_LOCATION",
        )
        for i in conf.array(name)
    ]
    count = max(indices, default=-1) + 1
    out, problems = [], []
    for i in range(count):
        name = conf.get("BUILT_MODULE_NAME", i) or (conf.package_name if count == 1 else "")
        loc = conf.get("BUILT_MODULE_LOCATION", i)
        if loc and not loc.endswith("/"):
            loc += "/"
        if not name:
            problems.append(f"no BUILT_MODULE_NAME[{i}]")
            continue
        if name.endswith((".o", ".ko")):
            problems.append(f"BUILT_MODULE_NAME[{i}]={name!r} must not end in .o or .ko")
            continue
        out.append(ExpectedModule(name, loc))
    return out, problems


def plan_dkms(
    conf: DkmsConf,
    *,
    kernelver: str,
    kernel_source_dir: str,
    build_dir: str,
    config: Mapping[str, str],
    make_jobs: int,
    make_vars: Mapping[str, str] | None = None,
) -> DkmsPlan:
    """The build dkms would run for this kernel (make_vars are appended to MAKE, where make
    passes them on to every sub-make). Pure."""
    plan = DkmsPlan(package=conf.package_name, version=conf.package_version)
    if not plan.package:
        plan.problems.append("no PACKAGE_NAME")
    if not plan.version:
        plan.problems.append("no PACKAGE_VERSION")
    plan.expected, problems = expected_modules(conf)
    plan.problems += problems
    plan.excluded = _exclusion(conf, kernelver, config)
    patches = conf.array("PATCH")
    for i in sorted(patches):
        if patches[i] and (not conf.get("PATCH_MATCH", i) or conf.matched("PATCH_MATCH", i)):
            if "/../" in f"patches/{patches[i]}":
                plan.problems.append(f"PATCH[{i}]={patches[i]!r} leaves patches/ ('..')")
            else:
                plan.patches.append(patches[i])
    command = _make_command(conf, kernel_source_dir, build_dir)
    if config.get("CONFIG_CC_IS_CLANG") == "y":
        command += " LLVM=1"
    if command.startswith("make"):
        command = f"make -j{max(1, make_jobs)} KERNELRELEASE={kernelver}" + command[4:]
    if make_vars:
        command += "".join(f" {shlex.quote(f'{k}={v}')}" for k, v in make_vars.items())
    plan.make = command
    plan.pre_build = conf.get("PRE_BUILD")
    plan.post_build = conf.get("POST_BUILD")
    clean = conf.get("CLEAN")
    plan.clean = "" if clean in ("true", "/bin/true", "/usr/bin/true") else clean
    for name in conf.unhonoured():
        plan.warnings.append(f"dkms.conf: {name} is not applied by kmod-py build")
    plan.install_time = conf.install_time()
    return plan
