"""The Docker seam: a daemon client and a Runner that builds inside a fresh container.

Talks to any Docker-API daemon through the Docker SDK (DOCKER_HOST, podman's socket).
``docker`` is imported lazily so that commands which never touch containers stay fast.

Every container kmod-py starts carries the labels ``io.kmod-py.run`` (the pid of the kmod-py
process), ``io.kmod-py.started`` (that process's start time) and ``io.kmod-py.host``, so the
containers of a killed kmod-py are recognised and removed by the next run (and by
`kmod-py images --prune`), while those of a running one are left alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kbuild_py.errors import DockerUnavailable, InfraError
from kbuild_py.seams import process
from kbuild_py.seams.process import LineSink, Result

RUN_LABEL = "io.kmod-py.run"
STARTED_LABEL = "io.kmod-py.started"
HOST_LABEL = "io.kmod-py.host"
API_TIMEOUT = 120  # seconds for one API call (a build streams, so this is per chunk)

_client: Any = None
_client_lock = threading.Lock()
# Containers currently running a build, so an interrupt can remove them from any thread.
_live: dict[str, Any] = {}
_live_lock = threading.Lock()


def docker_client() -> Any:
    """A connected docker.DockerClient (cached), or DockerUnavailable with the fix."""
    global _client
    with _client_lock:
        if _client is None:
            _client = _connect()
        return _client


def _connect() -> Any:
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as e:  # pragma: no cover - docker is a dependency
        raise DockerUnavailable(
            "the Docker SDK for Python is not installed", "pip install docker"
        ) from e
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
        client.ping()
    except DockerException as e:
        raise _unavailable(where, e) from e
    except PermissionError as e:
        raise _unavailable(where, e) from e
    return client


def _unavailable(where: str, err: BaseException) -> DockerUnavailable:
    text = str(err)
    if "Permission denied" in text or isinstance(err, PermissionError):
        return DockerUnavailable(
            f"permission denied on the Docker socket {where}",
            "add yourself to the docker group (sudo usermod -aG docker $USER, then log in "
            "again), or point DOCKER_HOST at a daemon you may use (e.g. rootless podman's socket)",
        )
    if "FileNotFoundError" in text or "No such file" in text or "Connection refused" in text:
        return DockerUnavailable(
            f"the Docker daemon is not running (nothing answers at {where})",
            "start it (sudo systemctl start docker, or dockerd &), install it with "
            "apt-get install docker.io, or set DOCKER_HOST to a running daemon",
        )
    return DockerUnavailable(
        f"cannot reach the Docker daemon at {where}: {text}",
        "check that dockerd (or podman's API socket) is running and DOCKER_HOST is right",
    )


def caller_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


def _start_time(pid: int) -> str:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22); '' if gone."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        return ""
    return stat.rsplit(b")", 1)[-1].split()[19].decode()


def owner_labels() -> dict[str, str]:
    """Labels naming this process as a container's owner."""
    import socket

    pid = os.getpid()
    return {RUN_LABEL: str(pid), STARTED_LABEL: _start_time(pid), HOST_LABEL: socket.gethostname()}


def is_orphan(labels: dict[str, str]) -> bool:
    """A container whose kmod-py process is gone (on this host; a reused pid does not count)."""
    import socket

    owner = labels.get(RUN_LABEL, "")
    if labels.get(HOST_LABEL, socket.gethostname()) != socket.gethostname():
        return False  # another machine's daemon client: its processes are not ours to judge
    if not owner.isdigit():
        return True
    started = _start_time(int(owner))
    if not started:
        return True
    want = labels.get(STARTED_LABEL)
    return bool(want) and want != started


_orphans_swept = False


def remove_orphans(client: Any) -> list[str]:
    """Remove the containers left by killed kmod-py processes; their short ids."""
    from docker.errors import APIError, NotFound

    removed = []
    for c in leftover_containers(client):
        if is_orphan(c.labels or {}):
            try:
                c.remove(force=True)
                removed.append(c.short_id)
            except (NotFound, APIError):
                pass  # removed meanwhile by another kmod-py
    return removed


class DockerRunner:
    """Runs each argv in a fresh container of ``image`` (the Runner protocol).

    The container runs as the caller's uid:gid, with cwd (the per-kernel output
    directory) bind-mounted at the same path and as working directory, no network,
    never privileged. Output lines stream to on_line; the container is removed in
    every case (success, failure, timeout, KeyboardInterrupt, process.cancel_all()).
    """

    def __init__(self, image: str, client: Any = None, network: bool = False) -> None:
        self.image = image
        self._client = client
        self.network = network

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_line: LineSink | None = None,
    ) -> Result:
        if process.cancelled():
            return Result(130, False, 0.0)
        process.signals_to_main_thread()
        _sweep_once(self.client)
        # cwd (the output directory) is the only mount; without one, nothing is mounted.
        workdir = str(Path(cwd).resolve()) if cwd is not None else None
        start = time.monotonic()
        try:
            container = self._start(list(argv), workdir, env)
        except _CONNECTION_ERRORS as err:
            raise _daemon_lost(self.image, err) from None
        timed_out = threading.Event()
        timer, token = None, None
        try:
            token = process.on_cancel(lambda: _forget(container))
            if timeout:
                timer = threading.Timer(timeout, _kill_quietly, (container, timed_out))
                timer.daemon = True
                timer.start()
            rc = _follow(container, on_line)
        except _CONNECTION_ERRORS as err:
            raise _daemon_lost(self.image, err) from None
        finally:
            if timer:
                timer.cancel()
            if token is not None:
                process.forget(token)
            try:
                _forget(container)
            except _CONNECTION_ERRORS:
                pass  # the daemon is gone: the next run removes the container (is_orphan)
        if timed_out.is_set() and rc == 0:
            rc = 124
        return Result(rc, timed_out.is_set(), time.monotonic() - start)

    def _start(self, argv: list[str], workdir: str | None, env: Mapping[str, str] | None) -> Any:
        from docker.errors import APIError, ImageNotFound

        environment = {"HOME": "/tmp", "LC_ALL": "C.UTF-8"}
        environment.update(env or {})
        try:
            container = self.client.containers.create(
                self.image,
                entrypoint=argv[:1],
                command=argv[1:],
                user=caller_user(),
                working_dir=workdir or "/tmp",
                environment=environment,
                volumes={workdir: {"bind": workdir, "mode": "rw"}} if workdir else {},
                labels={**owner_labels(), "io.kmod-py.image": self.image},
                network_disabled=not self.network,
                privileged=False,
                security_opt=["no-new-privileges"],
            )
        except ImageNotFound as e:
            raise InfraError(
                f"Docker image {self.image} not found",
                "check the name (`docker images`), or build kmod-py's images with "
                "`kmod-py images --build debian:SUITE`",
            ) from e
        except APIError as e:
            raise InfraError(f"cannot create a container of {self.image}: {e.explanation}") from e
        with _live_lock:
            _live[container.id] = container
        try:
            container.start()
        except APIError as e:
            _forget(container)
            raise InfraError(
                f"cannot start {argv[0]!r} in a container of {self.image}: {e.explanation}",
                "the image needs a shell and make (`kmod-py images` builds suitable ones)",
            ) from e
        except BaseException:
            _forget(container)
            raise
        return container


def _sweep_once(client: Any) -> None:
    """Once per process, before the first container: remove those of killed kmod-py runs."""
    global _orphans_swept
    if _orphans_swept:
        return
    _orphans_swept = True
    try:
        remove_orphans(client)
    except Exception:  # noqa: BLE001 - housekeeping never stops a build
        pass


try:  # requests comes with the docker SDK; the daemon's death surfaces as its errors
    from requests.exceptions import ConnectionError as _ReqConnectionError
    from requests.exceptions import ReadTimeout as _ReqReadTimeout

    _CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
        _ReqConnectionError, _ReqReadTimeout, ConnectionError,
    )
except ImportError:  # pragma: no cover
    _CONNECTION_ERRORS = (ConnectionError,)


def _daemon_lost(image: str, err: BaseException) -> InfraError:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return InfraError(
        f"the Docker daemon at {where} stopped answering during the build in {image} "
        f"({type(err).__name__})",
        "restart dockerd and build again; the next kmod-py run removes the container it left",
    )


def _follow(container: Any, on_line: LineSink | None) -> int:
    """Stream the container's output, then its exit code (130 if cancel_all() removed it)."""
    from docker.errors import APIError, NotFound

    try:
        _stream_lines(container, on_line)
        rc = int(container.wait().get("StatusCode", 1))
    except (NotFound, APIError):
        if not _aborted(container):
            raise
        return 130
    return 130 if _aborted(container) else rc


def _aborted(container: Any) -> bool:
    """process.cancel_all() took the container out of the live set before we did."""
    with _live_lock:
        return container.id not in _live


def _stream_lines(container: Any, on_line: LineSink | None) -> None:
    buf = b""
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        if on_line:
            for raw in lines:
                on_line(raw.decode("utf-8", "replace").rstrip("\r"))
    if buf and on_line:
        on_line(buf.decode("utf-8", "replace"))


def _kill_quietly(container: Any, flag: threading.Event | None = None) -> None:
    from docker.errors import APIError

    if flag is not None:
        flag.set()
    try:
        container.kill()
    except APIError:
        pass  # already stopped or gone


def _forget(container: Any) -> None:
    """Remove a container (force) and drop it from the live set; NotFound is fine."""
    from docker.errors import APIError, NotFound

    with _live_lock:
        _live.pop(container.id, None)
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except _CONNECTION_ERRORS:
        pass  # the daemon is gone: the next run removes the container (is_orphan)
    except APIError as e:
        if e.status_code != 409:  # 409: removal already in progress
            raise


def leftover_containers(client: Any = None) -> list[Any]:
    """Containers (any state) carrying kmod-py's label, e.g. left by a killed process."""
    client = client or docker_client()
    return client.containers.list(all=True, filters={"label": RUN_LABEL})


def image_exists(client: Any, name: str) -> Any | None:
    """The image called name, or None."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name)
    except ImageNotFound:
        return None
