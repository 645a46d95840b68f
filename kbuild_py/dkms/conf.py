"""Reading dkms.conf the way dkms does: bash sources it, kmod-py parses what bash prints.

dkms.conf is a bash fragment (it may source the kernel's .config, run `$(…)`, use `[[ ]]`
and arrays). It is never evaluated in Python: a bash process, with the variables dkms
gives it (kernelver, kernel_source_dir, arch, dkms_tree, source_tree, module, …), unsets
every directive, sources the file with its stdout discarded (as dkms does), strips one
trailing CR from each value and prints every index of every directive back, escaped, after
a marker line. The same bash process also answers the regular-expression questions dkms
asks with bash's `=~` (MAKE_MATCH, PATCH_MATCH, BUILD_EXCLUSIVE_KERNEL/_ARCH), so they
match exactly as dkms would. The process runs through a Runner (the host, or the
kernel's container) with a timeout.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.errors import ProjectError
from kbuild_py.seams.process import Runner

CONF_FILE = "dkms.conf"
READ_TIMEOUT = 30.0

# Every directive dkms (3.0.10 … 3.2) reads from dkms.conf.
DIRECTIVES = (
    "PACKAGE_NAME PACKAGE_VERSION POST_ADD POST_BUILD POST_INSTALL POST_REMOVE PRE_BUILD "
    "PRE_INSTALL BUILD_DEPENDS BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG "
    "BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX "
    "OBSOLETE_BY MAKE MAKE_MATCH PATCH PATCH_MATCH BUILT_MODULE_NAME BUILT_MODULE_LOCATION "
    "DEST_MODULE_NAME DEST_MODULE_LOCATION STRIP AUTOINSTALL NO_WEAK_MODULES "
    "BUILD_DEPENDS_REBUILD CLEAN REMAKE_INITRD MODULES_CONF MODULES_CONF_OBSOLETES "
    "MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY"
).split()

# What `kmod-py build` does with each directive it reads.
HONOURED = frozenset(
    "PACKAGE_NAME PACKAGE_VERSION MAKE MAKE_MATCH CLEAN BUILT_MODULE_NAME BUILT_MODULE_LOCATION "
    "BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX "
    "BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG OBSOLETE_BY PATCH PATCH_MATCH PRE_BUILD "
    "POST_BUILD".split()
)
# Used only when dkms installs a module (or by its other commands): they cannot change what
# is built. DEST_MODULE_NAME/LOCATION still count when dkms sizes the module arrays.
INSTALL_TIME = frozenset(
    "POST_ADD POST_INSTALL POST_REMOVE PRE_INSTALL DEST_MODULE_NAME DEST_MODULE_LOCATION "
    "AUTOINSTALL NO_WEAK_MODULES REMAKE_INITRD MODULES_CONF MODULES_CONF_OBSOLETES "
    "MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY".split()
)
# Change dkms's build but are not done by kmod-py: a warning names each one that is set.
NOT_HONOURED = frozenset(DIRECTIVES) - HONOURED - INSTALL_TIME  # STRIP, BUILD_DEPENDS, …

# Regexes dkms applies with bash's =~ (array name, subject variable).
_MATCHED = (
    ("MAKE_MATCH", "kernelver"),
    ("PATCH_MATCH", "kernelver"),
    ("BUILD_EXCLUSIVE_KERNEL", "kernelver"),
    ("BUILD_EXCLUSIVE_ARCH", "arch"),
)


@dataclass(frozen=True)
class ConfContext:
    """The variables dkms sets before it sources dkms.conf (as the runner sees paths)."""

    kernelver: str
    kernel_source_dir: str
    arch: str
    dkms_tree: str
    source_tree: str
    build_dir: str  # where dkms.conf sits in the copy; bash runs there
    install_tree: str = "/lib/modules"
    parallel_jobs: int = 1
    module: str = ""  # "" = take PACKAGE_NAME / PACKAGE_VERSION from the file itself
    module_version: str = ""

    @property
    def kernel_config(self) -> str:
        return f"{self.kernel_source_dir}/include/config/auto.conf"


@dataclass
class DkmsConf:
    """The directives of one dkms.conf as bash left them, for one kernel."""

    path: Path
    values: dict[str, dict[int, str]] = field(default_factory=dict)
    matches: dict[str, dict[int, bool]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # what bash printed while sourcing
    module: str = ""  # $module / $module_version as dkms.conf saw them
    module_version: str = ""

    def get(self, name: str, index: int = 0) -> str:
        return self.values.get(name, {}).get(index, "")

    def array(self, name: str) -> dict[int, str]:
        return dict(sorted(self.values.get(name, {}).items()))

    def matched(self, name: str, index: int = 0) -> bool:
        return self.matches.get(name, {}).get(index, False)

    @property
    def package_name(self) -> str:
        return self.get("PACKAGE_NAME")

    @property
    def package_version(self) -> str:
        return self.get("PACKAGE_VERSION")

    def is_set(self, name: str) -> bool:
        return any(v != "" for v in self.values.get(name, {}).values())

    def unhonoured(self) -> list[str]:
        """Directives set in the file that change dkms's build and kmod-py does not do."""
        return sorted(n for n in NOT_HONOURED if self.is_set(n))

    def install_time(self) -> list[str]:
        return sorted(n for n in INSTALL_TIME if self.is_set(n))


def _q(value: str) -> str:
    """Single-quote a value for bash."""
    return "'" + value.replace("'", "'\\''") + "'"


def reader_script(ctx: ConfContext, marker: str) -> str:
    """The bash program that sources dkms.conf and prints the directives back. Pure."""
    names = " ".join(DIRECTIVES)
    setup = "\n".join(
        f"{k}={_q(str(v))}"
        for k, v in (
            ("kernelver", ctx.kernelver),
            ("kernel_source_dir", ctx.kernel_source_dir),
            ("arch", ctx.arch),
            ("dkms_tree", ctx.dkms_tree),
            ("source_tree", ctx.source_tree),
            ("install_tree", ctx.install_tree),
            ("parallel_jobs", ctx.parallel_jobs),
            ("kernel_config", ctx.kernel_config),
            ("module", ctx.module),
            ("module_version", ctx.module_version),
        )
    )
    matches = "\n".join(
        f'for _i in "${{!{arr}[@]}}"; do _r="${{{arr}[$_i]%$CR}}"; '
        f'if [[ -n $_r && ${subj} =~ $_r ]]; then _m=1; else _m=0; fi; '
        f'printf "M\\t%s\\t%s\\t%s\\n" {arr} "$_i" "$_m"; done'
        for arr, subj in _MATCHED
    )
    return f"""shopt -s extglob
CR=$'\\r'
{setup}
if [[ -e "$kernel_source_dir/include/config/auto.conf" ]]; then
    kernel_config="$kernel_source_dir/include/config/auto.conf"
else
    kernel_config="$kernel_source_dir/.config"
fi
_kmodpy_source() {{
    for _v in {names}; do unset "$_v"; done
    . ./{CONF_FILE} >/dev/null
}}
if [[ -z $module ]]; then
    _nv=$( _kmodpy_source 2>/dev/null
           printf "%s\\t%s" "${{PACKAGE_NAME%$CR}}" "${{PACKAGE_VERSION%$CR}}" )
    module=${{_nv%%$'\\t'*}}; module_version=${{_nv#*$'\\t'}}
fi
_kmodpy_source
printf '%s\\n' {marker}
for _n in {names}; do
    eval "_idx=(\\"\\${{!$_n[@]}}\\")"
    for _i in "${{_idx[@]}}"; do
        eval "_v=\\"\\${{$_n[$_i]}}\\""
        _v="${{_v%$CR}}"; _v="${{_v//\\\\/\\\\\\\\}}"
        _v="${{_v//$'\\n'/\\\\n}}"; _v="${{_v//$'\\t'/\\\\t}}"
        printf "V\\t%s\\t%s\\t%s\\n" "$_n" "$_i" "$_v"
    done
done
{matches}
printf "N\\t%s\\t%s\\n" "$module" "$module_version"
"""


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value)


def parse_reader_output(path: Path, lines: list[str], marker: str) -> DkmsConf:
    """The reader's output -> DkmsConf. Lines before the marker are bash's own messages."""
    conf = DkmsConf(path=path)
    seen = False
    for line in lines:
        if not seen:
            if line == marker:
                seen = True
            elif line.strip():
                conf.messages.append(line)
            continue
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t", 2)
        if tag == "V" and len(parts) == 3 and parts[1].isdigit():
            conf.values.setdefault(parts[0], {})[int(parts[1])] = _unescape(parts[2])
        elif tag == "M" and len(parts) == 3 and parts[1].isdigit():
            conf.matches.setdefault(parts[0], {})[int(parts[1])] = parts[2] == "1"
        elif tag == "N" and len(parts) == 2:
            conf.module, conf.module_version = parts
    if not seen:
        raise ProjectError(
            f"{path}: bash did not finish reading it: " + " / ".join(conf.messages[-3:]),
            "run `bash -n dkms.conf` to find the syntax error",
        )
    return conf


def read_conf(
    runner: Runner,
    ctx: ConfContext,
    path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = READ_TIMEOUT,
) -> DkmsConf:
    """Source PATH (a dkms.conf inside ctx.build_dir, as the runner sees it) in bash."""
    marker = f"@@kmod-py-dkms-conf-{secrets.token_hex(8)}@@"
    lines: list[str] = []
    res = runner.run(
        ["bash", "-c", reader_script(ctx, marker)],
        cwd=Path(ctx.build_dir),
        env={"LC_ALL": "C", **(env or {})},
        timeout=timeout,
        on_line=lines.append,
    )
    if res.timed_out:
        raise ProjectError(
            f"{path}: reading it took longer than {timeout:.0f} s",
            "dkms.conf is sourced by bash: make it fast and non-interactive",
        )
    if res.returncode != 0:
        raise ProjectError(
            f"{path}: bash exited {res.returncode} while reading it: "
            + " / ".join(lines[-3:]),
            "run `bash -n dkms.conf` to check it",
        )
    return parse_reader_output(path, lines, marker)
