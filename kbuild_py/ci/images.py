"""Kernel-headers images across CI jobs: `docker save` after a job, `docker load` before the
next, through the Docker seam (docker_backend's client). The tarballs live in kmod-py's cache
directory (which the CI system caches per kernel), one per release:

    $KMOD_PY_CACHE/ci-images/<tag>.tar    the image, as `docker save kmod-py/kernel:<tag>`
    $KMOD_PY_CACHE/ci-images/<tag>.json   {"spec", "release", "id"}: what the tar holds

A tar is only rewritten when the image changed, and a spec's tars for other releases (Debian
moved debian:trixie on) are removed, so the cache holds one image per kernel spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbuild_py.ci.model import slug
from kbuild_py.errors import InfraError
from kbuild_py.images import kernel as kernel_images
from kbuild_py.images import model as image_names
from kbuild_py.paths import cache_dir
from kbuild_py.seams.docker import image_exists

SAVE_TIMEOUT = 900  # seconds for one docker save or load of a ~400 MB image


def images_dir() -> Path:
    return cache_dir() / "ci-images"


@dataclass(frozen=True)
class Prepared:
    spec: str
    release: str
    message: str  # what happened to the image, for the job log

    def outputs(self, install: str) -> dict[str, str]:
        """GitHub step outputs: the release and the key the job's cache is saved under."""
        return {"release": self.release, "cache-key": cache_key(self.spec, self.release, install)}


def cache_key(spec: str, release: str, install: str) -> str:
    """kmod-py-<spec>-<release>-<install hash>: a new key when Debian moves the spec on or
    KMOD_PY_INSTALL (or the wheel it names) changes; the restore step matches the prefix."""
    h = hashlib.sha256(install.encode())
    if install and os.path.isfile(install):
        h.update(Path(install).read_bytes())
    return f"kmod-py-{slug(spec)}-{slug(release)}-{h.hexdigest()[:10]}"


def _paths(release: str) -> tuple[Path, Path]:
    d, tag = images_dir(), image_names.tag_for(release)
    return d / f"{tag}.tar", d / f"{tag}.json"


def _current(img: Any) -> bool:
    """The image was made from this kmod-py's Dockerfile (else kmod-py rebuilds it anyway)."""
    return (img.labels or {}).get(image_names.RECIPE_LABEL) == kernel_images.recipe_hash()


def load(client: Any, spec: str, release: str) -> Prepared:
    """Make kmod-py/kernel:<release> available: present already, or loaded from the cache."""
    name = image_names.kernel_image(release)
    img = image_exists(client, name)
    if img is not None and _current(img):
        return Prepared(spec, release, f"{spec} is {release}; image {name} is present")
    tar, _ = _paths(release)
    if not tar.is_file():
        return Prepared(spec, release, f"{spec} is {release}; no saved image in the cache: "
                        f"kmod-py builds {name} (and `kmod-py ci save` keeps it)")
    start = time.monotonic()
    try:
        with open(tar, "rb") as f:
            client.images.load(f)
    except Exception as e:  # noqa: BLE001 - a bad tar only costs a rebuild
        tar.unlink(missing_ok=True)
        return Prepared(spec, release, f"{spec} is {release}; the saved image could not be "
                        f"loaded ({e}), kmod-py builds it")
    took = time.monotonic() - start
    size = tar.stat().st_size / 2**20
    return Prepared(spec, release, f"{spec} is {release}; loaded {name} from the cache "
                    f"({size:.0f} MiB) in {took:.1f} s")


def save(client: Any, spec: str, release: str, say: Callable[[str], None]) -> None:
    """docker save kmod-py/kernel:<release> into the cache unless the saved one is current."""
    name = image_names.kernel_image(release)
    tar, meta = _paths(release)
    _prune(spec, release, say)
    img = image_exists(client, name)
    if img is None:
        say(f"no image {name} to save (the build did not get that far)")
        return
    try:
        saved = json.loads(meta.read_text())
    except (OSError, ValueError):
        saved = {}
    if tar.is_file() and saved.get("id") == img.id:
        say(f"saved image of {name} is current ({tar})")
        return
    tar.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_name(tar.name + f".part{os.getpid()}")
    start = time.monotonic()
    try:
        with open(tmp, "wb") as f:
            for chunk in img.save(named=name):
                f.write(chunk)
                if time.monotonic() - start > SAVE_TIMEOUT:
                    raise InfraError(f"docker save {name} took longer than {SAVE_TIMEOUT} s")
        os.replace(tmp, tar)
    finally:
        tmp.unlink(missing_ok=True)
    meta.write_text(json.dumps({"spec": spec, "release": release, "id": img.id}) + "\n")
    say(f"saved {name} to {tar} ({tar.stat().st_size / 2**20:.0f} MiB) "
        f"in {time.monotonic() - start:.1f} s")


def _prune(spec: str, release: str, say: Callable[[str], None]) -> None:
    """Remove this spec's saved images of other releases (Debian moved the spec on)."""
    for meta in sorted(images_dir().glob("*.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("spec") == spec and data.get("release") != release:
            meta.with_name(meta.name[: -len(".json")] + ".tar").unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            say(f"removed the saved image of {data.get('release')} ({spec} is now {release})")
