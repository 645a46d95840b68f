"""Base images kmod-py/base:<suite>: pulled (debian:<suite>) or debootstrapped and imported.

Where a registry answers, `debian:<suite>` is pulled and tagged. Where none does
(air-gapped build farms, CI machines), `debootstrap --variant=minbase <suite>` from the
Debian mirror builds a root filesystem that is `docker import`ed. The progress callback
is told which path was taken.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbuild_py.debian import archive as debian
from kbuild_py.errors import InfraError
from kbuild_py.images.model import (
    BASE_REPO,
    DEBOOTSTRAP_TIMEOUT,
    KIND_LABEL,
    SUITE_LABEL,
    Progress,
    quiet,
)
from kbuild_py.paths import cache_dir, ensure_dir
from kbuild_py.progress import task as progress_task
from kbuild_py.seams.docker import image_exists
from kbuild_py.seams.process import HostRunner
from kbuild_py.trust.gpgv import DEBIAN_KEYRING


@dataclass(frozen=True)
class BaseImage:
    name: str
    how: str  # "reused", "pulled debian:<suite>", "debootstrap <suite> from <mirror>"


def ensure_base(
    client: Any, suite: str, mirror: str | None = None, progress: Progress = quiet
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
    debootstrap_import(client, suite, url, name, progress)
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


# debootstrap's per-package lines: logged, not shown live
_NOISE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|Checking) ")


def debootstrap_import(client: Any, suite: str, url: str, name: str, progress: Progress) -> None:
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
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=ensure_dir(cache_dir())))
    root, tar = work / "root", work / "rootfs.tar"
    runner = HostRunner()
    try:
        # --keyring: refuse an unsigned or forged Release instead of warning and going on.
        argv = ["debootstrap", "--variant=minbase", "--arch=amd64",
                f"--keyring={DEBIAN_KEYRING}", suite, str(root), url]
        log_path = ensure_dir(cache_dir() / "logs") / f"base-{suite}.log"
        progress(f"base image: debootstrap {suite} (log: {log_path})")
        with open(log_path, "w") as log, progress_task(f"debootstrap {suite}") as shown:

            def seen(line: str) -> None:
                log.write(line + "\n")
                if line.startswith("I: "):
                    shown.advance()
                    shown.update(description=f"debootstrap {suite}: {line[3:]}")
                if not _NOISE.match(line):
                    progress("  " + line)

            res = runner.run(argv, timeout=DEBOOTSTRAP_TIMEOUT, on_line=seen)
        if res.returncode != 0:
            raise InfraError(
                f"debootstrap of {suite} from {url} failed (exit {res.returncode})",
                f"full log: {log_path}; check the mirror (--mirror / KMOD_PY_DEBIAN_MIRROR)",
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
        repository, _, tag = name.rpartition(":")
        status = client.api.import_image_from_file(
            str(tar), repository=repository, tag=tag,
            changes=[f"LABEL {KIND_LABEL}=base {SUITE_LABEL}={suite}", 'CMD ["/bin/bash"]'],
        )
        if image_exists(client, name) is None:
            raise InfraError(f"docker import of the {suite} root filesystem failed: {status}",
                             "check the daemon's free disk space (docker system df)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
