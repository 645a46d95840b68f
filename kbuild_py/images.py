"""Kernel-headers images: kmod-py/kernel:<release> built from containers/debian/Dockerfile.

A kernel image holds one Debian linux-headers-<release> package (and the compiler it
pulls in) plus make. It is built on demand, on a base image that is either pulled
(debian:<suite>, when a registry answers) or debootstrapped from the Debian mirror and
`docker import`ed as kmod-py/base:<suite>. Images persist in the daemon; a snapshot of
each image's build tree (the few files BuildTree reads) is kept under cache_dir()/trees.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbuild_py import debian
from kbuild_py.buildtree import SNAPSHOT_FILES, BuildTree
from kbuild_py.docker_backend import RUN_LABEL, caller_user, docker_client
from kbuild_py.errors import InfraError, UsageError
from kbuild_py.paths import cache_dir
from kbuild_py.process import HostRunner

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

_build_lock = threading.Lock()


def _quiet(_: str) -> None:
    pass


def tag_for(release: str) -> str:
    """Docker tags allow [A-Za-z0-9_.-]: '+' (as in 6.12.117+deb13-amd64) becomes '_'."""
    return release.replace("+", "_")


def kernel_image(release: str) -> str:
    return f"{KERNEL_REPO}:{tag_for(release)}"


def suite_alias(suite: str) -> str:
    return f"{KERNEL_REPO}:debian-{suite}"


def dockerfile_text() -> bytes:
    """containers/debian/Dockerfile, from the wheel (kbuild_py/containers) or the source tree."""
    here = Path(__file__).resolve().parent
    for p in (here / "containers/debian/Dockerfile", here.parent / "containers/debian/Dockerfile"):
        if p.is_file():
            return p.read_bytes()
    raise InfraError("containers/debian/Dockerfile is missing from the kmod-py installation")


def recipe_hash() -> str:
    import hashlib

    return hashlib.sha256(dockerfile_text()).hexdigest()[:16]


def image_exists(client: Any, name: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name)
    except ImageNotFound:
        return None


# --- base images -----------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    name: str
    how: str  # "reused", "pulled debian:<suite>", "debootstrap <suite> from <mirror>"


def ensure_base(
    client: Any, suite: str, mirror: str | None = None, progress: Progress = _quiet
) -> BaseImage:
    """kmod-py/base:<suite>: reused, else pulled from a registry, else debootstrapped."""
    name = f"{BASE_REPO}:{suite}"
    if image_exists(client, name):
        return BaseImage(name, "reused")
    if _try_pull(suite, progress):
        client.images.get(f"debian:{suite}").tag(BASE_REPO, suite)
        progress(f"base image: pulled debian:{suite} (tagged {name})")
        return BaseImage(name, f"pulled debian:{suite}")
    url = debian.mirror_url(mirror)
    progress(f"base image: no registry reachable; debootstrap --variant=minbase {suite} {url}")
    _debootstrap_import(client, suite, url, name, progress)
    return BaseImage(name, f"debootstrap {suite} from {url}")


def _try_pull(suite: str, progress: Progress) -> bool:
    import docker
    from docker.errors import DockerException

    try:
        quick = docker.from_env(timeout=30)
        for _ in quick.api.pull("debian", tag=suite, stream=True, decode=True):
            pass
        quick.images.get(f"debian:{suite}")
        return True
    except (DockerException, OSError) as e:
        why = getattr(e, "explanation", None) or str(e)
        progress(f"base image: cannot pull debian:{suite} ({str(why).splitlines()[0][:160]})")
        return False


def _debootstrap_import(client: Any, suite: str, url: str, name: str, progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise InfraError(
            f"cannot make base image {name}: no registry answers and debootstrap is missing",
            "apt-get install debootstrap, or make debian:<suite> pullable",
        )
    if os.geteuid() != 0:
        raise InfraError(
            f"cannot make base image {name}: no registry answers and debootstrap needs root",
            f"run `sudo kmod-py images --build debian:{suite}` once, or `docker tag` an "
            f"existing debian:{suite} image as {name}",
        )
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=_ensure(cache_dir())))
    root, tar = work / "root", work / "rootfs.tar"
    runner = HostRunner()
    try:
        argv = ["debootstrap", "--variant=minbase", "--arch=amd64", suite, str(root), url]
        res = runner.run(argv, timeout=DEBOOTSTRAP_TIMEOUT, on_line=progress)
        if res.returncode != 0:
            log = root / "debootstrap/debootstrap.log"
            raise InfraError(
                f"debootstrap of {suite} from {url} failed (exit {res.returncode})",
                f"see {log}" if log.is_file() else "check the mirror (--mirror)",
            )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        res = runner.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tar), "."], timeout=600
        )
        if res.returncode != 0:
            raise InfraError(f"tar of the {suite} root filesystem failed (disk full?)")
        progress(f"base image: docker import as {name}")
        client.api.import_image_from_file(
            str(tar), repository=BASE_REPO, tag=suite,
            changes=[f"LABEL {KIND_LABEL}=base {SUITE_LABEL}={suite}", 'CMD ["/bin/bash"]'],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# --- kernel images ---------------------------------------------------------------------


def ensure_kernel_image(
    suite: str,
    release: str,
    *,
    mirror: str | None = None,
    progress: Progress = _quiet,
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
                _remove_quietly(client, img.id)
            else:
                progress(f"image {name}: reused")
    client.images.get(name).tag(KERNEL_REPO, f"debian-{suite}")
    return name


def _current(img: Any | None) -> bool:
    return img is not None and (img.labels or {}).get(RECIPE_LABEL) == recipe_hash()


@contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise image builds across kmod-py processes sharing this cache directory."""
    import fcntl

    with open(_ensure(cache_dir()) / "images.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_kernel_image(
    client: Any, suite: str, release: str, *, mirror: str | None = None,
    progress: Progress = _quiet,
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
        "RELEASE": release,
        "COMPILER": "",
        "RECIPE": recipe_hash(),
    }
    first = _docker_build(client, name, args, progress)
    tree = snapshot_tree(client, name, release, refresh=True)
    args["COMPILER"] = tree.cc_version_text
    final = _docker_build(client, name, args, progress)  # label only: the RUN layer is cached
    if first != final:
        _remove_quietly(client, first)
    _mark_snapshot(release, final)
    progress(f"image {name}: built ({tree.cc_version_text or 'compiler unknown'})")
    return name


def _remove_quietly(client: Any, image_id: str) -> None:
    from docker.errors import APIError

    try:
        client.images.remove(image_id)
    except APIError:
        pass  # still tagged elsewhere or in use: a leftover is harmless


def _docker_build(client: Any, tag: str, args: dict[str, str], progress: Progress) -> str:
    log_path = _ensure(cache_dir() / "logs") / f"image-{tag_for(args['RELEASE'])}.log"
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
                if line.strip():
                    progress(line)
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


# --- looking inside images -------------------------------------------------------------


def image_releases(client: Any, image: str) -> list[str]:
    """Kernel releases with a prepared build tree under /lib/modules in an image."""
    img = image_exists(client, image)
    if img is None:
        raise UsageError(
            f"no Docker image {image!r}",
            "build or pull it first (`docker images` lists what exists)",
        )
    label = (img.labels or {}).get(RELEASE_LABEL)
    if label:
        return [label]
    script = (
        'for d in /lib/modules/*/build; do '
        '[ -f "$d/include/generated/utsrelease.h" ] && basename "$(dirname "$d")"; done; true'
    )
    out = client.containers.run(
        image, entrypoint=["sh", "-c", script], command=[], remove=True, user=caller_user(),
        network_disabled=True, labels={RUN_LABEL: str(os.getpid())}, stdout=True, stderr=False,
    )
    return sorted(line for line in out.decode().split() if line)


def snapshot_tree(client: Any, image: str, release: str, refresh: bool = False) -> BuildTree:
    """BuildTree over a copy of the image's /lib/modules/<release>/build files (cached)."""
    img = image_exists(client, image)
    image_id = img.id if img is not None else ""
    ours = img is not None and (img.labels or {}).get(KIND_LABEL) == "kernel"
    # kmod-py's own images share trees/<release>; other images get one per image id.
    name = release if ours else f"{release}@{image_id.split(':')[-1][:12]}"
    dest = cache_dir() / "trees" / name
    marker = dest / ".image-id"
    if not refresh and marker.is_file() and marker.read_text().strip() == image_id:
        return BuildTree(dest.resolve())
    tmp = Path(tempfile.mkdtemp(prefix=f".{release}-", dir=_ensure(dest.parent)))
    container = client.containers.create(
        image, command=["true"], entrypoint=[], labels={RUN_LABEL: str(os.getpid())}
    )
    try:
        kdir = f"/lib/modules/{release}/build"
        for rel in SNAPSHOT_FILES:
            data = _read_file(container, f"{kdir}/{rel}")
            if data is not None:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
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
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return BuildTree(dest.resolve())


def _mark_snapshot(release: str, image_id: str) -> None:
    marker = cache_dir() / "trees" / release / ".image-id"
    if marker.parent.is_dir():
        marker.write_text(image_id + "\n")


def _read_file(container: Any, path: str, hops: int = 8) -> bytes | None:
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
    from kbuild_py.docker_backend import leftover_containers

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
    """Remove kmod-py's kernel (and base) images, leftover containers and tree snapshots."""
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
    return report
