"""Kernels of this machine: the running release and the build trees under /lib/modules."""

from __future__ import annotations

import os
from pathlib import Path

from kbuild_py.errors import NoBuildTreeError
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.kernels.spec import Target
from kbuild_py.seams.process import HostRunner


def running_release() -> str:
    return os.uname().release


def host_target(spec: str = "host", release: str | None = None, kdir: Path | None = None) -> Target:
    """A target built on this machine: --kdir, else /lib/modules/RELEASE/build."""
    if kdir is not None:
        tree = BuildTree.open(kdir, release_hint=release)
    else:
        rel = release or running_release()
        try:
            tree = BuildTree.for_release(rel)
        except NoBuildTreeError as err:
            if release is None:
                err.message = (
                    f"no build tree for the running kernel {rel} at /lib/modules/{rel}/build"
                )
            raise
    return Target(
        spec=spec, release=tree.release, tree=tree, kdir=str(tree.path), runner=HostRunner()
    )


def host_releases() -> list[str]:
    """Releases with a usable build tree under /lib/modules."""
    base = Path("/lib/modules")
    if not base.is_dir():
        return []
    return sorted(
        d.name for d in base.iterdir() if (d / "build/include/generated/utsrelease.h").is_file()
    )
