"""Explaining a failed build: its diagnostics, the kernels to compare, the lookups.

The kernels compared are the ones asked for (the build's matrix, `--explain-with`), plus
every kernel whose headers are already on this machine: host build trees under /lib/modules
and header copies made earlier from images. A kernel that cannot be read (Docker down, an
image gone) is skipped and said so; it never turns an explanation into a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kbuild_py.errors import KmodError
from kbuild_py.explain import diagnostics
from kbuild_py.explain.drift import compare
from kbuild_py.explain.headers import Grep, HeaderTree, grep, header_tree, lookup_all
from kbuild_py.explain.imageheaders import cached_header_dirs, image_headers
from kbuild_py.explain.model import Explanation, Lookup, Mention
from kbuild_py.kernels.host import host_releases
from kbuild_py.seams.docker import docker_client
from kbuild_py.seams.process import signals_to_main_thread

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
        except KmodError as err:
            if say:
                say(f"explain: cannot read the headers of {t.release}: {err.message}")
            continue
        if tree is not None:
            out.append(tree)
        elif say:
            say(f"explain: {t.release} has no headers to search ({t.tree.path})")
    return out


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
) -> list[Explanation]:
    """Each mention looked up in every tree (one grep per tree) and compared."""
    if not mentions or not trees:
        return [Explanation(m, failing=failing) for m in mentions]
    # One grep per kernel; they run side by side (grep is I/O and a separate process).
    with ThreadPoolExecutor(
        max_workers=min(4, len(trees)), initializer=signals_to_main_thread
    ) as pool:
        per_tree = list(pool.map(lambda tree: lookup_all(tree, mentions, run), trees))
    out = []
    for i, mention in enumerate(mentions):
        lookups: list[Lookup] = [found[i] for found in per_tree]
        out.append(compare(mention, lookups, failing))
    return out


def explain_log(
    log: Path,
    source_root: Path,
    trees: Sequence[HeaderTree],
    failing: str | None = None,
    run: Grep = grep,
) -> list[Explanation]:
    """Explain the diagnostics of one build log (make ran in source_root)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return explain(diagnostics.mentions(lines, source_root), trees, failing, run)
