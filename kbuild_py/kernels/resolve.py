"""Resolving a kernel spec, one downward pass: spec -> release and where (place) ->
image ensured -> build tree snapshot -> Target (target). `build` and `check` take the
whole pass (resolve_spec); `test` needs only the release (place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kbuild_py.debian.suites import (
    ARCHES,
    BASE_SUITE,
    FLAVOUR_VARIANTS,
    SUITES,
    UNSERVED,
    arch_of,
)
from kbuild_py.errors import KmodError, MirrorError, UsageError, VerificationError
from kbuild_py.images.model import (
    RELEASE_LABEL,
    SUITE_LABEL,
    Progress,
    alias_spec,
    kernel_image,
    quiet,
    suite_alias,
)
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.kernels.host import host_releases, host_target, running_release
from kbuild_py.kernels.spec import (
    FLAVOURS_HINT,
    IMAGE_RE,
    RELEASE_RE,
    SPEC_FORMS,
    KernelSpec,
    Placement,
    Target,
)

# Start-up: the Debian archive reader, the image builder and the Docker seam are imported
# where a spec needs them (below, "lazily"), so host kernels and --kdir resolve without
# loading them (`kmod-py check --kdir DIR one.ko` imports none of them).


# --- kernel specs ------------------------------------------------------------------------


def parse_spec(spec: str) -> KernelSpec:
    """Parse a kernel spec (pure). Raises UsageError naming the accepted forms."""
    text = spec.strip()
    if text == "host":
        return KernelSpec("host", "")
    kind, sep, rest = text.partition(":")
    if sep and kind == "debian":
        suite, slash, flavour = rest.partition("/")
        if suite not in BASE_SUITE:
            raise UsageError(
                UNSERVED.get(suite, f"unknown Debian suite {suite!r}") + f" (kernel spec {spec!r})",
                f"Debian suites: {', '.join(SUITES)}",
            )
        if slash and not flavour:
            raise UsageError(f"empty kernel flavour in kernel spec {spec!r}", FLAVOURS_HINT)
        return KernelSpec("debian", suite, parse_flavour(flavour, spec))
    if sep and kind == "image":
        if not IMAGE_RE.match(rest):
            raise UsageError(
                f"bad image name {rest!r} in kernel spec {spec!r}",
                "write image:NAME or image:NAME:TAG, e.g. image:kmod-py/kernel:debian-trixie",
            )
        return KernelSpec("image", rest)
    if not sep and RELEASE_RE.match(text):
        return KernelSpec("release", text)
    raise UsageError(f"unknown kernel spec {spec!r}", f"kernel specs: {SPEC_FORMS}")


def parse_flavour(text: str, spec: str = "") -> str:
    """'' -> amd64; cloud, rt -> cloud-amd64, rt-amd64; [cloud-|rt-]amd64|arm64 as they are."""
    if not text:
        return "amd64"
    if text in FLAVOUR_VARIANTS:
        return f"{text}-amd64"
    variant, _, arch = text.rpartition("-")
    if arch in ARCHES and (not variant or variant in FLAVOUR_VARIANTS):
        return text
    raise UsageError(
        f"unknown kernel flavour {text!r}" + (f" in kernel spec {spec!r}" if spec else ""),
        FLAVOURS_HINT,
    )


def place(spec: str, *, mirror: str | None = None, say: Progress = quiet) -> Placement:
    """Which release a spec names and where it lives, without building or copying anything
    (`kmod-py test` boots the release; `build` and `check` go on to target())."""
    parsed = parse_spec(spec)
    if parsed.kind == "host":
        return Placement(spec, "host", running_release(), "host")
    if parsed.kind == "release":
        on_host = parsed.value in host_releases()
        return Placement(spec, "release", parsed.value, "host" if on_host else "kernel-image")
    if parsed.kind == "debian":
        release = _suite_release(spec, parsed.value, parsed.flavour, mirror, say)
        return Placement(spec, "debian", release, "kernel-image", suite=parsed.value)
    # lazily, for start-up (see the top of this module)
    from kbuild_py.images.tree import image_releases
    from kbuild_py.seams.docker import docker_client

    client = docker_client()
    releases = image_releases(client, parsed.value)
    if not releases:
        raise UsageError(
            f"image {parsed.value} has no kernel build tree (/lib/modules/*/build)",
            "install a linux-headers package in it, or use --kernel debian:SUITE",
        )
    suite = (client.images.get(parsed.value).labels or {}).get(SUITE_LABEL)
    return Placement(spec, "image", releases[-1], "image", suite=suite, image=parsed.value)


def target(p: Placement, *, mirror: str | None = None, say: Progress = quiet) -> Target:
    """The Target of a placement: the host's build tree, or an image (a kmod-py kernel image
    is built first when missing) and a snapshot of its build tree."""
    if p.where == "host":
        return host_target("host") if p.kind == "host" else host_target(p.spec, p.release)
    # lazily, for start-up (see the top of this module)
    from kbuild_py.images.kernel import ensure_kernel_image
    from kbuild_py.images.tree import snapshot_tree
    from kbuild_py.seams.docker import DockerRunner, docker_client

    client = docker_client()
    suite: str | None
    if p.where == "kernel-image":
        found = p.suite or _release_suite(client, p.release, mirror, say)
        name = ensure_kernel_image(found, p.release, mirror=mirror, progress=say, client=client)
        suite = found
    else:
        suite, name = p.suite, str(p.image)
    tree = snapshot_tree(client, name, p.release)
    return Target(
        spec=p.spec, release=p.release, tree=tree, kdir=f"/lib/modules/{p.release}/build",
        runner=DockerRunner(name, client), where=name, suite=suite,
    )


def resolve_spec(
    spec: str, *, mirror: str | None = None, progress: Progress | None = None
) -> Target:
    """Turn a spec into a Target, in one downward pass: spec -> release and where ->
    image ensured -> build tree snapshot -> Target (progress gets image-building lines)."""
    say = progress or quiet
    return target(place(spec, mirror=mirror, say=say), mirror=mirror, say=say)


def _suite_release(
    spec: str, suite: str, flavour: str, mirror: str | None, say: Progress
) -> str:
    """The current kernel release of debian:SUITE/FLAVOUR: the newest of SUITE, its security
    and its point-update suites (the mirror's indices, else, offline, the image last built
    for the suite)."""
    # lazily, for start-up (see the top of this module)
    from kbuild_py.debian.archive import current_release
    from kbuild_py.seams.docker import docker_client, image_exists

    try:
        return current_release(suite, flavour, mirror)
    except VerificationError:
        raise  # a mirror that serves what Debian did not sign is not "unreachable"
    except MirrorError:
        alias = image_exists(docker_client(), suite_alias(suite, flavour))
        if alias is None:
            raise
        release = str(alias.labels[RELEASE_LABEL])
        say(f"{spec}: mirror unreachable, using the last image built for it ({release})")
        return release


def _release_suite(client: Any, release: str, mirror: str | None, say: Progress) -> str:
    """The Debian suite a release's headers come from: its image's label, else the mirror."""
    # lazily, for start-up (see the top of this module)
    from kbuild_py.debian.archive import suite_for_release
    from kbuild_py.seams.docker import image_exists

    built = image_exists(client, kernel_image(release))
    if built is not None:
        return str((built.labels or {}).get(SUITE_LABEL) or "bookworm")
    skipped: list[str] = []
    suite = suite_for_release(release, mirror, skipped)
    for note in skipped:
        say(f"note: {note}")
    if suite is None:
        raise UsageError(
            f"no kernel {release}: no build tree in /lib/modules, no kmod-py image, "
            "and no Debian suite ships linux-headers-" + release,
            "; ".join([*skipped, _what_exists(mirror)]),
        )
    say(f"{release}: linux-headers-{release} comes from Debian {suite}")
    return suite


def _what_exists(mirror: str | None) -> str:
    """A hint naming the kernels that do exist here and in Debian."""
    # lazily, for start-up (see the top of this module)
    from kbuild_py.debian.archive import current_release
    from kbuild_py.images.kernel import list_images

    parts = [f"host build trees: {', '.join(host_releases()) or 'none'}"]
    try:
        built = sorted({i.release for i in list_images()})
        parts.append(f"kmod-py images: {', '.join(built) or 'none'}")
    except KmodError:
        pass
    for suite in ("bookworm", "trixie", "trixie-backports"):
        try:
            parts.append(f"debian:{suite} = {current_release(suite, 'amd64', mirror)}")
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
        aliases = [a for t in img.tags if (a := alias_spec(t.split(":", 1)[1], SUITES))]
        spec = aliases[0] if aliases else img.release
        rows.append(KernelRow(spec, img.release, img.compiler, f"image {img.name}", img.suite))
    return rows


def suite_kernels(
    suite: str, mirror: str | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """(current release of debian:SUITE[/FLAVOUR], [(release, archive suite)] of every
    release with headers in SUITE, its security and its point-update suites)."""
    parsed = parse_spec(f"debian:{suite}")
    # lazily, for start-up (see the top of this module)
    from kbuild_py.debian.archive import KernelSuite

    ks = KernelSuite(parsed.value, mirror, arch_of(parsed.flavour))
    return ks.current_release(parsed.flavour), ks.releases(parsed.flavour)
