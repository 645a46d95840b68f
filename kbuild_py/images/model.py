"""The image model: names, labels and limits shared by kernel images, base images and
build-tree snapshots. Imports nothing else of kmod-py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Progress = Callable[[str], None]

KERNEL_REPO = "kmod-py/kernel"
BASE_REPO = "kmod-py/base"
KIND_LABEL = "io.kmod-py.kind"
RELEASE_LABEL = "io.kmod-py.kernel.release"
COMPILER_LABEL = "io.kmod-py.kernel.compiler"
SUITE_LABEL = "io.kmod-py.debian.suite"
RECIPE_LABEL = "io.kmod-py.recipe"
BUILD_TIMEOUT = 1800  # seconds one image build may take
DEBOOTSTRAP_TIMEOUT = 1200


def quiet(_: str) -> None:
    """A progress callback that shows nothing."""


def tag_for(release: str) -> str:
    """Docker tags allow [A-Za-z0-9_.-]: '+' (as in 6.12.117+deb13-amd64) becomes '_'."""
    return release.replace("+", "_")


def kernel_image(release: str) -> str:
    return f"{KERNEL_REPO}:{tag_for(release)}"


def suite_alias(suite: str, flavour: str = "amd64") -> str:
    return f"{KERNEL_REPO}:{suite_alias_tag(suite, flavour)}"


def suite_alias_tag(suite: str, flavour: str = "amd64") -> str:
    """debian-bookworm; other flavours add theirs: debian-bookworm-arm64."""
    return f"debian-{suite}" if flavour == "amd64" else f"debian-{suite}-{flavour}"


def alias_spec(tag: str, suites: Sequence[str]) -> str | None:
    """'debian-bookworm' -> 'debian:bookworm'; 'debian-trixie-arm64' -> 'debian:trixie/arm64'."""
    if not tag.startswith("debian-"):
        return None
    rest = tag[len("debian-"):]
    for suite in sorted(suites, key=len, reverse=True):
        if rest == suite:
            return f"debian:{suite}"
        if rest.startswith(suite + "-"):
            return f"debian:{suite}/{rest[len(suite) + 1:]}"
    return None
