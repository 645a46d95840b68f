"""Make variables as make sees them: `--make-var NAME=VALUE` and kmod.toml's make_vars.

A make variable name is any non-empty run of characters without white space, `=`, `:`,
`#`, `(`, `)` or `$` (make itself is more permissive, but those break a command-line
assignment): `ccflags-y`, `KCFLAGS`, `CONFIG_FOO`, `W`. Some variables are kmod-py's own
(it sets them for every build); overriding them would build somewhere else or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from kbuild_py.errors import UsageError

_NAME = re.compile(r"^[^\s=:#()$]+$")

# name -> why kmod-py keeps it
OWNED = {
    "M": "kmod-py points M= at the per-kernel copy of your module (.kmod-py/<release>/)",
    "KBUILD_EXTMOD": "it is M= under another name: kmod-py sets it through M=",
    "SUBDIRS": "removed from Kbuild in 5.4; kmod-py sets M= for you",
    "O": "kmod-py builds in the per-kernel copy; an O= output tree would leave it empty",
    "KBUILD_OUTPUT": "it is O= under another name",
    "KERNELRELEASE": "the release comes from the kernel's build tree (--kernel/--kdir)",
}


def check_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise UsageError(
            f"{where}: {name!r} is not a make variable name",
            "a name has no white space and none of = : # ( ) $ (e.g. ccflags-y, KCFLAGS, W)",
        )
    if name in OWNED:
        raise UsageError(f"{where}: {name} is set by kmod-py: {OWNED[name]}",
                         "drop it (use --kdir/--kernel to choose the kernel)")


def parse_make_vars(pairs: Iterable[str], option: str = "--make-var") -> dict[str, str]:
    """['ccflags-y=-I x', 'W=1'] -> {'ccflags-y': '-I x', 'W': '1'}; refuses bad or owned names."""
    out: dict[str, str] = {}
    for p in pairs:
        name, eq, value = p.partition("=")
        if not eq:
            raise UsageError(f"{option} {p!r} is not NAME=VALUE", f"e.g. {option} W=1")
        check_name(name, f"{option} {p}")
        out[name] = value
    return out


def check_make_vars(variables: Mapping[str, str], where: str) -> dict[str, str]:
    for name in variables:
        check_name(name, where)
    return dict(variables)
