"""A kernel's headers as a searchable set, and the targeted lookup of identifiers in them.

No index of the tree is built: one `grep -rnwF` over include/ and arch/<arch>/include/ for
exactly the names asked for (≈0.1 s warm for Debian's 53 MB of headers), then the few hit
files are read to cut out each declaration (decls.py). grep is the one outside process
here, run through the host process seam; `Grep` is the explain package's own seam (tests
inject a pure-Python one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kbuild_py.errors import InfraError
from kbuild_py.explain import decls
from kbuild_py.explain.model import Declaration, Kernel, Lookup, Mention
from kbuild_py.seams.process import HostRunner

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
    """GNU grep over the .h files of dirs for whole-word occurrences of any of names, run
    through the host process seam (timeout, Ctrl-C, exit status checked)."""
    if not names or not dirs:
        return []
    argv = ["grep", "-rnwHF", "--include=*.h", "--exclude-dir=config"]
    argv += ["--binary-files=without-match"]
    for n in names:
        argv += ["-e", n]
    argv += ["--", *(str(d) for d in dirs)]
    lines: list[str] = []
    res = HostRunner().run(argv, env={"LC_ALL": "C"}, timeout=GREP_TIMEOUT, on_line=lines.append)
    if res.timed_out or res.returncode not in (0, 1):
        why = next((ln for ln in lines if ln.startswith("grep:")), f"exit {res.returncode}")
        raise InfraError(f"grep failed on kernel headers: {why}", "check the header directories")
    prefixes = tuple(f"{d}/" for d in dirs)
    hits: list[Hit] = []
    for raw in lines:
        if not raw.startswith(prefixes):
            continue  # a message of grep's own (stderr shares the stream)
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
    """The declarations of the names asked for so far in one kernel. Names not seen before
    are found with one grep per call to `ensure`; what was found (or not) is remembered in
    memory and, with a `store`, on disk for the next run. Thread-safe."""

    def __init__(self, tree: HeaderTree, run: Grep = grep, store: Path | None = None) -> None:
        self.tree = tree
        self._run, self._store = run, store
        self._decls: dict[str, list[Declaration]] = _load(store) if store else {}
        self._lock = threading.Lock()

    def ensure(self, names: Sequence[str]) -> None:
        with self._lock:
            missing = [n for n in dict.fromkeys(names) if n not in self._decls]
            if not missing:
                return
            by_file: dict[Path, list[tuple[int, str]]] = defaultdict(list)
            for path, num, text in self._run([r for r, _b in self.tree.roots], missing):
                by_file[path].append((num - 1, text))
            lines: dict[Path, list[str]] = {}
            for name in missing:
                self._decls[name] = self._find(name, by_file, lines)
            if self._store is not None:
                _save(self._store, self._decls)

    def _find(
        self,
        name: str,
        by_file: dict[Path, list[tuple[int, str]]],
        cache: dict[Path, list[str]],
    ) -> list[Declaration]:
        maybe = decls.candidate(name)
        found: list[Declaration] = []
        for path, hits in by_file.items():
            mine = [i for i, text in hits if maybe(text)]  # files are read only for these
            if mine:
                if path not in cache:
                    cache[path] = path.read_text(errors="replace").splitlines()
                text = cache[path]
                mine = [i for i in mine if i < len(text)]
                found += decls.declarations(text, mine, name, self.tree.relative(path))
        return sorted(found, key=decls.rank)

    def declarations(self, name: str) -> list[Declaration]:
        self.ensure([name])
        return self._decls[name]

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


def lookup_all(
    tree: HeaderTree,
    mentions: Sequence[Mention],
    run: Grep = grep,
    index: HeaderIndex | None = None,
) -> list[Lookup]:
    """Each mention looked up in one kernel's headers (one grep for the names not yet known)."""
    index = index or HeaderIndex(tree, run)
    index.ensure(_wanted_names(mentions))
    return [index.lookup(m) for m in mentions]


# --- what was found, remembered per kernel tree -----------------------------------------------

STORE_VERSION = 1


def store_key(tree: HeaderTree) -> str:
    """Names the lookups of one tree as it is now: its roots and their modification times
    (a reinstalled headers package gets new directories, an image copy is rewritten)."""
    parts = [STORE_VERSION, tree.kernel.release]
    for root, _base in tree.roots:
        parts.append(f"{root}:{root.stat().st_mtime_ns}")
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _load(store: Path) -> dict[str, list[Declaration]]:
    try:
        data = json.loads(store.read_text())
        return {n: [Declaration(**d) for d in ds] for n, ds in data.items()}
    except (OSError, ValueError, TypeError):
        return {}


def _save(store: Path, found: dict[str, list[Declaration]]) -> None:
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({n: [asdict(d) for d in ds] for n, ds in found.items()}))
        os.replace(tmp, store)
    except OSError:
        pass  # a cache that cannot be written only costs the next run a grep
