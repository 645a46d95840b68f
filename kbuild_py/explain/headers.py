"""A kernel's headers as a searchable set, and the targeted lookup of identifiers in them.

No index of the tree is built: one `grep -rnwF` over include/ and arch/<arch>/include/ for
exactly the names asked for (≈0.1 s warm for Debian's 53 MB of headers), then the few hit
files are read to cut out each declaration (decls.py). grep is the one outside process
here; `Grep` is its seam (tests inject a pure-Python one).
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.errors import InfraError
from kbuild_py.explain import decls
from kbuild_py.explain.model import Declaration, Kernel, Lookup, Mention

# A hit: (file, 1-based line, text). A Grep takes directories and names.
Hit = tuple[Path, int, str]
Grep = Callable[[Sequence[Path], Sequence[str]], list[Hit]]
GREP_TIMEOUT = 120.0

_VERSION = re.compile(r"#define\s+LINUX_VERSION_(CODE|MAJOR|PATCHLEVEL|SUBLEVEL)\s+(\d+)")
_UTS = re.compile(r'#define\s+UTS_RELEASE\s+"([^"]*)"')


@dataclass(frozen=True)
class HeaderTree:
    """Where one kernel's headers live: `roots` are searched, file names are shown relative
    to the root's `base` (the source tree or the build tree), e.g. include/linux/timer.h."""

    kernel: Kernel
    roots: tuple[tuple[Path, Path], ...]  # (directory to search, base for display)

    def relative(self, path: Path) -> str:
        for root, base in self.roots:
            if path.is_relative_to(root):
                return str(path.relative_to(base))
        return str(path)


def source_dir(build: Path) -> Path:
    """The source side of a build tree: `source` (O= builds), the directory Debian's one-line
    Makefile includes (`include /usr/src/linux-headers-X-common/Makefile`), else itself."""
    link = build / "source"
    if link.is_dir():
        return link.resolve()
    makefile = build / "Makefile"
    if makefile.is_file():
        for line in makefile.read_text(errors="replace").splitlines()[:5]:
            m = re.match(r"\s*include\s+(\S+)/Makefile\s*$", line)
            if m and (Path(m.group(1)) / "include").is_dir():
                return Path(m.group(1)).resolve()
    return build


def read_version(build: Path) -> tuple[int, int, int] | None:
    """(major, patchlevel, sublevel) from include/generated/uapi/linux/version.h."""
    f = build / "include/generated/uapi/linux/version.h"
    if not f.is_file():
        return None
    found = dict((k, int(v)) for k, v in _VERSION.findall(f.read_text(errors="replace")))
    if "MAJOR" in found:
        return found["MAJOR"], found.get("PATCHLEVEL", 0), found.get("SUBLEVEL", 0)
    if "CODE" in found:
        code = found["CODE"]
        return code >> 16, (code >> 8) & 0xFF, code & 0xFF
    return None


def read_release(build: Path) -> str:
    f = build / "include/generated/utsrelease.h"
    m = _UTS.search(f.read_text(errors="replace")) if f.is_file() else None
    return m.group(1) if m else build.name


def header_tree(build: Path, arch: str = "x86", spec: str = "") -> HeaderTree | None:
    """The headers of a build tree (a host /usr/src/linux-headers-* tree, a full source tree,
    or an extracted copy laid out like one); None when it has no headers to search."""
    build = build.resolve()
    version = read_version(build)
    src = source_dir(build)
    if version is None or not (src / "include/linux").is_dir():
        return None
    roots: list[tuple[Path, Path]] = [
        (src / "include", src),
        (src / "arch" / arch / "include", src),
    ]
    if src != build:
        roots += [
            (build / "include/generated", build),
            (build / "arch" / arch / "include/generated", build),
        ]
    roots = [(r, b) for r, b in roots if r.is_dir()]
    kernel = Kernel(read_release(build), version, spec)
    return HeaderTree(kernel, tuple(roots))


def grep(dirs: Sequence[Path], names: Sequence[str]) -> list[Hit]:
    """GNU grep over the .h files of dirs for whole-word occurrences of any of names."""
    if not names or not dirs:
        return []
    argv = [
        "grep",
        "-rnwHF",
        "--include=*.h",
        "--exclude-dir=config",
        "--binary-files=without-match",
    ]
    for n in names:
        argv += ["-e", n]
    argv += ["--", *(str(d) for d in dirs)]
    try:
        res = subprocess.run(
            argv, capture_output=True, timeout=GREP_TIMEOUT, env={"LC_ALL": "C"}, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InfraError(f"cannot search kernel headers with grep: {err}", "install grep") from err
    if res.returncode not in (0, 1):
        why = res.stderr.decode(errors="replace").strip().splitlines()
        raise InfraError(
            f"grep failed on kernel headers: {why[:1]}", "check the header directories"
        )
    hits: list[Hit] = []
    for raw in res.stdout.decode(errors="replace").splitlines():
        path, _, rest = raw.partition(":")
        num, _, text = rest.partition(":")
        if num.isdigit():
            hits.append((Path(path), int(num), text))
    return hits


def _wanted_names(mentions: Iterable[Mention]) -> list[str]:
    """What to grep for: the identifier itself, or a member's struct tag (the member is then
    found inside the struct's body)."""
    names: dict[str, None] = {}
    for m in mentions:
        names[_struct_tag(m.container) if m.container else m.identifier] = None
    return [n for n in names if n]


def _struct_tag(container: str | None) -> str:
    return (container or "").split()[-1] if container else ""


class HeaderIndex:
    """The declarations of a few names in one kernel, from one grep."""

    def __init__(self, tree: HeaderTree, names: Sequence[str], run: Grep = grep) -> None:
        self.tree = tree
        by_file: dict[Path, list[tuple[int, str]]] = defaultdict(list)
        for path, num, text in run([r for r, _b in tree.roots], names):
            by_file[path].append((num - 1, text))
        self._files = by_file
        self._lines: dict[Path, list[str]] = {}

    def _read(self, path: Path) -> list[str]:
        if path not in self._lines:
            self._lines[path] = path.read_text(errors="replace").splitlines()
        return self._lines[path]

    def declarations(self, name: str) -> list[Declaration]:
        maybe = decls.candidate(name)
        found: list[Declaration] = []
        for path, hits in self._files.items():
            mine = [i for i, text in hits if maybe(text)]  # files are read only for these
            if mine:
                lines = self._read(path)
                mine = [i for i in mine if i < len(lines)]
                found += decls.declarations(lines, mine, name, self.tree.relative(path))
        return sorted(found, key=decls.rank)

    def lookup(self, mention: Mention) -> Lookup:
        kernel = self.tree.kernel
        if mention.container:
            keyword, _, tag = mention.container.rpartition(" ")
            keyword = keyword or "struct"
            defs = [d for d in self.declarations(tag) if d.kind == keyword]
            if not defs:
                return Lookup(kernel, None, f"{mention.container} is not defined")
            for d in defs:
                mem = decls.member(d, mention.identifier)
                if mem is not None:
                    return Lookup(kernel, mem, others=len(defs) - 1)
            return Lookup(
                kernel,
                None,
                f"{mention.container} ({defs[0].file}:{defs[0].line}) "
                f"has no member {mention.identifier}",
            )
        found = self.declarations(mention.identifier)
        if mention.kind == "struct":
            found = [d for d in found if d.kind in ("struct", "union", "enum")] or found
        elif mention.kind == "type":
            found = [d for d in found if d.kind in ("typedef", "struct", "union")] or found
        if not found:
            return Lookup(kernel, None)
        return Lookup(kernel, found[0], others=len(found) - 1)


def lookup_all(tree: HeaderTree, mentions: Sequence[Mention], run: Grep = grep) -> list[Lookup]:
    """Each mention looked up in one kernel's headers (one grep for all of them)."""
    index = HeaderIndex(tree, _wanted_names(mentions), run)
    return [index.lookup(m) for m in mentions]
