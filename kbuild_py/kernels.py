"""Kernel specs and targets.

A *spec* is what the user writes (--kernel, or `kernels = [...]` in kmod.toml):
`host`, a release such as `6.1.0-50-amd64`, `debian:SUITE`, `image:NAME[:TAG]`.
A *Target* is a resolved spec: the release, the build tree to read (on the host,
possibly a snapshot copied out of an image), the KDIR path as the runner sees it,
and the Runner that executes the build (the host, or a container).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kbuild_py.buildtree import BuildTree
from kbuild_py.errors import NoBuildTreeError, UsageError
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


# --- kernel specs ------------------------------------------------------------------------

SPEC_FORMS = (
    "host, a release (e.g. 6.1.0-50-amd64), debian:SUITE (bookworm, bookworm-backports, "
    "trixie, trixie-backports, sid), image:NAME[:TAG]"
)
_RELEASE_RE = re.compile(r"^\d+\.\d+[0-9A-Za-z.+_~-]*$")
# [host[:port]/]path[:tag][@sha256:digest], path components in lower case
_IMAGE_RE = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(:\d+)?(/[a-z0-9][a-z0-9._-]*)*(:\w[\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True)
class KernelSpec:
    kind: str  # "host" | "release" | "debian" | "image"
    value: str  # the release, suite or image name ("" for host)


def parse_spec(spec: str) -> KernelSpec:
    """Parse a kernel spec (pure). Raises UsageError naming the accepted forms."""
    from kbuild_py.debian import BASE_SUITE, SUITES

    text = spec.strip()
    if text == "host":
        return KernelSpec("host", "")
    kind, sep, rest = text.partition(":")
    if sep and kind == "debian":
        if rest not in BASE_SUITE:
            raise UsageError(
                f"unknown Debian suite {rest!r} in kernel spec {spec!r}",
                f"Debian suites: {', '.join(SUITES)}",
            )
        return KernelSpec("debian", rest)
    if sep and kind == "image":
        if not _IMAGE_RE.match(rest):
            raise UsageError(
                f"bad image name {rest!r} in kernel spec {spec!r}",
                "write image:NAME or image:NAME:TAG, e.g. image:kmod-py/kernel:debian-trixie",
            )
        return KernelSpec("image", rest)
    if not sep and _RELEASE_RE.match(text):
        return KernelSpec("release", text)
    raise UsageError(f"unknown kernel spec {spec!r}", f"kernel specs: {SPEC_FORMS}")


def resolve_spec(
    spec: str, *, mirror: str | None = None, progress: Callable[[str], None] | None = None
) -> Target:
    """Turn a spec into a Target: the host's build tree or a kernel-headers container.

    Container targets may build their image first (progress gets its lines).
    """
    parsed = parse_spec(spec)
    say = progress or (lambda _line: None)
    if parsed.kind == "host":
        return host_target("host")
    if parsed.kind == "release":
        if parsed.value in host_releases():
            return host_target(spec, parsed.value)
        return _release_target(spec, parsed.value, mirror, say)
    if parsed.kind == "debian":
        return _suite_target(spec, parsed.value, mirror, say)
    return _image_target(spec, parsed.value)


def container_target(
    spec: str, release: str, suite: str, *, mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Target:
    """A Target building in kmod-py/kernel:<release> (built on demand)."""
    from kbuild_py import images, imagetree
    from kbuild_py.docker_backend import DockerRunner, docker_client

    client = docker_client()
    name = images.ensure_kernel_image(
        suite, release, mirror=mirror, progress=progress or (lambda _l: None), client=client
    )
    tree = imagetree.snapshot_tree(client, name, release)
    return Target(
        spec=spec, release=release, tree=tree, kdir=f"/lib/modules/{release}/build",
        runner=DockerRunner(name, client), where=name, suite=suite,
    )


def _release_target(spec: str, release: str, mirror: str | None, say: Callable) -> Target:
    from kbuild_py import debian, images
    from kbuild_py.docker_backend import docker_client

    client = docker_client()
    built = images.image_exists(client, images.kernel_image(release))
    if built is not None:
        suite = (built.labels or {}).get(images.SUITE_LABEL) or "bookworm"
        return container_target(spec, release, suite, mirror=mirror, progress=say)
    suite = debian.suite_for_release(release, mirror)
    if suite is None:
        raise UsageError(
            f"no kernel {release}: no build tree in /lib/modules, no kmod-py image, "
            "and no Debian suite ships linux-headers-" + release,
            _what_exists(mirror),
        )
    say(f"{release}: linux-headers-{release} comes from Debian {suite}")
    return container_target(spec, release, suite, mirror=mirror, progress=say)


def _suite_target(spec: str, suite: str, mirror: str | None, say: Callable) -> Target:
    from kbuild_py import debian, images
    from kbuild_py.errors import MirrorError, VerificationError

    try:
        release = debian.Archive(suite, mirror).current_release()
    except VerificationError:
        raise  # a mirror that serves what Debian did not sign is not "unreachable"
    except MirrorError:
        # Offline: fall back to the image last built for this suite, if any.
        from kbuild_py.docker_backend import docker_client

        alias = images.image_exists(docker_client(), images.suite_alias(suite))
        if alias is None:
            raise
        release = alias.labels[images.RELEASE_LABEL]
        say(f"{spec}: mirror unreachable, using the last image built for it ({release})")
    return container_target(spec, release, suite, mirror=mirror, progress=say)


def _image_target(spec: str, image: str) -> Target:
    from kbuild_py import images, imagetree
    from kbuild_py.docker_backend import DockerRunner, docker_client

    client = docker_client()
    releases = imagetree.image_releases(client, image)
    if not releases:
        raise UsageError(
            f"image {image} has no kernel build tree (/lib/modules/*/build)",
            "install a linux-headers package in it, or use --kernel debian:SUITE",
        )
    release = releases[-1]
    tree = imagetree.snapshot_tree(client, image, release)
    suite = (client.images.get(image).labels or {}).get(images.SUITE_LABEL)
    return Target(
        spec=spec, release=release, tree=tree, kdir=f"/lib/modules/{release}/build",
        runner=DockerRunner(image, client), where=image, suite=suite,
    )


def _what_exists(mirror: str | None) -> str:
    """A hint naming the kernels that do exist here and in Debian."""
    from kbuild_py import debian
    from kbuild_py.errors import KmodError

    parts = [f"host build trees: {', '.join(host_releases()) or 'none'}"]
    try:
        from kbuild_py import images

        built = sorted({i.release for i in images.list_images()})
        parts.append(f"kmod-py images: {', '.join(built) or 'none'}")
    except KmodError:
        pass
    for suite in ("bookworm", "trixie", "trixie-backports"):
        try:
            parts.append(f"debian:{suite} = {debian.Archive(suite, mirror).current_release()}")
        except KmodError:
            pass
    return "; ".join(parts) + "; `kmod-py kernels --suite SUITE` lists a suite's kernels"


# --- what is usable ----------------------------------------------------------------------


@dataclass(frozen=True)
class KernelRow:
    spec: str  # what to pass to --kernel
    release: str
    compiler: str
    where: str  # "host <kdir>" or "image <name>"
    suite: str = ""


def usable_kernels(images_list: list | None = None) -> list[KernelRow]:
    """Host build trees, then kmod-py kernel images (pass images_list to skip Docker)."""
    rows = []
    for rel in host_releases():
        tree = BuildTree.for_release(rel)
        rows.append(KernelRow(rel, rel, tree.cc_version_text, f"host {tree.path}"))
    for img in images_list or []:
        aliases = [t.split(":", 1)[1] for t in img.tags if ":debian-" in t]
        spec = f"debian:{aliases[0][len('debian-'):]}" if aliases else img.release
        rows.append(KernelRow(spec, img.release, img.compiler, f"image {img.name}", img.suite))
    return rows


def suite_kernels(suite: str, mirror: str | None = None) -> tuple[str, list[str]]:
    """(current release of debian:SUITE, every release with headers in SUITE)."""
    from kbuild_py import debian

    if suite not in debian.BASE_SUITE:
        raise UsageError(
            f"unknown Debian suite {suite!r}", f"Debian suites: {', '.join(debian.SUITES)}"
        )
    archive = debian.Archive(suite, mirror)
    return archive.current_release(), archive.releases()
