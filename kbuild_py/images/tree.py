"""Looking inside an image: which kernel releases it holds, and a snapshot of a build tree.

The snapshot is the few files BuildTree reads (buildtree.SNAPSHOT_FILES), copied out of a
created-but-never-started container with the archive API, under cache_dir()/trees/.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from kbuild_py.errors import UsageError
from kbuild_py.images.model import KERNEL_REPO, KIND_LABEL, RELEASE_LABEL
from kbuild_py.kernels.buildtree import SAMPLE_MODULE, SNAPSHOT_FILES, BuildTree
from kbuild_py.paths import cache_dir
from kbuild_py.seams.docker import DockerRunner, image_exists, owner_labels
from kbuild_py.trust import fs


def image_releases(client: Any, image: str) -> list[str]:
    """Kernel releases with a prepared build tree under /lib/modules in an image."""
    img = image_exists(client, image) or _pull(client, image)
    label = (img.labels or {}).get(RELEASE_LABEL)
    if label:
        return [fs.plain_component(label, f"kernel release (label {RELEASE_LABEL} of {image})")]
    script = (
        'for d in /lib/modules/*/build; do '
        '[ -f "$d/include/generated/utsrelease.h" ] && basename "$(dirname "$d")"; done; true'
    )
    lines: list[str] = []
    res = DockerRunner(image, client).run(["sh", "-c", script], timeout=120, on_line=lines.append)
    if res.returncode != 0:
        raise UsageError(
            f"cannot look for kernel build trees in image {image} (exit {res.returncode})",
            "the image needs a shell (sh) and /lib/modules/<release>/build",
        )
    return sorted(
        fs.plain_component(ln.strip(), f"kernel release (in image {image})")
        for ln in lines if ln.strip()
    )


def _pull(client: Any, image: str) -> Any:
    """Pull an image that is not local yet, or UsageError saying what exists."""
    from docker.errors import DockerException

    try:
        return client.images.pull(image)
    except DockerException as e:
        why = str(getattr(e, "explanation", None) or e).splitlines()[0][:160]
        tags = [t for i in client.images.list() for t in i.tags]
        raise UsageError(
            f"no Docker image {image!r} here, and pulling it failed ({why})",
            local_images_hint(tags, image),
        ) from e


def local_images_hint(tags: list[str], wanted: str, shown: int = 12) -> str:
    """The local images most useful instead of `wanted`, on a daemon with any number of them:
    kmod-py's kernel images first (its suite aliases before its releases), then the rest; in
    each group names closest to `wanted` first; then how many more there are."""
    import difflib

    def rank(tag: str) -> tuple[int, float, str]:
        group = (0 if tag.startswith(f"{KERNEL_REPO}:debian-")
                 else 1 if tag.startswith(f"{KERNEL_REPO}:") else 2)
        return group, -difflib.SequenceMatcher(None, wanted, tag).ratio(), tag

    ranked = sorted(set(tags), key=rank)
    more = len(ranked) - shown
    return ("local images: " + (", ".join(ranked[:shown]) or "none")
            + (f" and {more} more (`docker images`)" if more > 0 else "")
            + " (`kmod-py images` lists kmod-py's kernel images)")


def snapshot_tree(client: Any, image: str, release: str, refresh: bool = False) -> BuildTree:
    """BuildTree over a copy of the image's /lib/modules/<release>/build files (cached)."""
    fs.plain_component(release, f"kernel release (image {image})")
    img = image_exists(client, image)
    image_id = img.id if img is not None else ""
    ours = img is not None and (img.labels or {}).get(KIND_LABEL) == "kernel"
    # kmod-py's own images share trees/<release>; other images get one per image id.
    name = release if ours else f"{release}@{image_id.split(':')[-1][:12]}"
    trees = fs.make_dirs(cache_dir(), "trees")
    dest = trees / name
    marker = dest / ".image-id"
    if not refresh and marker.is_file() and marker.read_text().strip() == image_id:
        return BuildTree(dest.resolve())
    tmp = Path(tempfile.mkdtemp(prefix=f".{release}-", dir=trees))
    container = client.containers.create(
        image, command=["true"], entrypoint=[], labels=owner_labels()
    )
    try:
        kdir = f"/lib/modules/{release}/build"
        for rel in SNAPSHOT_FILES:
            data = read_file(container, f"{kdir}/{rel}")
            if data is not None:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
        _copy_sample_module(client, container, image, release, tmp)
    finally:
        container.remove(force=True)
    if not (tmp / "include/generated/utsrelease.h").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(
            f"image {image} has no prepared build tree at /lib/modules/{release}/build",
            "install the linux-headers package of that kernel in the image",
        )
    (tmp / ".image-id").write_text(image_id + "\n")
    tmp.chmod(0o755)
    fs.rmtree_inside(trees, name)
    os.replace(tmp, dest)
    return BuildTree(dest.resolve())


def _copy_sample_module(client: Any, container: Any, image: str, release: str, dest: Path) -> None:
    """One in-tree module of the release, when the image has them (trixie's headers depend on
    the linux-image package): it tells the check rules sizeof(struct module)."""
    script = (f"for d in /lib/modules/{release}/kernel /usr/lib/modules/{release}/kernel; do "
              f"[ -d $d/fs ] && find $d/fs -name '*.ko*' | head -n1 && break; done; true")
    lines: list[str] = []
    try:
        res = DockerRunner(image, client).run(["sh", "-c", script], timeout=120,
                                              on_line=lines.append)
    except Exception:  # a sample is a nicety: the struct-size rule then says it was skipped
        return
    found = [ln.strip() for ln in lines if ln.strip().startswith("/")]
    if res.returncode == 0 and found:
        data = read_file(container, found[0])
        if data:
            (dest / SAMPLE_MODULE).write_bytes(data)


def mark_snapshot(release: str, image_id: str) -> None:
    fs.plain_component(release, "kernel release")
    marker = cache_dir() / "trees" / release / ".image-id"
    if marker.parent.is_dir() and not marker.parent.is_symlink():
        marker.write_text(image_id + "\n")


def read_file(container: Any, path: str, hops: int = 8) -> bytes | None:
    """One file out of a (stopped) container, following symlinks; None if absent."""
    from docker.errors import NotFound

    for _ in range(hops):
        try:
            chunks, _stat = container.get_archive(path)
        except NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            if member is None:
                return None
            if member.issym():
                target = member.linkname
                path = target if target.startswith("/") else f"{os.path.dirname(path)}/{target}"
                continue
            f = tar.extractfile(member)
            return f.read() if f else None
    return None
