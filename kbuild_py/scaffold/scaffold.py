"""`kmod-py new`: validate a module name and render the project templates."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kbuild_py.errors import UsageError
from kbuild_py.licenses import GPL_COMPATIBLE
from kbuild_py.paths import data_path
from kbuild_py.trust import fs

SPDX = {
    "GPL": "GPL-2.0",
    "GPL v2": "GPL-2.0-only",
    "GPL and additional rights": "GPL-2.0",
    "Dual BSD/GPL": "GPL-2.0 OR BSD-3-Clause",
    "Dual MIT/GPL": "GPL-2.0 OR MIT",
    "Dual MPL/GPL": "GPL-2.0 OR MPL-1.1",
}
# MODULE_NAME_LEN (64 - sizeof(unsigned long)) minus the terminating NUL, on 64-bit.
MAX_NAME = 55
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic "
    "_Imaginary _Noreturn _Static_assert _Thread_local asm typeof bool true false".split()
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Template name -> output file name (NAME is replaced by the module name).
FILES = {
    "module.c.j2": "NAME.c",
    "Kbuild.j2": "Kbuild",
    "Makefile.j2": "Makefile",
    "kmod.toml.j2": "kmod.toml",
    "gitignore.j2": ".gitignore",
    "README.md.j2": "README.md",
    "dkms.conf.j2": "dkms.conf",
}


@dataclass
class ModuleSpec:
    name: str
    license: str = "GPL"
    author: str = "Your Name <you@example.com>"
    description: str = ""
    version: str = "0.1.0"
    allow_proprietary: bool = False

    def __post_init__(self) -> None:
        if not self.description:
            self.description = f"{self.name} out-of-tree kernel module"


@dataclass
class ScaffoldResult:
    path: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # the user's own files, untouched
    warnings: list[str] = field(default_factory=list)


def validate_name(name: str) -> None:
    if not name:
        raise UsageError("the module name is empty", "pass a name such as hello_module")
    if not _IDENT.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if suggestion[:1].isdigit():
            suggestion = "_" + suggestion
        raise UsageError(
            f"invalid module name {name!r}: it must be a C identifier "
            "(letters, digits, _; not starting with a digit) — Kbuild would rename it",
            f"use {suggestion}",
        )
    if len(name) > MAX_NAME:
        raise UsageError(
            f"module name {name!r} is {len(name)} characters; the kernel allows at most "
            f"{MAX_NAME} (MODULE_NAME_LEN on 64-bit)",
            f"shorten it, e.g. {name[:MAX_NAME]}",
        )
    if name in C_KEYWORDS:
        raise UsageError(f"module name {name!r} is a C keyword", f"use {name}_module")


def license_warnings(license: str, allow_proprietary: bool) -> list[str]:
    if license in GPL_COMPATIBLE:
        return []
    if not allow_proprietary:
        raise UsageError(
            f"license {license!r} is not one the kernel treats as GPL-compatible",
            "use one of: "
            + ", ".join(repr(x) for x in GPL_COMPATIBLE)
            + " — or pass --allow-proprietary",
        )
    return [
        f"license {license!r} is not GPL-compatible: loading it taints the kernel (P) and "
        'the kernel refuses it every EXPORT_SYMBOL_GPL symbol ("Unknown symbol")'
    ]


def templates_dir() -> Path:
    """templates/ inside the installed wheel, else the source checkout's top-level templates/."""
    return data_path("templates")


def _c_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _c_comment(value: str) -> str:
    """Text inside a /* */ block: one line, and no "*/" that would end the comment early."""
    return value.replace("\n", " ").replace("*/", "* /")


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _sh_string(value: str) -> str:
    """A single-quoted bash word (dkms.conf is sourced by bash)."""
    return "'" + value.replace("'", "'\\''").replace("\n", " ") + "'"


def render(spec: ModuleSpec) -> dict[str, str]:
    """Render every template: output file name -> text. Pure."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["c_string"] = _c_string
    env.filters["c_comment"] = _c_comment
    env.filters["toml"] = _toml_string
    env.filters["sh"] = _sh_string
    ctx = {
        "name": spec.name,
        "license": spec.license,
        "spdx": SPDX.get(spec.license, "LicenseRef-Proprietary"),
        "author": spec.author,
        "description": spec.description,
        "version": spec.version,
    }
    return {
        out.replace("NAME", spec.name): env.get_template(tpl).render(ctx)
        for tpl, out in FILES.items()
    }


def scaffold_module(spec: ModuleSpec, parent: Path, force: bool = False) -> ScaffoldResult:
    """Create PARENT/NAME/. Refuses (writing nothing) on bad input or a non-empty NAME/."""
    validate_name(spec.name)
    warnings = license_warnings(spec.license, spec.allow_proprietary)
    parent = Path(parent)
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is not a directory", "pass a directory with --dir")
    dest = (parent / spec.name).absolute()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory", "pick another name or --dir")
    existing = sorted(p for p in dest.iterdir()) if dest.is_dir() else []
    if existing and not force:
        raise UsageError(
            f"{dest} already exists and is not empty; nothing was written",
            "pass --force to rewrite only the files kmod-py generates (others are kept)",
        )
    files = render(spec)
    for name in files:  # refuse before writing anything
        target = dest / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise UsageError(
                f"{target} is not a regular file; nothing was written",
                "move it away and run again",
            )
    made_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    result = ScaffoldResult(path=dest.resolve(), warnings=warnings)
    try:
        for name, text in files.items():
            target = dest / name
            # a new file replaces the old entry: a hard link to it elsewhere keeps its content
            fs.write_replacing(target, text)
            result.written.append(target)
    except OSError:  # disk full, read-only ...: the error names the file; undo what was new
        if made_dest:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for p in result.written:
                if p.name not in {e.name for e in existing}:
                    p.unlink(missing_ok=True)
        raise
    result.kept = [p for p in existing if p.name not in files]
    return result
