"""kmod-py ci save / prepare: kernel images kept across CI jobs with docker save / docker load,
against the real Docker daemon (tiny throw-away images named like kernel images)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = pytest.mark.docker


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from kbuild_py.errors import DockerUnavailable

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path / "cache"))
    try:
        from kbuild_py.seams.docker import docker_client

        c = docker_client()
    except DockerUnavailable:
        require(False, "a Docker daemon")
    made: list[str] = []
    c.made = made  # type: ignore[attr-defined]
    yield c
    for name in made:
        try:
            c.images.remove(name, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def tiny_image(client, release: str, content: bytes = b"x") -> str:  # type: ignore[no-untyped-def]
    """A one-file image tagged kmod-py/kernel:<release> with this kmod-py's recipe label."""
    from kbuild_py.images import kernel, model

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    name = model.kernel_image(release)
    repo, tag = name.split(":")
    client.api.import_image_from_data(
        buf.getvalue(), repository=repo, tag=tag,
        changes=[f"LABEL {model.RECIPE_LABEL}={kernel.recipe_hash()}"])
    client.made.append(name)
    return name


def test_save_then_load_in_a_fresh_daemon_state(client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.ci import images as ci_images

    release = f"0.0.{os.getpid()}-citest"
    name = tiny_image(client, release)
    said: list[str] = []
    ci_images.save(client, "debian:citest", release, said.append)
    d = ci_images.images_dir()
    tar, meta = d / f"{release}.tar", d / f"{release}.json"
    assert tar.is_file() and json.loads(meta.read_text())["release"] == release
    assert said[-1].startswith(f"saved {name} to {tar}")
    mtime = tar.stat().st_mtime_ns
    ci_images.save(client, "debian:citest", release, said.append)
    assert "is current" in said[-1] and tar.stat().st_mtime_ns == mtime

    client.images.remove(name, force=True)  # the next job's daemon has nothing
    done = ci_images.load(client, "debian:citest", release)
    assert "loaded" in done.message and client.images.get(name)
    assert "is present" in ci_images.load(client, "debian:citest", release).message
    outputs = done.outputs("kmod-py==0.1.0")
    assert outputs["release"] == release
    assert outputs["cache-key"].startswith(f"kmod-py-debian-citest-{release}-")


def test_a_new_release_of_the_spec_replaces_the_saved_one(client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.ci import images as ci_images

    old, new = f"0.0.{os.getpid()}-citest", f"0.1.{os.getpid()}-citest"
    tiny_image(client, old)
    tiny_image(client, new, b"y")
    said: list[str] = []
    ci_images.save(client, "debian:citest", old, said.append)
    ci_images.save(client, "debian:citest", new, said.append)
    assert not (ci_images.images_dir() / f"{old}.tar").exists()
    assert (ci_images.images_dir() / f"{new}.tar").is_file()
    assert any(f"removed the saved image of {old}" in s for s in said)


def test_no_saved_image_means_kmod_py_builds_it(client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.ci import images as ci_images

    done = ci_images.load(client, "debian:citest", "0.0.0-never-built")
    assert "no saved image" in done.message


def test_a_corrupt_saved_image_costs_only_a_rebuild(client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.ci import images as ci_images

    d = ci_images.images_dir()
    d.mkdir(parents=True)
    (d / "0.0.0-corrupt.tar").write_bytes(b"not a tar")
    done = ci_images.load(client, "debian:citest", "0.0.0-corrupt")
    assert "could not be loaded" in done.message and not (d / "0.0.0-corrupt.tar").exists()
