"""Kernel-headers images: the Dockerfile, names, labels, snapshots, image: specs, listing."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_kmod_py

from kbuild_py.errors import UsageError
from kbuild_py.images import base as baseimages
from kbuild_py.images import kernel as images
from kbuild_py.images import tree as imagetree
from kbuild_py.images.model import kernel_image, suite_alias
from kbuild_py.seams.docker import DockerRunner, _unavailable, image_exists

ROOT = Path(__file__).resolve().parent.parent


def test_image_names_are_valid_docker_tags() -> None:
    assert kernel_image("6.12.117+deb13-amd64") == "kmod-py/kernel:6.12.117_deb13-amd64"
    assert kernel_image("6.1.0-50-amd64") == "kmod-py/kernel:6.1.0-50-amd64"
    assert suite_alias("trixie-backports") == "kmod-py/kernel:debian-trixie-backports"


def test_dockerfile_is_parameterised_and_lean() -> None:
    text = (ROOT / "containers/debian/Dockerfile").read_text()
    assert images.dockerfile_text() == text.encode()
    for arg in ("ARG BASE=debian:bookworm", "ARG SUITE=", "ARG HEADERS=", "ARG MIRROR="):
        assert arg in text
    assert "--no-install-recommends" in text and "-t $SUITE" in text
    install = text[text.index("install -y"):text.index("apt-get clean")]
    assert '"$HEADERS" make binutils perl' in install
    for label in ("org.opencontainers.image.version", "io.kmod-py.kernel.release",
                  "io.kmod-py.kernel.compiler", "io.kmod-py.debian.suite"):
        assert label in text
    assert "debian.org" not in text.replace("# ", "")  # mirrors come from the caller


def test_unavailable_messages_name_the_fix() -> None:
    perm = _unavailable("unix:///var/run/docker.sock", PermissionError(13, "Permission denied"))
    assert "permission denied" in perm.message and "docker group" in (perm.hint or "")
    down = _unavailable("unix:///x.sock", OSError("('Connection aborted.', FileNotFoundError(2))"))
    assert "not running" in down.message and "systemctl start docker" in (down.hint or "")


def test_daemon_down_is_one_clear_error_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1",
           "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = subprocess.run([sys.executable, "-m", "kbuild_py", "images"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: the Docker daemon is not running"), proc.stderr
    assert "hint: start it" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.docker
def test_images_carry_release_compiler_suite_labels(docker_client, debian_targets) -> None:  # type: ignore[no-untyped-def]
    for spec, t in debian_targets.items():
        img = docker_client.images.get(t.where)
        labels = img.labels
        assert labels["io.kmod-py.kernel.release"] == t.release
        assert labels["io.kmod-py.kernel.compiler"] == t.tree.cc_version_text != ""
        assert labels["io.kmod-py.debian.suite"] == t.suite
        assert labels["io.kmod-py.debian.headers"] == f"linux-headers-{t.release}"
        assert labels["org.opencontainers.image.version"] == t.release
        assert labels["io.kmod-py.recipe"] == images.recipe_hash()
        alias = docker_client.images.get(suite_alias(spec.split(":", 1)[1]))
        assert alias.id == img.id


@pytest.mark.docker
def test_base_images_exist_and_say_how_they_were_made(  # type: ignore[no-untyped-def]
    docker_client, debian_targets, image_build_lines: list[str]
) -> None:
    for suite in ("bookworm", "trixie"):
        base = baseimages.ensure_base(docker_client, suite)
        assert base == baseimages.BaseImage(f"kmod-py/base:{suite}", "reused")
    built = [ln for ln in image_build_lines if ln.startswith("base image kmod-py/base:")]
    for line in built:  # only on a machine that built them in this session
        assert line.endswith("reused") or "pulled debian:" in line or "debootstrap" in line


@pytest.mark.docker
def test_snapshot_is_cached_and_matches_the_image(docker_client, debian_targets) -> None:  # type: ignore[no-untyped-def]
    t = debian_targets["debian:trixie"]
    again = imagetree.snapshot_tree(docker_client, t.where, t.release)
    assert again.path == t.tree.path and again.vermagic == t.tree.vermagic
    uts = (again.path / "include/generated/utsrelease.h").read_text()
    lines: list[str] = []
    DockerRunner(t.where, docker_client).run(
        ["cat", f"{t.kdir}/include/generated/utsrelease.h"], on_line=lines.append
    )
    assert "\n".join(lines) == uts.rstrip("\n")
    assert (again.path / ".image-id").read_text().strip() == docker_client.images.get(t.where).id


@pytest.mark.docker
def test_images_command_lists_the_built_images(debian_targets) -> None:  # type: ignore[no-untyped-def]
    res = run_kmod_py(["images"])
    assert res.exit_code == 0, res.output
    for spec, t in debian_targets.items():
        row = next(ln for ln in res.output.splitlines() if ln.startswith(t.where + " "))
        assert "debian-" + spec.split(":", 1)[1] in row and t.compiler in row
    listed = {i.release for i in images.list_images()}
    assert {t.release for t in debian_targets.values()} <= listed


@pytest.fixture(scope="module")
def custom_image(docker_client, debian_targets):  # type: ignore[no-untyped-def]
    """A user image with a kernel build tree but none of kmod-py's labels."""
    base = debian_targets["debian:bookworm"].where
    name = f"kmod-py-test/custom-headers:{os.getpid()}"
    dockerfile = (f"FROM {base}\nLABEL io.kmod-py.kind=\"\" io.kmod-py.kernel.release=\"\"\n"
                  'ENTRYPOINT ["/bin/false"]\n')
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True)
    yield name
    docker_client.images.remove(name, force=True)


@pytest.mark.docker
def test_image_spec_finds_the_release_inside(custom_image: str, debian_targets) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.kernels.resolve import resolve_spec

    want = debian_targets["debian:bookworm"]
    t = resolve_spec(f"image:{custom_image}")
    assert (t.release, t.where, t.kdir) == (want.release, custom_image, want.kdir)
    assert t.tree.vermagic == want.tree.vermagic
    assert t.tree.path != want.tree.path  # foreign images get their own snapshot
    lines: list[str] = []
    res = t.runner.run(["make", "--version"], timeout=60, on_line=lines.append)
    assert res.returncode == 0 and lines[0].startswith("GNU Make")  # entrypoint overridden


@pytest.mark.docker
def test_image_spec_errors_name_the_problem(docker_client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.kernels.resolve import resolve_spec

    with pytest.raises(UsageError, match="no Docker image 'kmod-py-test/absent:0' here") as info:
        resolve_spec("image:kmod-py-test/absent:0")
    assert "kmod-py/kernel:debian-bookworm" in (info.value.hint or "")
    base = baseimages.ensure_base(docker_client, "bookworm").name
    with pytest.raises(UsageError, match="has no kernel build tree"):
        resolve_spec(f"image:{base}")



def test_missing_image_hint_ranks_kmod_py_kernel_images_first_on_a_busy_daemon() -> None:
    tags = [f"zzz/other{i}:latest" for i in range(40)] + [f"aaa/x{i}:1" for i in range(40)]
    tags += ["kmod-py/kernel:6.1.0-57-amd64", "kmod-py/base:bookworm",
             "kmod-py/kernel:debian-trixie", "kmod-py/kernel:debian-bookworm"]
    hint = imagetree.local_images_hint(tags, "kmod-py-test/absent:0")
    shown = hint.removeprefix("local images: ").split(" and ")[0].split(", ")
    assert sorted(shown[:2]) == ["kmod-py/kernel:debian-bookworm", "kmod-py/kernel:debian-trixie"]
    assert shown[2] == "kmod-py/kernel:6.1.0-57-amd64"
    assert len(shown) == 12 and " and 72 more (`docker images`)" in hint
    assert imagetree.local_images_hint([], "x:1").startswith("local images: none (")
    few = imagetree.local_images_hint(["a:1", "a:1"], "x:1")
    assert few.startswith("local images: a:1 (") and "more" not in few


@pytest.mark.docker
def test_leftover_containers_of_dead_processes_are_removed(docker_client, debian_targets) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.seams.docker import RUN_LABEL

    image = debian_targets["debian:bookworm"].where
    dead = _dead_pid()
    gone = docker_client.containers.create(image, ["true"], labels={RUN_LABEL: str(dead)})
    mine = docker_client.containers.create(image, ["true"], labels={RUN_LABEL: str(os.getpid())})
    try:
        removed = images.remove_leftover_containers(docker_client)
        assert gone.short_id in removed and mine.short_id not in removed
        left = {c.id for c in docker_client.containers.list(all=True)}
        assert gone.id not in left and mine.id in left
    finally:
        mine.remove(force=True)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.docker
def test_images_build_option_reuses_a_built_image(debian_targets) -> None:  # type: ignore[no-untyped-def]
    t = debian_targets["debian:trixie-backports"]
    res = run_kmod_py(["images", "--build", "debian:trixie-backports"])
    assert res.exit_code == 0, res.output
    assert f"debian:trixie-backports: {t.where} ({t.release}, {t.compiler})" in res.output
    assert f"image {t.where}: reused" in res.output


def test_kernels_without_docker_still_lists_host_trees(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = subprocess.run([sys.executable, "-m", "kbuild_py", "kernels"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "note: container kernels not listed: the Docker daemon is not running" in proc.stderr
    assert "built on demand: debian:SUITE[/FLAVOUR]" in proc.stdout


def test_build_error_names_the_step_apt_errors_and_log(tmp_path: Path) -> None:
    step = "Step 6/12 : RUN set -eu;     base=\"${SUITE%-backports}\"; " + "x" * 300
    err = images._build_error(
        "kmod-py/kernel:9", step,
        f"The command '/bin/sh -c {'y' * 300}' returned a non-zero code: 100",
        ["Reading package lists...", "E: Unable to locate package linux-headers-9-amd64"],
        tmp_path / "image-9.log",
    )
    assert err.message == (
        f"building image kmod-py/kernel:9 failed at {step[:67]}...: returned a non-zero code: 100"
    )
    assert len(step[:67]) == 67 and step[:67].endswith("xxxxx")
    assert err.hint == (f"E: Unable to locate package linux-headers-9-amd64\n"
                        f"full log: {tmp_path}/image-9.log")


@pytest.mark.docker
def test_failing_image_build_reports_apt_error(docker_client, debian_targets) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.errors import InfraError

    lines: list[str] = []
    with pytest.raises(InfraError) as info:
        images.build_kernel_image(docker_client, "bookworm", "6.1.0-999-amd64",
                                  progress=lines.append)
    err = info.value
    # the meaning, not the step's number (which moves whenever the Dockerfile grows): the
    # headers-installing RUN step failed with apt's exit code 100
    assert re.search(r"failed at Step \d+/\d+ : RUN set -eu; +base=", err.message), err.message
    assert "non-zero code: 100" in err.message
    assert "E: Unable to locate package linux-headers-6.1.0-999-amd64" in (err.hint or "")
    assert image_exists(docker_client, kernel_image("6.1.0-999-amd64")) is None


@pytest.mark.docker
def test_debootstrap_base_image_path(docker_client) -> None:  # type: ignore[no-untyped-def]
    """The air-gapped path: debootstrap --variant=minbase from the mirror, docker import."""
    from conftest import require

    from kbuild_py.debian import archive as debian
    from kbuild_py.paths import cache_dir

    require(os.geteuid() == 0, "root (debootstrap)")
    name = f"kmod-py-test/base:bookworm-{os.getpid()}"  # unique: suites may run at once
    lines: list[str] = []
    baseimages.debootstrap_import(docker_client, "bookworm", debian.mirror_url(), name,
                                  lines.append)
    try:
        img = docker_client.images.get(name)
        assert img.labels == {"io.kmod-py.kind": "base", "io.kmod-py.debian.suite": "bookworm"}
        said: list[str] = []
        DockerRunner(name, docker_client).run(
            ["sh", "-c", "cat /etc/debian_version; command -v apt-get"], on_line=said.append
        )
        out = "\n".join(said)
        assert out.startswith("12.") and "/usr/bin/apt-get" in out
        assert any("I: Base system installed successfully." in ln for ln in lines)
        assert not list(cache_dir().glob("debootstrap-*"))  # the work dir is gone
    finally:
        docker_client.images.remove(name, force=True)
