"""The image model: names, labels and limits shared by kernel images, base images and
build-tree snapshots. Imports nothing else of kmod-py.
"""

from __future__ import annotations

from collections.abc import Callable

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


def suite_alias(suite: str) -> str:
    return f"{KERNEL_REPO}:debian-{suite}"
