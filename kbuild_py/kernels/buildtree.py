"""A kernel build tree (what `make -C KDIR` points at), read without running anything.

Only a few files are read, so a BuildTree also works on a *snapshot* of a tree:
a directory holding just include/generated/utsrelease.h, include/config/auto.conf
(or .config) and Module.symvers, as copied out of a kernel-headers container.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from kbuild_py.errors import NoBuildTreeError

# Files a BuildTree reads; a snapshot needs exactly these (those that exist).
# In a snapshot of a container target's tree: one in-tree module of the image (images.tree
# copies it when the image has modules), which tells the check rules sizeof(struct module).
SAMPLE_MODULE = "kmod-py-sample-module.ko"
SNAPSHOT_FILES = (
    "include/generated/utsrelease.h",
    "include/config/auto.conf",
    "include/config/kernel.release",
    ".config",
    "Module.symvers",
)

_UTS_RE = re.compile(r'#define\s+UTS_RELEASE\s+"([^"]*)"')

# MODULE_ARCH_VERMAGIC per SRCARCH (arch/*/include/asm/module.h); x86 is empty.
_ARCH_VERMAGIC = {"x86": "", "arm64": "aarch64"}


def parse_kconfig(text: str) -> dict[str, str]:
    """Parse auto.conf/.config lines ``CONFIG_X=value`` (quotes removed)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        config[key] = value
    return config


def missing_tree_hint(release: str) -> str:
    return (
        f"install the headers (apt-get install linux-headers-{release}), pass --kdir DIR, "
        "or build in a container with --kernel debian:bookworm (or debian:trixie, ...)"
    )


@dataclass(frozen=True)
class BuildTree:
    path: Path
    arch: str = field(default="")

    @classmethod
    def open(cls, path: Path | str, release_hint: str | None = None) -> BuildTree:
        p = Path(path)
        if not p.is_dir():
            what = f"kernel {release_hint}" if release_hint else "this kernel"
            raise NoBuildTreeError(
                f"no build tree for {what} at {p}",
                missing_tree_hint(release_hint or "<release>"),
            )
        tree = cls(p.resolve())
        if (
            not (tree.path / "include/generated/utsrelease.h").is_file()
            and not (tree.path / "include/config/kernel.release").is_file()
        ):
            raise NoBuildTreeError(
                f"{p} is not a prepared kernel build tree (no include/generated/utsrelease.h)",
                "point --kdir at /lib/modules/<release>/build or run `make modules_prepare` there",
            )
        return tree

    @classmethod
    def for_release(cls, release: str) -> BuildTree:
        return cls.open(Path("/lib/modules") / release / "build", release_hint=release)

    # --- facts read from the tree -------------------------------------------------
    @cached_property
    def release(self) -> str:
        uts = self.path / "include/generated/utsrelease.h"
        if uts.is_file():
            m = _UTS_RE.search(uts.read_text(errors="replace"))
            if m:
                return m.group(1)
        kr = self.path / "include/config/kernel.release"
        return kr.read_text().strip() if kr.is_file() else ""

    @cached_property
    def config(self) -> dict[str, str]:
        for name in ("include/config/auto.conf", ".config"):
            f = self.path / name
            if f.is_file():
                return parse_kconfig(f.read_text(errors="replace"))
        return {}

    def enabled(self, option: str) -> bool:
        return self.config.get(option) in ("y", "m")

    @property
    def srcarch(self) -> str:
        if self.arch:
            return self.arch
        if self.enabled("CONFIG_X86_64") or self.enabled("CONFIG_X86"):
            return "x86"
        if self.enabled("CONFIG_ARM64"):
            return "arm64"
        machine = platform.machine()
        return {"x86_64": "x86", "aarch64": "arm64"}.get(machine, machine)

    @property
    def elf_machine(self) -> str:
        """pyelftools' e_machine name the kernel's modules must carry."""
        return {"x86": "EM_X86_64", "arm64": "EM_AARCH64"}.get(self.srcarch, "")

    @property
    def cc_version_text(self) -> str:
        return self.config.get("CONFIG_CC_VERSION_TEXT", "")

    @property
    def modversions(self) -> bool:
        return self.enabled("CONFIG_MODVERSIONS")

    @property
    def vermagic(self) -> str:
        """Rebuild VERMAGIC_STRING (include/linux/vermagic.h) from the tree's config."""
        parts = [self.release + " "]
        if self.enabled("CONFIG_SMP"):
            parts.append("SMP ")
        if self.enabled("CONFIG_PREEMPT_RT"):
            parts.append("preempt_rt ")
        elif self.enabled("CONFIG_PREEMPT_BUILD") or (
            "CONFIG_PREEMPT_BUILD" not in self.config and self.enabled("CONFIG_PREEMPT")
        ):
            parts.append("preempt ")
        if self.enabled("CONFIG_MODULE_UNLOAD"):
            parts.append("mod_unload ")
        if self.modversions:
            parts.append("modversions ")
        parts.append(_ARCH_VERMAGIC.get(self.srcarch, ""))
        if self.enabled("CONFIG_RANDSTRUCT") or self.enabled("CONFIG_GCC_PLUGIN_RANDSTRUCT"):
            seed = self.path / "include/generated/randstruct_hash.h"
            if seed.is_file():
                m = re.search(r'"([0-9a-f]+)"', seed.read_text())
                if m:
                    parts.append(f"RANDSTRUCT_{m.group(1)}")
        return "".join(parts)

    @property
    def symvers_path(self) -> Path | None:
        p = self.path / "Module.symvers"
        return p if p.is_file() else None
