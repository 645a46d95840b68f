"""kmod.toml, the project file, and finding a module directory.

[module]
name = "hello_module"          # or modules = ["a", "b"] for several
license = "GPL"
author = "..."
description = "..."
version = "0.1.0"

[build]
kernels = ["debian:bookworm", "debian:trixie"]   # empty: the running kernel
make_vars = { W = "1" }

[test]
params = { debug = "1" }       # module parameters for insmod
script = "tests/smoke.sh"      # run in the guest after insmod
timeout = 120
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbuild_py.errors import ProjectError, UsageError
from kbuild_py.project.makevars import check_make_vars

PROJECT_FILE = "kmod.toml"
_OBJ_M = re.compile(r"^\s*obj-(?:m|\$\([A-Z0-9_]+\))\s*[:+]?=", re.M)


@dataclass
class Project:
    path: Path
    modules: list[str] = field(default_factory=list)
    license: str | None = None
    author: str | None = None
    description: str | None = None
    version: str | None = None
    kernels: list[str] = field(default_factory=list)
    make_vars: dict[str, str] = field(default_factory=dict)
    test_params: dict[str, str] = field(default_factory=dict)
    test_script: str | None = None
    test_timeout: float | None = None
    has_file: bool = False
    follow_dkms_conf: bool = True  # a dkms.conf beside kmod.toml decides the build
    sign: dict[str, Any] = field(default_factory=dict)  # [sign]: key, cert, hash, strip


def _table(data: dict[str, Any], key: str, where: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: [{key}] must be a table", "see `kmod-py new` for an example")
    return value


def _str_list(value: Any, what: str, where: Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where}: {what} must be a list of strings")
    return list(value)


def _str_map(value: Any, what: str, where: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: {what} must be a table of NAME = value")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool):
            v = "1" if v else "0"
        if not isinstance(v, (str, int, float)):
            raise ProjectError(f"{where}: {what}.{k} must be a string or a number")
        out[str(k)] = str(v)
    return out


KNOWN_KEYS = {
    "module": {"name", "modules", "license", "author", "description", "version"},
    "build": {"kernels", "make_vars", "follow_dkms_conf"},
    "test": {"params", "script", "timeout"},
    "sign": {"key", "cert", "hash", "strip"},
}


def _check_keys(data: dict[str, Any], file: Path) -> None:
    """A misspelt key would silently change what gets built: refuse it, suggesting the word."""
    import difflib

    for key, value in data.items():
        if key not in KNOWN_KEYS:
            near = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            raise ProjectError(
                f"{file}: unknown table or key {key!r}",
                f"did you mean [{near[0]}]?"
                if near
                else "known tables: [module], [build], [test], [sign]",
            )
        if isinstance(value, dict):
            for sub in value:
                if sub not in KNOWN_KEYS[key]:
                    near = difflib.get_close_matches(sub, KNOWN_KEYS[key], n=1)
                    known = ", ".join(sorted(KNOWN_KEYS[key]))
                    raise ProjectError(
                        f"{file}: unknown key {sub!r} in [{key}]",
                        f"did you mean {near[0]!r}?" if near else f"[{key}] knows: {known}",
                    )


def load_project(path: Path) -> Project:
    """Read PATH/kmod.toml when it exists; a directory without one is a plain Kbuild project."""
    path = Path(path)
    file = path / PROJECT_FILE
    if not file.is_file():
        return Project(path=path)
    try:
        data = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProjectError(f"{file}: {e}", "fix the TOML syntax") from e
    module = _table(data, "module", file)
    build = _table(data, "build", file)
    _check_keys(data, file)
    test = _table(data, "test", file)
    modules = _str_list(module.get("modules", module.get("name", [])), "module.name", file)
    timeout = test.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        or not seconds_ok(timeout)
    ):
        raise ProjectError(f"{file}: test.timeout must be finite seconds (more than 0), "
                           f"not {timeout!r}")
    follow = build.get("follow_dkms_conf", True)
    if not isinstance(follow, bool):
        raise ProjectError(f"{file}: build.follow_dkms_conf must be true or false")
    script = test.get("script")
    if script is not None and not isinstance(script, str):
        raise ProjectError(f"{file}: test.script must be a path (a string)")
    sign = _sign_table(_table(data, "sign", file), file)
    return Project(
        path=path,
        modules=modules,
        license=module.get("license"),
        author=module.get("author"),
        description=module.get("description"),
        version=module.get("version"),
        kernels=_str_list(build.get("kernels", []), "build.kernels", file),
        make_vars=check_make_vars(
            _str_map(build.get("make_vars", {}), "build.make_vars", file),
            f"{file}: build.make_vars",
        ),
        test_params=_str_map(test.get("params", {}), "test.params", file),
        test_script=script,
        test_timeout=float(timeout) if timeout is not None else None,
        has_file=True,
        follow_dkms_conf=follow,
        sign=sign,
    )


def _sign_table(sign: dict[str, Any], file: Path) -> dict[str, Any]:
    """[sign]: key and cert (paths, relative to the project) go together; hash a name;
    strip true or false."""
    for k in ("key", "cert", "hash"):
        if k in sign and not isinstance(sign[k], str):
            raise ProjectError(f"{file}: sign.{k} must be a string")
    if ("key" in sign) != ("cert" in sign):
        raise ProjectError(f"{file}: [sign] needs both key and cert", "or neither (DKMS's pair)")
    if "strip" in sign and not isinstance(sign["strip"], bool):
        raise ProjectError(f"{file}: sign.strip must be true or false")
    return dict(sign)


def _is_module_dir(path: Path) -> bool:
    if (path / "Kbuild").is_file():
        return True
    for name in ("Makefile", "makefile", "GNUmakefile"):
        mk = path / name
        if mk.is_file() and _OBJ_M.search(mk.read_text(errors="replace")):
            return True
    return False


def module_dirs_below(path: Path, depth: int = 3, limit: int = 20) -> list[Path]:
    """Module directories (Kbuild, or a Makefile with obj-m) under PATH, nearest first."""
    found: list[Path] = []
    level = [path]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            try:
                subs = sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            for sub in subs:
                if sub.name.startswith(".") or sub.name == "__pycache__":
                    continue
                if _is_module_dir(sub):
                    found.append(sub)
                else:
                    nxt.append(sub)
        level = nxt
    return found[:limit]


def find_module_dir(path: Path) -> Path:
    """PATH must hold a Kbuild, a Makefile that names obj-m, or a dkms.conf."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: no such directory", "pass the module's directory")
    if any(c.isspace() for c in str(path.resolve())):
        raise UsageError(
            f"{path.resolve()}: Kbuild cannot build in a path with white space (M=...)",
            "move the module to a path without spaces",
        )
    if (path / "dkms.conf").is_file() or _is_module_dir(path):
        return path.resolve()
    below = module_dirs_below(path)
    if below:
        names = "\n  ".join(str(d.relative_to(path)) for d in below)
        first = below[0].relative_to(path)
        raise UsageError(
            f"{path} is not itself an out-of-tree module: no Kbuild, no Makefile with obj-m, "
            f"no dkms.conf; module directories below it:\n  {names}",
            f"build one with `kmod-py build {path / first}`; with a kmod.toml (or a dkms.conf "
            f"whose MAKE builds them all) in {path}, each build copies the whole tree, so "
            "paths between the directories (../include, ../other/Module.symvers) work",
        )
    raise UsageError(
        f"{path} is not an out-of-tree module: no Kbuild, no Makefile with obj-m, "
        "no dkms.conf",
        "create one with `kmod-py new NAME`, or add `obj-m := NAME.o` to a Kbuild file",
    )


def seconds_ok(value: float) -> bool:
    """A usable timeout: finite and more than 0 (nan and inf are neither)."""
    import math

    return math.isfinite(value) and value > 0
