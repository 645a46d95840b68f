"""Explaining a failed build: its diagnostics, the kernels to compare, the lookups.

The kernels compared are the ones asked for (the build's matrix, `--explain-with`), plus
every kernel whose headers are already on this machine: host build trees under /lib/modules
and header copies made earlier from images. A kernel that cannot be read (Docker down, an
image gone) is skipped and said so; it never turns an explanation into a failure.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import DockerException

from kbuild_py.errors import KmodError
from kbuild_py.explain import diagnostics
from kbuild_py.explain.drift import compare
from kbuild_py.explain.headers import (
    Grep,
    HeaderIndex,
    HeaderTree,
    grep,
    header_tree,
    lookup_all,
    store_key,
)
from kbuild_py.explain.imageheaders import cached_header_dirs, image_headers
from kbuild_py.explain.model import Explanation, Lookup, Mention
from kbuild_py.kernels.host import host_releases
from kbuild_py.paths import cache_dir
from kbuild_py.seams.docker import docker_client
from kbuild_py.seams.process import parallel_map

Say = Callable[[str], None]


def tree_for_target(target: Any) -> HeaderTree | None:
    """The headers of a resolved kernel Target: its host build tree, or a copy of the
    image's headers (made once per release, see imageheaders)."""
    arch = target.tree.srcarch
    if target.where == "host":
        return header_tree(Path(target.tree.path), arch, target.spec)
    client = getattr(target.runner, "client", None)
    if client is None:
        client = docker_client()
    return header_tree(image_headers(client, target.where, target.release, arch), arch, target.spec)


def trees_for_targets(targets: Iterable[Any], say: Say | None = None) -> list[HeaderTree]:
    out: list[HeaderTree] = []
    for t in targets:
        try:
            tree = tree_for_target(t)
        except (KmodError, OSError, DockerException) as err:
            if say:
                why = err.message if isinstance(err, KmodError) else str(err).splitlines()[0]
                say(f"explain: cannot read the headers of {t.release}: {why}")
            continue
        if tree is not None:
            out.append(tree)
        elif say:
            say(f"explain: {t.release} has no headers to search ({t.tree.path})")
    return out


def lookup_store(tree: HeaderTree) -> Path:
    """Where the lookups in one kernel tree are remembered between runs."""
    return cache_dir() / "explain" / f"{tree.kernel.release}-{store_key(tree)}.json"


def known_trees() -> list[HeaderTree]:
    """Kernels whose headers are here already: /lib/modules/*/build and earlier image copies."""
    dirs = [Path("/lib/modules") / r / "build" for r in host_releases()] + cached_header_dirs()
    out = []
    for d in dirs:
        tree = header_tree(d)
        if tree is not None:
            out.append(tree)
    return out


def merge(*groups: Sequence[HeaderTree]) -> list[HeaderTree]:
    """One tree per release; the first group that has a release wins (the user's names)."""
    seen: dict[str, HeaderTree] = {}
    for group in groups:
        for tree in group:
            seen.setdefault(tree.kernel.release, tree)
    return list(seen.values())


def explain(
    mentions: Sequence[Mention],
    trees: Sequence[HeaderTree],
    failing: str | None = None,
    run: Grep = grep,
    indexes: dict[str, HeaderIndex] | None = None,
) -> list[Explanation]:
    """Each mention looked up in every tree (one grep per tree) and compared. indexes: what
    earlier lookups found, per release."""
    if not mentions or not trees:
        return [Explanation(m, failing=failing) for m in mentions]
    # One grep per kernel at most; they run side by side (grep is a separate process).
    known = indexes or {}
    per_tree = parallel_map(lambda t: lookup_all(t, mentions, run, known.get(t.kernel.release)),
                            trees, min(4, len(trees)))
    out = []
    for i, mention in enumerate(mentions):
        lookups: list[Lookup] = [found[i] for found in per_tree]
        out.append(compare(mention, lookups, failing))
    return out


class Explainer:
    """Explains failed builds against one set of kernels (the matrix, `--explain-with`, and
    the kernels already here); their header trees are found once, on first use, so a build
    where everything compiles pays nothing. Thread-safe: builds finish on worker threads."""

    def __init__(
        self, targets: Sequence[Any], say: Say | None = None, known: bool = True, run: Grep = grep
    ) -> None:
        self._targets = list(targets)
        self._say, self._known, self._run = say, known, run
        self._trees: list[HeaderTree] | None = None
        self._indexes: dict[str, HeaderIndex] = {}
        self._lock = threading.Lock()

    def trees(self) -> list[HeaderTree]:
        with self._lock:
            if self._trees is None:
                mine = trees_for_targets(self._targets, self._say)
                self._trees = merge(mine, known_trees() if self._known else [])
                self._indexes = {
                    t.kernel.release: HeaderIndex(t, self._run, lookup_store(t))
                    for t in self._trees
                }
            return self._trees

    def explain_build(self, log: Path, outdir: Path, release: str) -> list[Explanation]:
        """The explanations of one kernel's failed build (its build.log, made in outdir)."""
        lines = _read_lines(log)
        found = diagnostics.mentions(lines, outdir)
        if not found:
            return []
        trees = self.trees()
        return explain(found, trees, release, self._run, self._indexes)

    def explain_result(self, res: Any) -> list[Explanation]:
        """A kernel's BuildResult: explained when make ran and failed (not for an
        infrastructure error or a timeout, whose log says nothing about the kernel's API)."""
        if res.error is not None or res.timed_out or res.returncode in (0, -1):
            return []
        try:
            return self.explain_build(res.log_path, res.outdir, res.target.release)
        except (KmodError, OSError) as err:  # an explanation never turns into a failure
            if self._say:
                why = err.message if isinstance(err, KmodError) else str(err)
                self._say(f"explain: {res.target.release}: {why}")
            return []


def _read_lines(log: Path) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()
    except OSError:
        return []


def log_exit(log: Path) -> int | None:
    """The make exit status a kmod-py build.log records on its last line (`# exit N`)."""
    lines = _read_lines(log)
    for line in reversed(lines[-3:]):
        m = re.match(r"# exit (-?\d+)", line)
        if m:
            return int(m.group(1))
    return None


@dataclass
class KernelReport:
    """One kernel of `kmod-py explain`: whether the project builds there, and why not."""

    spec: str
    release: str
    log: Path
    exit: int | None  # make's exit status from the log; None: no finished build
    explanations: list[Explanation] = field(default_factory=list)

    @property
    def built(self) -> bool:
        return self.exit == 0


# build(target) runs one build of the project for a target and returns its (log, outdir).
BuildOne = Callable[[Any], tuple[Path, Path]]


def explain_project(
    targets: Sequence[Any],
    outdir_for: Callable[[Any], Path],
    explainer: Explainer,
    build: BuildOne,
    rebuild: bool = False,
) -> list[KernelReport]:
    """For each target: the last build's log (or a fresh build when there is none, or when
    rebuild), and the explanations of its errors when it failed."""
    reports = []
    for t in targets:
        outdir = outdir_for(t)
        log = outdir / "build.log"
        if rebuild or log_exit(log) is None:
            log, outdir = build(t)
        rep = KernelReport(t.spec, t.release, log, log_exit(log))
        if not rep.built:
            rep.explanations = explainer.explain_build(log, outdir, t.release)
        reports.append(rep)
    return reports
