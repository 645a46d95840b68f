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
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbuild_py.debian import archive as debian
from kbuild_py.debian.suites import arch_of, flavour_of
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.images.base import ensure_base
from kbuild_py.images.model import (
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
from kbuild_py.paths import cache_dir, data_path, ensure_dir
from kbuild_py.progress import task as progress_task
from kbuild_py.seams.docker import docker_client, image_exists, remove_orphans
from kbuild_py.trust import fs


def dockerfile_text() -> bytes:
    """containers/debian/Dockerfile, from the wheel (kbuild_py/containers) or the source tree."""
    return data_path("containers/debian/Dockerfile").read_bytes()


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
        with image_lock(release):
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


def image_lock(name: str, policy: fs.LockPolicy | None = None) -> AbstractContextManager[None]:
    """One build of one image at a time, across kmod-py processes sharing this cache (and
    threads): a second one waits, saying for whom, or fails at once under --no-wait."""
    tag = fs.plain_component(tag_for(name), "image name")
    lock = fs.make_dirs(cache_dir(), "locks") / f"image-{tag}.lock"
    return fs.locked(lock, f"building image {tag}", policy)


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
    with image_lock(f"base-{base_suite}"):
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
_STEP = re.compile(r"^Step (\d+)/(\d+) : ")
_SHOWN = re.compile(r"^(Step \d+/\d+ : |Setting up (linux-headers|linux-image|gcc-\d+ )|E: |W: )")


def _docker_build(client: Any, tag: str, args: dict[str, str], progress: Progress) -> str:
    log_path = build_log(args["RELEASE"])
    step, image_id, pending, tail = "", "", "", []
    with open(log_path, "a") as log, progress_task(f"image {tag}") as shown:
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
                    if m := _STEP.match(line):
                        shown.update(completed=int(m[1]) - 1, total=int(m[2]))
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


def remove_leftover_containers(client: Any = None) -> list[str]:
    """Remove the containers of killed kmod-py processes (those of running ones stay)."""
    return remove_orphans(client or docker_client())


@dataclass
class PruneReport:
    images: list[str]
    containers: list[str]
    trees: list[str]
    kept: list[str] = field(default_factory=list)  # images in use by a container


def prune(client: Any = None, *, everything: bool = False) -> PruneReport:
    """Remove what killed kmod-py runs left: their containers, untagged kmod-py images (an
    interrupted rebuild's) and tree snapshots of images that are gone. everything=True (`--all`)
    also removes every tagged kmod-py kernel and base image and every snapshot. An image a
    container uses is never removed (reported in `kept`)."""
    from docker.errors import APIError, NotFound

    client = client or docker_client()
    report = PruneReport([], remove_leftover_containers(client), [])
    in_use = {str((c.attrs or {}).get("Image", "")) for c in client.containers.list(all=True)}
    ours = [
        img for img in client.images.list(filters={"label": KIND_LABEL})
        if (img.labels or {}).get(KIND_LABEL) in ("kernel", "base")
    ]
    for img in ours:
        name = ", ".join(img.tags) or img.short_id.split(":")[-1]
        if img.tags and not everything:
            continue
        if img.id in in_use:
            report.kept.append(f"{name} (in use)")
            continue
        try:
            for tag in img.tags[:-1]:
                client.images.remove(tag)
            client.images.remove(img.id)
        except NotFound:
            continue
        except APIError as err:
            if err.status_code != 409:
                raise
            report.kept.append(f"{name} (in use)")
            continue
        report.images.append(name)
    report.trees = _prune_trees(client, everything)
    return report


def _prune_trees(client: Any, everything: bool) -> list[str]:
    """Snapshots of images that are gone (all with everything) and half-made ones: build-tree
    snapshots (trees/) and `kmod-py explain`'s header copies (headers/; with everything also
    what explain looked up in them)."""
    headers = _prune_snapshots(client, "headers", everything)
    lookups = cache_dir() / "explain"  # <release>-<hash>.json per header copy
    if everything:
        fs.rmtree_inside(cache_dir(), "explain")
    elif lookups.is_dir() and not lookups.is_symlink():
        for f in sorted(lookups.iterdir()):
            if any(f.name.startswith(f"{h}-") for h in headers):
                fs.remove_inside(lookups, f.name)
        if not any(lookups.iterdir()):
            lookups.rmdir()
    return [*_prune_snapshots(client, "trees", everything), *(f"headers/{h}" for h in headers)]


def _prune_snapshots(client: Any, where: str, everything: bool) -> list[str]:
    import time

    root = cache_dir() / where
    if not root.is_dir() or root.is_symlink():
        return []
    removed = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        marker = d / ".image-id"
        if d.name.startswith("."):  # a snapshot being made, or left by a killed run
            doomed = time.time() - d.lstat().st_mtime > 3600
        elif everything or not marker.is_file():
            doomed = True
        else:
            doomed = image_exists_id(client, marker.read_text().strip()) is None
        if doomed:
            fs.rmtree_inside(root, d.name)
            removed.append(d.name)
    return removed


def image_exists_id(client: Any, image_id: str) -> Any | None:
    from docker.errors import APIError, NotFound

    if not image_id:
        return None
    try:
        return client.images.get(image_id)
    except (NotFound, APIError):
        return None
