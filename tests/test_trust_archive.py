"""A forged and a tampered Debian mirror on 127.0.0.1: kmod-py refuses both, with one line.

The mirrors are http.server in a thread. The forged one signs its InRelease with a
throwaway key; the tampered ones serve Debian's real signed InRelease (from the real
mirror, cached per machine) with a modified Packages.xz or .deb. The real mirror still
works, and a guest that boots another kernel than the target fails the test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustdata as td
from conftest import require, run_kmod_py
from typer.testing import CliRunner

from kbuild_py.cli import app
from kbuild_py.errors import VerificationError
from kbuild_py.seams.http import UrllibHttp

runner = CliRunner()
PACKAGES = "main/binary-amd64/Packages.xz"


@dataclass(frozen=True)
class Zeros:
    size: int  # a body of this many zero bytes, streamed


class Mirror:
    """Serves `routes` (URL path -> bytes or Zeros) on 127.0.0.1; anything else is a 404."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | Zeros] = {}
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                mirror.requests.append(self.path)
                body = mirror.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                size = body.size if isinstance(body, Zeros) else len(body)
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if isinstance(body, bytes):
                    self.wfile.write(body)
                    return
                chunk = bytes(1 << 20)
                for start in range(0, size, len(chunk)):
                    self.wfile.write(chunk[: min(len(chunk), size - start)])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def dists(self, suite: str = "bookworm") -> str:
        return f"/debian/dists/{suite}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    yield m
    m.close()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty kmod-py cache: nothing downloaded before can hide a check."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KMOD_PY_CACHE", str(cache))
    monkeypatch.delenv("KMOD_PY_DEBIAN_MIRROR", raising=False)
    return cache


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[td.ThrowawayKey]:
    require(shutil.which("gpg") is not None and shutil.which("gpgv") is not None,
            "gpg and gpgv (gnupg, gpgv)")
    k = td.ThrowawayKey(tmp_path_factory.mktemp("gnupg"))
    yield k
    k.close()


@dataclass(frozen=True)
class RealSuite:
    inrelease: bytes
    packages_xz: bytes
    current: str  # the release linux-headers-amd64 points at
    image_filename: str  # pool path of linux-image-<current>
    image_size: int


@pytest.fixture(scope="module")
def real_bookworm() -> RealSuite:
    """Debian's signed bookworm InRelease and Packages.xz (downloaded once per machine)."""
    from kbuild_py.debian import archive as debian
    from kbuild_py.errors import MirrorError

    try:
        archive = debian.Archive("bookworm")
        current = archive.current_release()
        image = archive.get(f"linux-image-{current}")
        index = archive.signed.index(PACKAGES)
    except MirrorError as err:
        require(False, f"the Debian mirror ({err.message})")
        raise
    return RealSuite((archive.signed.cache / "InRelease").read_bytes(), index.read_bytes(),
                     current, image.filename, image.size)


def serve_real(m: Mirror, real: RealSuite, *, packages: bytes | None = None) -> None:
    m.routes[f"{m.dists()}/InRelease"] = real.inrelease
    digest = hashlib.sha256(real.packages_xz).hexdigest()
    body = real.packages_xz if packages is None else packages
    m.routes[f"{m.dists()}/main/binary-amd64/by-hash/SHA256/{digest}"] = body
    m.routes[f"{m.dists()}/{PACKAGES}"] = body


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def forge(m: Mirror, key: td.ThrowawayKey) -> None:
    """The issue's forged mirror: debian:bookworm is 6.6.6-evil-amd64, signed by a stranger."""
    deb = b"!<arch>\n not really a deb"
    evil = "6.6.6-evil-amd64"
    index = td.packages_xz(
        td.stanza("linux-headers-amd64", "6.6.6-1", "pool/main/l/h.deb", b"h",
                  depends=f"linux-headers-{evil} (= 6.6.6-1)"),
        td.stanza(f"linux-headers-{evil}", "6.6.6-1", "pool/main/l/he.deb", b"he"),
        td.stanza(f"linux-image-{evil}", "6.6.6-1", "pool/main/l/evil.deb", deb),
    )
    m.routes[f"{m.dists()}/InRelease"] = key.clearsign(td.release_text({PACKAGES: index}))
    m.routes[f"{m.dists()}/main/binary-amd64/by-hash/SHA256/"
             f"{hashlib.sha256(index).hexdigest()}"] = index
    m.routes["/debian/pool/main/l/evil.deb"] = deb


# --- forged: signed by a key outside Debian's keyring ----------------------------------

@pytest.mark.parametrize("how", ["--mirror", "KMOD_PY_DEBIAN_MIRROR"])
def test_forged_mirror_is_refused_with_one_line(  # type: ignore[no-untyped-def]
        how, mirror, key, fresh_cache, tmp_path, monkeypatch) -> None:
    forge(mirror, key)
    ko = tmp_path / "hello.ko"
    ko.write_bytes(b"\x7fELF")  # never read: the kernel is resolved first
    args = ["test", "--ko", str(ko), "--kernel", "debian:bookworm"]
    if how == "--mirror":
        args += ["--mirror", mirror.url]
    else:
        monkeypatch.setenv("KMOD_PY_DEBIAN_MIRROR", mirror.url)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert error_lines(res.output) == [
        f"error: {mirror.url}/dists/bookworm/InRelease: no good signature by a key in "
        "/usr/share/keyrings/debian-archive-keyring.gpg"]
    assert "Traceback" not in res.output
    # nothing the forged index lists was fetched or kept
    assert "/debian/pool/main/l/evil.deb" not in mirror.requests
    assert not list(fresh_cache.rglob("*.json")) and not list(fresh_cache.rglob("InRelease"))


def test_forged_mirror_is_refused_by_kernels(mirror, key, fresh_cache) -> None:  # type: ignore[no-untyped-def]
    forge(mirror, key)
    res = runner.invoke(app, ["kernels", "--suite", "bookworm", "--mirror", mirror.url])
    assert res.exit_code == 2, res.output
    assert len(error_lines(res.output)) == 1
    assert "InRelease: no good signature by a key in" in res.output
    assert "6.6.6-evil" not in res.output


def test_forged_mirror_is_not_taken_for_an_unreachable_one(  # type: ignore[no-untyped-def]
        mirror, key, fresh_cache, scaffold) -> None:
    """build falls back to the last image of a suite when the mirror is down; a mirror that
    answers with forged data is an error, not a reason to fall back."""
    forge(mirror, key)
    res = runner.invoke(app, ["build", str(scaffold("hello_module")), "--kernel",
                              "debian:bookworm", "--mirror", mirror.url])
    assert res.exit_code == 2, res.output
    assert error_lines(res.output) == [
        f"error: {mirror.url}/dists/bookworm/InRelease: no good signature by a key in "
        "/usr/share/keyrings/debian-archive-keyring.gpg"]


# --- tampered: Debian's real signature, modified files ----------------------------------

@pytest.mark.network
def test_tampered_packages_index_is_refused(mirror, real_bookworm, fresh_cache) -> None:  # type: ignore[no-untyped-def]
    data = real_bookworm.packages_xz
    serve_real(mirror, real_bookworm, packages=data[:-100] + bytes([data[-100] ^ 0xFF])
               + data[-99:])
    res = run_kmod_py(["kernels", "--suite", "bookworm", "--mirror", mirror.url])
    assert res.exit_code == 2, res.output
    [line] = error_lines(res.output)
    assert line.startswith(f"error: {mirror.url}/dists/bookworm/{PACKAGES} did not verify: "
                           "SHA256 ")
    assert line.endswith("the index lists")
    assert not list(fresh_cache.rglob("*Packages.xz*"))


@dataclass(frozen=True)
class RealKernelSuite:
    """Debian's signed InRelease and Packages.xz of every archive suite debian:bookworm reads
    (bookworm, -security, -updates), and the kernel debian:bookworm resolves to over them."""
    indexes: dict[str, tuple[bytes, bytes]]  # archive suite -> (InRelease, Packages.xz)
    current: str
    image_suite: str  # the archive suite linux-image-<current> comes from
    image_filename: str
    image_size: int


@pytest.fixture(scope="module")
def real_kernel_suite() -> RealKernelSuite:
    """(cached per machine)"""
    from kbuild_py.debian import archive as debian
    from kbuild_py.debian.suites import dists
    from kbuild_py.errors import MirrorError

    try:
        suite = debian.KernelSuite("bookworm")
        current = suite.current_release()
        found = suite.find(f"linux-image-{current}")
        assert found is not None
        indexes = {part.suite: ((part.signed.cache / "InRelease").read_bytes(),
                                part.signed.index(PACKAGES).read_bytes())
                   for part in suite.parts}
    except MirrorError as err:
        require(False, f"the Debian mirror ({err.message})")
        raise
    assert set(indexes) == set(dists("bookworm"))
    return RealKernelSuite(indexes, current, found[0].suite, found[1].filename, found[1].size)


def serve_kernel_suite(m: Mirror, real: RealKernelSuite) -> str:
    """Serve every archive suite of debian:bookworm as the mirror does: -security from the
    mirror's security sibling (URL-security). Returns the pool URL path of the kernel image."""
    for dist, (inrelease, packages_xz) in real.indexes.items():
        dists = f"{_top(dist)}/dists/{dist}"
        m.routes[f"{dists}/InRelease"] = inrelease
        digest = hashlib.sha256(packages_xz).hexdigest()
        m.routes[f"{dists}/main/binary-amd64/by-hash/SHA256/{digest}"] = packages_xz
    return f"{_top(real.image_suite)}/{real.image_filename}"


def _top(dist: str) -> str:
    return "/debian-security" if dist.endswith("-security") else "/debian"


@pytest.mark.network
def test_tampered_kernel_package_fails_the_kernels_row(  # type: ignore[no-untyped-def]
        mirror, real_kernel_suite, fresh_cache, tmp_path) -> None:
    """debian:bookworm's kernel (from whichever archive suite it resolves over) tampered."""
    real = real_kernel_suite
    pool = serve_kernel_suite(mirror, real)
    mirror.routes[pool] = Zeros(real.image_size)  # right size, wrong content
    ko = tmp_path / "hello.ko"
    ko.write_bytes(b"\x7fELF")
    res = run_kmod_py(["test", "--ko", ko, "--kernel", "debian:bookworm",
                       "--mirror", mirror.url, "--json"])
    assert res.exit_code == 1, res.output
    [row] = json.loads(res.stdout)
    assert row["result"] == "error" and row["release"] == real.current, res.output
    deb = Path(real.image_filename).name
    assert row["error"].startswith(f"{deb} (from {real.image_suite}) did not verify: SHA256 "), \
        res.output
    assert pool in mirror.requests
    assert not list((fresh_cache / "debs").iterdir())  # neither the .deb nor a partial one
    assert not (fresh_cache / "kernels" / real.current / ".complete").exists()


@pytest.fixture(scope="module")
def real_security() -> RealSuite:
    """Debian's signed bookworm-security InRelease and Packages.xz (cached per machine)."""
    from kbuild_py.debian import archive as debian
    from kbuild_py.errors import MirrorError

    try:
        archive = debian.Archive("bookworm-security")
        current = archive.releases()[-1]
        image = archive.get(f"linux-image-{current}")
        index = archive.signed.index(PACKAGES)
    except MirrorError as err:
        require(False, f"the Debian mirror ({err.message})")
        raise
    return RealSuite((archive.signed.cache / "InRelease").read_bytes(), index.read_bytes(),
                     current, image.filename, image.size)


@pytest.mark.network
def test_security_updates_come_from_the_mirrors_security_sibling(  # type: ignore[no-untyped-def]
        mirror, real_kernel_suite, real_security, fresh_cache, tmp_path) -> None:
    """--mirror URL: bookworm-security is read from URL-security, verified the same way. The
    mirror is a whole one (bookworm and bookworm-updates too): debian:bookworm is read as its
    suites together and a mirror without the release suite itself is not a Debian mirror."""
    serve_kernel_suite(mirror, real_kernel_suite)
    dists = "/debian-security/dists/bookworm-security"
    mirror.routes[f"{dists}/InRelease"] = real_security.inrelease  # the index `current` is from
    sha = hashlib.sha256(real_security.packages_xz).hexdigest()
    mirror.routes[f"{dists}/main/binary-amd64/by-hash/SHA256/{sha}"] = real_security.packages_xz
    pool = "/debian-security/" + real_security.image_filename
    mirror.routes[pool] = Zeros(real_security.image_size)
    ko = tmp_path / "hello.ko"
    ko.write_bytes(b"\x7fELF")
    res = run_kmod_py(["test", "--ko", ko, "--kernel", real_security.current,
                       "--mirror", mirror.url, "--json"])
    assert res.exit_code == 1, res.output
    [row] = json.loads(res.stdout)
    deb = Path(real_security.image_filename).name
    assert row["error"].startswith(f"{deb} (from bookworm-security) did not verify: SHA256 "), \
        res.output
    assert f"{dists}/InRelease" in mirror.requests and pool in mirror.requests


def test_download_larger_than_the_index_says_is_cut_off(mirror, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mirror.routes["/debian/big.deb"] = Zeros(3 << 20)
    with pytest.raises(VerificationError, match=r"big.deb: larger than the 1000 bytes"):
        UrllibHttp().download(mirror.url + "/big.deb", tmp_path / "big.deb", timeout=60,
                              max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


# --- the real mirror --------------------------------------------------------------------

@pytest.mark.network
def test_real_mirror_still_verifies() -> None:
    """Through the machine's test cache: what was downloaded before is verified again."""
    from kbuild_py.debian import archive as debian
    from kbuild_py.debian.linuximage import fetch_deb

    res = run_kmod_py(["kernels", "--suite", "bookworm"])
    assert res.exit_code == 0, res.output
    current = debian.Archive("bookworm").current_release()
    assert current in res.output
    deb = fetch_deb("busybox-static", "bookworm")  # a small package, verified by SHA256
    pkg = debian.Archive("bookworm").get("busybox-static")
    assert deb.name == Path(pkg.filename).name
    assert hashlib.sha256(deb.read_bytes()).hexdigest() == pkg.sha256


# --- the guest says which kernel it booted ----------------------------------------------

@pytest.mark.qemu
@pytest.mark.headers
def test_guest_booting_another_release_fails_the_test(  # type: ignore[no-untyped-def]
        built_hello, host_release, tmp_path) -> None:
    """The issue's run: the target was 6.6.6-evil-amd64, the guest really ran another kernel."""
    from kbuild_py.boot import run as tr
    from kbuild_py.debian.linuximage import fetch_kernel
    from kbuild_py.seams import qemu

    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86_64 (qemu-system-x86)")
    image = fetch_kernel(host_release)
    job = tr.KernelTest("debian:bookworm", "6.6.6-evil-amd64", (built_hello,), tmp_path / "o")
    r = tr.run_one(job, tr.TestOptions(accel="tcg"), fetch=lambda *_: image)
    assert r.status == "fail", r
    assert r.verdict is not None and r.verdict.release == host_release
    assert r.verdict.problems[0] == (
        f"the guest booted kernel {host_release}, not the target 6.6.6-evil-amd64: "
        "the kernel image is not the one asked for")
