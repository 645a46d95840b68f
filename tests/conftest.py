"""Shared fixtures.

Heavy artefacts (Debian indices and packages, kernel images, Docker images) are
cached per machine under KMOD_PY_CACHE (default /var/cache/kmod-py-tests as root),
so a second run is fast and a fresh machine builds everything once.
Under CI (CI=true) a missing component is a failure, never a skip.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    if "KMOD_PY_CACHE" not in os.environ:
        base = Path("/var/cache") if os.geteuid() == 0 else Path.home() / ".cache"
        os.environ["KMOD_PY_CACHE"] = str(base / "kmod-py-tests")
    Path(os.environ["KMOD_PY_CACHE"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NO_COLOR", "1")


# --- the unit tier is offline, headerless and daemonless, provably --------------------------

TIERS = frozenset({"headers", "docker", "qemu", "network"})
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# fixtures that only a test of that tier may use
TIER_FIXTURES = {"host_release": "headers", "docker_client": "docker"}


def _loopback(host: object) -> bool:
    if not isinstance(host, str) or host in ("", "localhost"):
        return host in ("", "localhost")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _unit_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test without a tier marker (headers, docker, qemu, network) is a unit test: it fails
    loudly if it opens a socket to anything but loopback, talks to the Docker daemon, or uses
    a fixture of another tier (host headers, a Docker client). Mark the test instead."""
    marks = {m.name for m in request.node.iter_markers()}
    if marks & TIERS:
        return
    name = request.node.nodeid
    for fixture, tier in TIER_FIXTURES.items():
        if fixture in request.fixturenames:
            pytest.fail(f"{name} uses {fixture} but is not marked {tier}", pytrace=False)

    def refuse(what: str) -> None:
        pytest.fail(f"unit test {name} reached {what}: mark it network/docker or use a fake",
                    pytrace=False)

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family == socket.AF_UNIX:
            path = address.decode() if isinstance(address, bytes) else str(address)
            if path in DOCKER_SOCKETS:
                refuse(f"the Docker daemon ({path})")
        elif sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            refuse(f"the network ({address[0]}:{address[1]})")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host is not None and not _loopback(host):
            refuse(f"a DNS lookup of {host}")
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def require(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; fail under CI."""
    if condition:
        return
    if CI:
        pytest.fail(f"{what} is required under CI (make test installs it)")
    pytest.skip(f"{what} not available")


# --- kmod-py as installed ---------------------------------------------------------------


@functools.cache
def installed_kmod_py() -> Path:
    """The `kmod-py` console script of a non-editable install of this checkout's wheel.

    `make test` installs it (tests/wheelenv.py) and passes it as KMOD_PY_BIN; alone, pytest
    builds and installs it into .venv-wheel once per session. Integration tests run this, not
    the editable checkout, so they test what users install.
    """
    given = os.environ.get("KMOD_PY_BIN")
    if given:
        return Path(given)
    import wheelenv

    return wheelenv.install(ROOT / ".venv-wheel")


@dataclass(frozen=True)
class Ran:
    """What the installed kmod-py did (the fields integration tests read off CliRunner)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_kmod_py(args: Sequence[object], *, cwd: Path | None = None,
                env: Mapping[str, str] | None = None, timeout: float = 1800,
                input: str | None = None) -> Ran:
    """Run the installed kmod-py with args (os.environ plus env; no PYTHONPATH)."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    proc = subprocess.run([str(installed_kmod_py()), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, errors="replace", timeout=timeout,
                          input=input)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def kmod_py_bin() -> Path:
    return installed_kmod_py()


@pytest.fixture(scope="session")
def kmod_py() -> Callable[..., Ran]:
    """run_kmod_py: kmod_py(["build", path, ...], cwd=..., env=..., timeout=...)."""
    return run_kmod_py


@pytest.fixture(scope="session")
def host_release() -> str:
    """The release of a Debian kernel-headers package installed on the host."""
    from kbuild_py.kernels.host import host_releases

    releases = [r for r in host_releases() if r.endswith("-amd64")]
    require(bool(releases), "Debian kernel headers on the host (linux-headers-amd64)")
    return releases[-1]


@pytest.fixture(scope="session")
def host_kdir(host_release: str) -> Path:
    return Path("/lib/modules") / host_release / "build"


@pytest.fixture
def scaffold(tmp_path: Path):
    """Scaffold a module with `kmod-py new` semantics and return its directory."""
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    def make(name: str = "hello_module", **kw: str) -> Path:
        return scaffold_module(ModuleSpec(name=name, **kw), tmp_path).path

    return make


@pytest.fixture(scope="session")
def built_hello(tmp_path_factory: pytest.TempPathFactory, host_kdir: Path) -> Path:
    """hello_module scaffolded and built on the host against the installed headers; its .ko."""
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    require(shutil.which("make") is not None, "make")
    parent = tmp_path_factory.mktemp("built")
    project = scaffold_module(ModuleSpec(name="hello_module"), parent).path
    import subprocess

    subprocess.run(
        ["make", "-C", str(host_kdir), f"M={project}", "modules"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return project / "hello_module.ko"


# --- Docker tier (kmod-py's container backend) -------------------------------------------

DEBIAN_SPECS = ("debian:bookworm", "debian:trixie", "debian:trixie-backports")


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A connected Docker SDK client (required under CI; make test starts dockerd)."""
    from kbuild_py.errors import DockerUnavailable
    from kbuild_py.seams.docker import docker_client as connect

    try:
        return connect()
    except DockerUnavailable as err:
        require(False, f"a Docker daemon ({err.message})")


@pytest.fixture(scope="session")
def image_build_lines() -> list[str]:
    """Progress lines said while resolving the Debian kernels (image builds on a fresh machine)."""
    return []


@pytest.fixture(scope="session")
def debian_targets(docker_client, image_build_lines: list[str]):  # type: ignore[no-untyped-def]
    """debian:bookworm / trixie / trixie-backports resolved to container Targets.

    On a fresh machine this builds the base images and the three kernel-headers images
    (a few minutes); afterwards they are reused from the daemon.
    """
    from kbuild_py.kernels.resolve import resolve_spec

    return {s: resolve_spec(s, progress=image_build_lines.append) for s in DEBIAN_SPECS}


@pytest.fixture(scope="session")
def mods(tmp_path_factory: pytest.TempPathFactory, host_kdir: Path) -> dict[str, Path]:
    """The check tier's real modules (good ones and built negatives), built once per session."""
    import checkdata

    return checkdata.build_all(tmp_path_factory.getbasetemp() / "checkdata", host_kdir)


@pytest.fixture(scope="session")
def copies(tmp_path_factory: pytest.TempPathFactory, built_hello: Path) -> dict[str, Path]:
    """Stripped, compressed and signed copies of built_hello."""
    import checkdata

    return checkdata.derived(tmp_path_factory.getbasetemp() / "derived", built_hello)
