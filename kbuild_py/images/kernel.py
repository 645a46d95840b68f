"""Kernel-headers images: kmod-py/kernel:<release> built from containers/debian/Dockerfile.

A kernel image holds one Debian linux-headers-<release> package (and the compiler it
pulls in) plus make. It is built on demand, on a base image that is either pulled
(debian:<suite>, when a registry answers) or debootstrapped from the Debian mirror and
`docker import`ed as kmod-py/base:<suite> (images.base). Images persist in the daemon;
a snapshot of each image's build tree (the few files BuildTree reads) is kept under
cache_dir()/trees (images.tree).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbuild_py.debian import archive as debian
from kbuild_py.debian.suites import arch_of, flavour_of
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.images.base import ensure_base
from kbuild_py.images.model import (
    BASE_REPO,
    BUILD_TIMEOUT,
    COMPILER_LABEL,
    KERNEL_REPO,
    KIND_LABEL,
    RECIPE_LABEL,
    RELEASE_LABEL,
    SUITE_LABEL,
    Progress,
    kernel_image,
    quiet,
    suite_alias_tag,
    tag_for,
)
from kbuild_py.images.tree import mark_snapshot, snapshot_tree
from kbuild_py.paths import cache_dir, ensure_dir
from kbuild_py.seams.docker import RUN_LABEL, docker_client, image_exists, leftover_containers

_build_lock = threading.Lock()


def dockerfile_text() -> bytes:
    """containers/debian/Dockerfile, from the wheel (kbuild_py/containers) or the source tree."""
    here = Path(__file__).resolve().parent.parent  # the kbuild_py package
    for p in (here / "containers/debian/Dockerfile", here.parent / "containers/debian/Dockerfile"):
        if p.is_file():
            return p.read_bytes()
    raise InfraError("containers/debian/Dockerfile is missing from the kmod-py installation")


def recipe_hash() -> str:
    import hashlib

    return hashlib.sha256(dockerfile_text()).hexdigest()[:16]


# --- kernel images ---------------------------------------------------------------------


def ensure_kernel_image(
    suite: str,
    release: str,
    *,
    mirror: str | None = None,
    progress: Progress = quiet,
    client: Any = None,
) -> str:
    """The image for a Debian kernel release, built (and tagged per suite) if missing."""
    client = client or docker_client()
    name = kernel_image(release)
    if _current(image_exists(client, name)):  # fast path: no lock to reuse an image
        progress(f"image {name}: reused")
    else:
        with _build_lock, _machine_lock():
            img = image_exists(client, name)  # another process may have built it meanwhile
            if img is None:
                build_kernel_image(client, suite, release, mirror=mirror, progress=progress)
            elif not _current(img):
                progress(f"image {name}: made from an older containers/debian/Dockerfile, "
                         "rebuilding")
                build_kernel_image(client, suite, release, mirror=mirror, progress=progress)
                _removequietly(client, img.id)
            else:
                progress(f"image {name}: reused")
    client.images.get(name).tag(KERNEL_REPO, suite_alias_tag(suite, flavour_of(release)))
    return name


def _current(img: Any | None) -> bool:
    return img is not None and (img.labels or {}).get(RECIPE_LABEL) == recipe_hash()


@contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise image builds across kmod-py processes sharing this cache directory."""
    import fcntl

    with open(ensure_dir(cache_dir()) / "images.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_kernel_image(
    client: Any, suite: str, release: str, *, mirror: str | None = None,
    progress: Progress = quiet,
) -> str:
    """Build kmod-py/kernel:<release> from Debian <suite>'s linux-headers-<release>."""
    base_suite = debian.BASE_SUITE.get(suite)
    if base_suite is None:
        raise UsageError(
            f"unknown Debian suite {suite!r}", f"use one of: {', '.join(debian.SUITES)}"
        )
    base = ensure_base(client, base_suite, mirror, progress)
    progress(f"base image {base.name}: {base.how}")
    name = kernel_image(release)
    args = {
        "BASE": base.name,
        "SUITE": suite,
        "HEADERS": f"linux-headers-{release}",
        "MIRROR": debian.mirror_url(mirror),
        "SECURITY": debian.security_url(mirror),
        "ARCH": arch_of(release),
        "RELEASE": release,
        "COMPILER": "",
        "RECIPE": recipe_hash(),
    }
    progress(f"image {name}: installing linux-headers-{release} from Debian {suite} "
             f"(log: {build_log(release)})")
    first = _docker_build(client, name, args, progress)
    tree = snapshot_tree(client, name, release, refresh=True)
    args["COMPILER"] = tree.cc_version_text
    final = _docker_build(client, name, args, quiet)  # label only: the RUN layer is cached
    if first != final:
        _removequietly(client, first)
    mark_snapshot(release, final)
    progress(f"image {name}: built ({tree.cc_version_text or 'compiler unknown'})")
    return name


def _removequietly(client: Any, image_id: str) -> None:
    from docker.errors import APIError

    try:
        client.images.remove(image_id)
    except APIError:
        pass  # still tagged elsewhere or in use: a leftover is harmless


def build_log(release: str) -> Path:
    return ensure_dir(cache_dir() / "logs") / f"image-{tag_for(release)}.log"


# Build output worth showing live; everything goes to the log.
_SHOWN = re.compile(r"^(Step \d+/\d+ : |Setting up (linux-headers|linux-image|gcc-\d+ )|E: |W: )")


def _docker_build(client: Any, tag: str, args: dict[str, str], progress: Progress) -> str:
    log_path = build_log(args["RELEASE"])
    step, image_id, pending, tail = "", "", "", []
    with open(log_path, "a") as log:
        stream = client.api.build(
            fileobj=io.BytesIO(dockerfile_text()), tag=tag, buildargs=args, rm=True,
            forcerm=True, decode=True, timeout=BUILD_TIMEOUT, network_mode="host",
        )
        for item in stream:
            if "error" in item:
                if pending.strip():
                    tail.append(_plain(pending))
                log.write(item["error"] + "\n")
                raise _build_error(tag, step, item["error"], tail, log_path)
            if "aux" in item and "ID" in item["aux"]:
                image_id = item["aux"]["ID"]
            # stream chunks are not whole lines (stdout and stderr interleave mid-line)
            *lines, pending = (pending + item.get("stream", "")).split("\n")
            for line in map(_plain, lines):
                log.write(line + "\n")
                if line.startswith("Step "):
                    step, tail = line, []
                elif line.strip() and not line.startswith((" ---> ", "Removing intermediate")):
                    tail.append(line)
                if _SHOWN.match(line):
                    progress("  " + (line if len(line) <= 100 else line[:97] + "..."))
    if not image_id:
        image_id = client.images.get(tag).id
    return image_id


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(line: str) -> str:
    return _ANSI.sub("", line).rstrip("\r")


def _build_error(tag: str, step: str, error: str, tail: list[str], log: Path) -> InfraError:
    """The failing step (shortened), apt's own error lines first, and the log's path."""
    short = step if len(step) <= 70 else step[:67] + "..."
    code = re.search(r"returned a non-zero code: \d+", error)
    errors = [ln for ln in tail if ln.startswith(("E:", "W:"))] or tail[-8:]
    disk = "no space left" in error.lower() or any("No space left" in ln for ln in tail)
    return InfraError(
        f"building image {tag} failed at {short or 'the start'}: "
        f"{code.group(0) if code else error.strip()[:200]}",
        "\n".join(errors[-8:]) + f"\nfull log: {log}"
        + ("\nthe disk is full: free space (kmod-py images --prune, docker system prune)"
           if disk else ""),
    )


# --- listing and pruning ---------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    name: str  # kmod-py/kernel:<release tag>
    tags: tuple[str, ...]
    release: str
    suite: str
    compiler: str
    size: int
    created: str
    id: str


def list_images(client: Any = None) -> list[ImageInfo]:
    """kmod-py's kernel images in the daemon, oldest kernel first."""
    client = client or docker_client()
    out = []
    for img in client.images.list(filters={"label": f"{KIND_LABEL}=kernel"}):
        if not img.tags:
            continue  # an untagged leftover of a rebuild: --prune removes it
        labels = img.labels or {}
        release = labels.get(RELEASE_LABEL, "")
        tags = tuple(sorted(img.tags))
        main = kernel_image(release) if kernel_image(release) in tags else (tags or ("",))[0]
        out.append(ImageInfo(
            name=main, tags=tags, release=release, suite=labels.get(SUITE_LABEL, ""),
            compiler=labels.get(COMPILER_LABEL, ""), size=int(img.attrs.get("Size", 0)),
            created=str(img.attrs.get("Created", ""))[:19], id=img.short_id,
        ))
    return sorted(out, key=lambda i: debian._version_key(i.release))


def remove_leftover_containers(client: Any = None, *, keep_live: bool = True) -> list[str]:
    """Remove containers labelled by kmod-py whose process is gone (all if not keep_live)."""
    removed = []
    for c in leftover_containers(client or docker_client()):
        owner = (c.labels or {}).get(RUN_LABEL, "")
        if keep_live and owner.isdigit() and _pid_alive(int(owner)):
            continue
        c.remove(force=True)
        removed.append(c.short_id)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PruneReport:
    images: list[str]
    containers: list[str]
    trees: list[str]


def prune(client: Any = None, *, bases: bool = True) -> PruneReport:
    """Remove kmod-py's kernel (and base) images, leftover containers, tree snapshots and
    the header copies `kmod-py explain` made of the images."""
    client = client or docker_client()
    report = PruneReport([], remove_leftover_containers(client), [])
    doomed = client.images.list(filters={"label": f"{KIND_LABEL}=kernel"})
    if bases:
        doomed += client.images.list(name=BASE_REPO)
    for img in doomed:
        client.images.remove(img.id, force=True)
        report.images.append(", ".join(img.tags) or img.short_id)
    trees = cache_dir() / "trees"
    if trees.is_dir():
        for d in sorted(trees.iterdir()):
            shutil.rmtree(d, ignore_errors=True)
            report.trees.append(d.name)
    # explain's header copies of the images (headers/<release>) and what it looked up in them
    headers = cache_dir() / "headers"
    if headers.is_dir():
        for d in sorted(p for p in headers.iterdir() if p.is_dir()):
            shutil.rmtree(d, ignore_errors=True)
            report.trees.append(f"headers/{d.name}")
    shutil.rmtree(cache_dir() / "explain", ignore_errors=True)
    return report
