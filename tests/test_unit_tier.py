"""The unit tier (tests without a tier marker) cannot reach the network or the Docker daemon:
conftest's guard fails such a test loudly instead of letting it pass on a connected machine."""

from __future__ import annotations

import socket

import pytest

from kbuild_py.seams import docker as docker_seam
from kbuild_py.seams.docker import DockerRunner


def test_network_is_refused() -> None:
    with socket.socket() as s, pytest.raises(pytest.fail.Exception,
                                             match=r"reached the network \(192\.0\.2\.1:80\)"):
        s.connect(("192.0.2.1", 80))
    with pytest.raises(pytest.fail.Exception, match="192.0.2.1"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(pytest.fail.Exception, match="a DNS lookup of deb.debian.org"):
        socket.getaddrinfo("deb.debian.org", 80)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        socket.create_connection(server.getsockname(), timeout=5).close()


def test_docker_daemon_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # no client cached by an earlier (docker-tier) test in this session: really connect
    monkeypatch.setattr(docker_seam, "_client", None)
    with pytest.raises(pytest.fail.Exception, match="reached the Docker daemon"):
        DockerRunner("debian:bookworm").client  # noqa: B018 - connecting is the point
