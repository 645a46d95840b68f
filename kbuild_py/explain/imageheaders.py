"""A kernel image's header directories, copied out once per release for lookups.

A kmod-py kernel image holds /lib/modules/<release>/build -> /usr/src/linux-headers-<release>
(generated headers) whose one-line Makefile includes /usr/src/linux-headers-<ver>-common
(include/, arch/<arch>/include/). Those four directories are copied with the archive API
from a created-but-never-started container into cache_dir()/headers/<name>/, laid out like
a source tree (include/, include/generated/, arch/<arch>/include/, ...), and reused while
the image id is the same. About 60 MB and a few seconds per release, once.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from kbuild_py.errors import UsageError
from kbuild_py.images.model import KIND_LABEL
from kbuild_py.images.tree import read_file
from kbuild_py.paths import cache_dir, ensure_dir
from kbuild_py.seams.docker import image_exists, owner_labels

MARKER = ".image-id"


def headers_root() -> Path:
    return cache_dir() / "headers"


def cached_header_dirs() -> list[Path]:
    """Header copies made earlier (complete ones: they carry their image id)."""
    root = headers_root()
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / MARKER).is_file())


@contextmanager
def _locked(name: str) -> Iterator[None]:
    lock = ensure_dir(headers_root()) / f".{name}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_headers(client: Any, image: str, release: str, arch: str = "x86") -> Path:
    """The directory holding a copy of the image's headers for release (made on first use)."""
    img = image_exists(client, image)
    if img is None:
        raise UsageError(
            f"no Docker image {image} to read kernel headers from",
            "`kmod-py images` lists kmod-py's kernel images",
        )
    ours = (img.labels or {}).get(KIND_LABEL) == "kernel"
    name = release if ours else f"{release}@{img.id.split(':')[-1][:12]}"
    dest = headers_root() / name
    with _locked(name):
        marker = dest / MARKER
        if marker.is_file() and marker.read_text().strip() == img.id:
            return dest
        if marker.is_file() and _same_build(client, image, release, dest):
            marker.write_text(img.id + "\n")  # a rebuilt image around the same headers package
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=ensure_dir(dest.parent)))
        try:
            _copy_out(client, image, release, arch, tmp)
            (tmp / MARKER).write_text(img.id + "\n")
            tmp.chmod(0o755)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# UTS_VERSION names the kernel build ("#1 SMP PREEMPT_DYNAMIC Debian 7.3.4-1~bpo13+1 (date)").
_BUILD_ID = ("include/generated/utsversion.h", "include/generated/compile.h")


def _same_build(client: Any, image: str, release: str, dest: Path) -> bool:
    """Whether the image holds the very kernel build the copy in dest was made from."""
    container = client.containers.create(
        image, command=["true"], entrypoint=[], labels=owner_labels()
    )
    try:
        for rel in _BUILD_ID:
            ours = dest / rel
            if ours.is_file():
                theirs = read_file(container, f"/lib/modules/{release}/build/{rel}")
                return theirs is not None and theirs == ours.read_bytes()
        return False
    finally:
        container.remove(force=True)


def _copy_out(client: Any, image: str, release: str, arch: str, into: Path) -> None:
    container = client.containers.create(
        image, command=["true"], entrypoint=[], labels=owner_labels()
    )
    try:
        build = f"/lib/modules/{release}/build"  # the daemon follows the link inside paths
        makefile = (read_file(container, f"{build}/Makefile") or b"").decode(errors="replace")
        m = re.search(r"^\s*include\s+(\S+)/Makefile\s*$", makefile, re.M)
        src = m.group(1) if m else build
        copies = [
            (f"{src}/include", "include"),
            (f"{src}/arch/{arch}/include", f"arch/{arch}/include"),
        ]
        if src != build:
            copies += [
                (f"{build}/include/generated", "include/generated"),
                (f"{build}/arch/{arch}/include/generated", f"arch/{arch}/include/generated"),
            ]
        for path, rel in copies:
            _extract_dir(container, path, into / rel)
    finally:
        container.remove(force=True)
    if (
        not (into / "include/linux").is_dir()
        or not (into / "include/generated/uapi/linux/version.h").is_file()
    ):
        raise UsageError(
            f"image {image} has no kernel headers for {release} under /lib/modules/{release}/build",
            "install the linux-headers package of that kernel in the image",
        )


def _extract_dir(container: Any, path: str, dest: Path) -> None:
    """Regular files of one directory of the container (its tar stream) into dest."""
    from docker.errors import NotFound

    try:
        chunks, _stat = container.get_archive(path)
    except NotFound:
        return
    with tempfile.TemporaryFile() as buf:
        for chunk in chunks:
            buf.write(chunk)
        buf.seek(0)
        with tarfile.open(fileobj=buf, mode="r|") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts[1:]  # drop the directory's own name
                if not member.isfile() or not parts or ".." in parts:
                    continue
                out = dest.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is not None:
                    with open(out, "wb") as fh:
                        shutil.copyfileobj(src, fh)
