"""The kernel model: a spec as the user writes it, where it was found, and the Target built on.

A *spec* is what the user writes (--kernel, or `kernels = [...]` in kmod.toml):
`host`, a release such as `6.1.0-57-amd64`, `debian:SUITE[/FLAVOUR]`, `image:NAME[:TAG]`.
A *Placement* says which release a spec names and where that kernel lives (the host's
build tree, a kmod-py kernel-headers image, or the user's image); a *Target* adds the
build tree to read (on the host, possibly a snapshot copied out of an image), the KDIR
path as the runner sees it, and the Runner that executes the build. kernels.resolve
goes from one to the next. This module imports nothing else of kmod-py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kbuild_py.kernels.buildtree import BuildTree
    from kbuild_py.seams.process import Runner

SPEC_FORMS = (
    "host, a release (e.g. 6.1.0-57-amd64), debian:SUITE[/FLAVOUR] (SUITE: bullseye, bookworm, "
    "bookworm-backports, trixie, trixie-backports, sid; FLAVOUR: amd64, arm64, cloud, rt, "
    "cloud-arm64, rt-arm64), image:NAME[:TAG]"
)
FLAVOURS_HINT = (
    "flavours: amd64, arm64, cloud (= cloud-amd64), rt (= rt-amd64), cloud-arm64, rt-arm64;"
    " e.g. debian:bookworm/arm64"
)
RELEASE_RE = re.compile(r"^\d+\.\d+[0-9A-Za-z.+_~-]*$")
# [host[:port]/]path[:tag][@sha256:digest], path components in lower case
IMAGE_RE = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(:\d+)?(/[a-z0-9][a-z0-9._-]*)*(:\w[\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True)
class KernelSpec:
    kind: str  # "host" | "release" | "debian" | "image"
    value: str  # the release, suite or image name ("" for host)
    flavour: str = "amd64"  # debian: Debian's kernel flavour ([cloud-|rt-]amd64|arm64)


@dataclass(frozen=True)
class Placement:
    """Which release a spec names and where it lives; nothing built or copied yet."""

    spec: str
    kind: str  # the spec's kind (KernelSpec.kind)
    release: str
    where: Literal["host", "kernel-image", "image"]  # host build tree, kmod-py image, user's
    suite: str | None = None  # Debian suite the kernel comes from, when known
    image: str | None = None  # the user's image (where == "image")


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
