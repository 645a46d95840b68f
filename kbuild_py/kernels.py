"""Kernel specs and targets.

A *spec* is what the user writes (--kernel, or `kernels = [...]` in kmod.toml):
`host`, a release such as `6.1.0-50-amd64`, `debian:SUITE`, `image:NAME[:TAG]`.
A *Target* is a resolved spec: the release, the build tree to read (on the host,
possibly a snapshot copied out of an image), the KDIR path as the runner sees it,
and the Runner that executes the build (the host, or a container).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.buildtree import BuildTree
from kbuild_py.errors import NoBuildTreeError
from kbuild_py.process import HostRunner, Runner


@dataclass
class Target:
    spec: str
    release: str
    tree: BuildTree  # readable on the host (vermagic, config, Module.symvers)
    kdir: str  # KDIR as the runner sees it
    runner: Runner
    where: str = "host"  # "host" or the image name the build runs in
    suite: str | None = None  # Debian suite the kernel comes from, when known

    @property
    def compiler(self) -> str:
        return self.tree.cc_version_text


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
                err.message = f"no build tree for the running kernel {rel} at /lib/modules/{rel}/build"
            raise
    return Target(spec=spec, release=tree.release, tree=tree, kdir=str(tree.path), runner=HostRunner())


def host_releases() -> list[str]:
    """Releases with a usable build tree under /lib/modules."""
    base = Path("/lib/modules")
    if not base.is_dir():
        return []
    return sorted(
        d.name for d in base.iterdir() if (d / "build/include/generated/utsrelease.h").is_file()
    )
