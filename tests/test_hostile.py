"""Hostile input (issue 9): every reproduction of the review, replayed against real files,
symlinks, FIFOs, mounts, processes and (where marked) a real Docker daemon.

Each test names the reproduction it replays (R1 ... R12; R3 and R4, archive authentication and
the cache's pickles, live in their own tests).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
KMOD_PY = ""  # the installed kmod-py (conftest's kmod_py_bin)
FAKE_RELEASE = "6.6.6-hostile"


@pytest.fixture(autouse=True)
def _installed_kmod_py(kmod_py_bin: Path) -> None:
    global KMOD_PY
    KMOD_PY = str(kmod_py_bin)


def kmod_py(*args: str, cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "NO_COLOR": "1", **kw.pop("env", {})}
    return subprocess.run([KMOD_PY, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def fake_kdir(parent: Path, release: str = FAKE_RELEASE, recipe: str = "") -> Path:
    """A directory `make -C` accepts as a kernel build tree: utsrelease.h and a Makefile whose
    `modules` target runs `recipe` (default: nothing) in the output directory M."""
    kdir = parent / f"kdir-{release}"
    (kdir / "include/generated").mkdir(parents=True)
    (kdir / "include/generated/utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    (kdir / "include/config").mkdir(parents=True)
    (kdir / "include/config/auto.conf").write_text("CONFIG_X86_64=y\nCONFIG_MODULES=y\n")
    body = "\n".join(f"\t{line}" for line in (recipe or "@true").splitlines())
    (kdir / "Makefile").write_text(f"modules:\n{body}\n")
    return kdir


def project(parent: Path, name: str = "proj") -> Path:
    p = parent / name
    p.mkdir()
    (p / "Kbuild").write_text("obj-m := m.o\n")
    (p / "m.c").write_text("/* m */\n")
    return p


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    """A small tmpfs mounted at `where` (a failure under CI where it cannot)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    require(proc.returncode == 0, f"mounting a tmpfs (root; {proc.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Fill a mounted file system until about `leave` bytes are free."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    with open(mount / ".filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


# --- R1: an image label names a host directory -----------------------------------------


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    from kbuild_py.errors import DockerUnavailable
    from kbuild_py.seams.docker import docker_client

    try:
        return docker_client()
    except DockerUnavailable as err:
        require(False, f"a Docker daemon ({err.message})")


def docker_import(tmp: Path, files: dict[str, bytes], name: str, labels: dict[str, str]) -> str:
    """`docker import` a tar of `files` as image `name` with `labels`; returns the name."""
    tar_path = tmp / f"{name.replace('/', '_').replace(':', '_')}.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    changes = [a for k, v in labels.items() for a in ("-c", f'LABEL {k}="{v}"')]
    subprocess.run(["docker", "import", *changes, str(tar_path), name], check=True,
                   capture_output=True, timeout=120)
    return name


@pytest.mark.docker
def test_r1_image_label_release_cannot_name_a_host_directory(tmp_path: Path, client) -> None:  # type: ignore[no-untyped-def]
    victim = tmp_path / "srv" / "victim"
    (victim / "build/include/generated").mkdir(parents=True)
    (victim / "keep.txt").write_text("precious\n")
    uts = b'#define UTS_RELEASE "6.6.6"\n'
    (victim / "build/include/generated/utsrelease.h").write_bytes(uts)
    evil = "./" + "../" * 12 + str(victim).lstrip("/")
    name = f"kmod-py-hostile/evil:{os.getpid()}"
    docker_import(tmp_path, {f"{str(victim).lstrip('/')}/build/include/generated/utsrelease.h":
                             uts}, name, {"io.kmod-py.kind": "kernel",
                                          "io.kmod-py.kernel.release": evil})
    proj = project(tmp_path)
    cache = tmp_path / "cache"
    try:
        proc = kmod_py("build", "--kernel", f"image:{name}", cwd=proj,
                       env={"KMOD_PY_CACHE": str(cache)})
    finally:
        client.images.remove(name, force=True)
    assert (victim / "keep.txt").read_text() == "precious\n", "the host directory was replaced"
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not a plain name" in proc.stderr, proc.stderr
    no_traceback(proc)


# --- R2: a cloned repository's .kmod-py and manifest ------------------------------------


def test_r2_symlinked_kmod_py_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "some" / "dir"
    (elsewhere / FAKE_RELEASE).mkdir(parents=True)
    (elsewhere / FAKE_RELEASE / "host.ko").write_text("not yours\n")
    proj = project(tmp_path)
    (proj / ".kmod-py").symlink_to(elsewhere)
    proc = kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    assert (elsewhere / FAKE_RELEASE / "host.ko").is_file(), "a .ko outside the project was deleted"
    assert sorted(p.name for p in (elsewhere / FAKE_RELEASE).iterdir()) == ["host.ko"]
    assert proc.returncode == 2, proc.stderr
    assert "symbolic link" in proc.stderr and ".kmod-py" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_r2_symlinked_release_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "lib-modules"
    elsewhere.mkdir()
    (elsewhere / "real.ko").write_text("not yours\n")
    proj = project(tmp_path)
    (proj / ".kmod-py").mkdir()
    (proj / ".kmod-py" / FAKE_RELEASE).symlink_to(elsewhere)
    proc = kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    assert (elsewhere / "real.ko").is_file()
    assert not (elsewhere / "m.c").exists(), "sources were copied through the link"
    assert proc.returncode == 2 and "symbolic link" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_r2_manifest_cannot_delete_through_a_committed_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "target.txt").write_text("precious\n")
    proj = project(tmp_path)
    out = proj / ".kmod-py" / FAKE_RELEASE
    out.mkdir(parents=True)
    (out / "evil").symlink_to(elsewhere)
    (out / ".kmod-py-sources").write_text("evil/target.txt\n../../../elsewhere/target.txt\n")
    proc = kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    assert (elsewhere / "target.txt").read_text() == "precious\n"
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "evil" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_r2_stale_ko_search_does_not_follow_symlinked_subdirectories(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.ko").write_text("not yours\n")
    proj = project(tmp_path)
    out = proj / ".kmod-py" / FAKE_RELEASE
    out.mkdir(parents=True)
    (out / "sub").symlink_to(elsewhere)
    kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    assert (elsewhere / "victim.ko").is_file()


def test_r2_release_names_must_be_one_component() -> None:
    from kbuild_py.errors import UsageError
    from kbuild_py.paths import output_dir

    for bad in ("", ".", "..", "a/b", "../x", "x\0", "x\n", "./" + "../" * 3 + "srv"):
        with pytest.raises(UsageError):
            output_dir(Path("/p"), bad)
    assert output_dir(Path("/p"), "6.12.117+deb13-amd64") == Path(
        "/p/.kmod-py/6.12.117+deb13-amd64")


# --- R5: one build per project and kernel at a time --------------------------------------

SLOW = 'echo "start $$(date +%s.%N)" >> $(M)/../../times\nsleep 10\n' \
       'echo "end $$(date +%s.%N)" >> $(M)/../../times'


def intervals(times: Path) -> list[tuple[float, float]]:
    starts = [float(x.split()[1]) for x in times.read_text().splitlines() if x.startswith("start")]
    ends = [float(x.split()[1]) for x in times.read_text().splitlines() if x.startswith("end")]
    return sorted(zip(sorted(starts), sorted(ends), strict=True))


def start_build(proj: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([KMOD_PY, "build", *args], cwd=proj, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})


def wait_for(cond, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_r5_second_build_of_one_kernel_waits_or_fails_fast(tmp_path: Path) -> None:
    proj = project(tmp_path)
    kdir = fake_kdir(tmp_path, recipe=SLOW)
    first = start_build(proj, "--kdir", str(kdir))
    try:
        wait_for(lambda: (proj / "times").is_file(), "the first build never started make")
        t0 = time.monotonic()
        busy = kmod_py("build", "--kdir", str(kdir), "--no-wait", cwd=proj)
        assert time.monotonic() - t0 < 6, "--no-wait waited (the holder runs 10 s)"
        assert busy.returncode == 2, busy.stdout + busy.stderr
        assert "busy" in busy.stderr and f"pid {first.pid}" in busy.stderr, busy.stderr
        no_traceback(busy)
        second = kmod_py("build", "--kdir", str(kdir), cwd=proj)
        assert f"waiting: kmod-py (pid {first.pid}) is building {proj}" in second.stderr, \
            second.stderr
        first_out = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == second.returncode, (first_out, second.stderr)
    (a0, a1), (b0, b1) = intervals(proj / "times")
    assert a1 <= b0, "two makes ran in one output directory at once"
    log = (proj / ".kmod-py" / FAKE_RELEASE / "build.log").read_text()
    assert log.count("# exit") == 1


def test_r5_builds_of_different_kernels_do_not_wait(tmp_path: Path) -> None:
    proj = project(tmp_path)
    first = start_build(proj, "--kdir", str(fake_kdir(tmp_path, recipe=SLOW)))
    try:
        wait_for(lambda: (proj / "times").is_file(), "the first build never started make")
        other = kmod_py("build", "--kdir", str(fake_kdir(tmp_path, "6.6.7-other")), "--no-wait",
                        cwd=proj)
        assert "busy" not in other.stderr and "waiting" not in other.stderr, other.stderr
    finally:
        first.communicate(timeout=60)


@pytest.mark.headers
def test_r5_two_concurrent_builds_of_one_project_both_succeed(scaffold, host_release) -> None:  # type: ignore[no-untyped-def]
    proj = scaffold("racer")
    procs = [start_build(proj, "--kernel", host_release) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    assert (proj / ".kmod-py" / host_release / "racer.ko").is_file()
    assert any("waiting: kmod-py (pid" in err for _, err in outs), outs


@pytest.mark.docker
@pytest.mark.headers
def test_r5_two_concurrent_matrices_on_one_project_both_succeed(  # type: ignore[no-untyped-def]
    scaffold, host_release, client
) -> None:
    from kbuild_py.kernels.resolve import resolve_spec

    resolve_spec("debian:bookworm")  # the image exists before the race (built once per machine)
    proj = scaffold("matrix")
    args = ("--kernel", host_release, "--kernel", "debian:bookworm", "-j2")
    procs = [start_build(proj, *args) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err


def test_r5_image_builds_take_a_lock_per_image(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.images import kernel as images
    from kbuild_py.trust.fs import LockBusy, LockPolicy

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path / "cache"))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from kbuild_py.images import kernel as images\n"
         "with images.image_lock('6.6.6-x'):\n print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as err:
            with images.image_lock("6.6.6-x", LockPolicy(wait=False)):
                pass
        assert f"pid {holder.pid}" in err.value.message
        with images.image_lock("6.6.7-y", LockPolicy(wait=False)):
            pass  # another image: no wait
    finally:
        holder.kill()
        holder.wait()
    said: list[str] = []
    with images.image_lock("6.6.6-x", LockPolicy(wait=True, say=said.append)):
        pass
    assert said == []


# --- R6: decompression bombs -------------------------------------------------------------


def zstd_bomb(path: Path, size: int) -> Path:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    with open(path, "wb") as f, cctx.stream_writer(f) as w:
        chunk = b"\x7fELF" + b"\0" * ((1 << 20) - 4)
        for _ in range(size >> 20):
            w.write(chunk)
    return path


# The peak RSS of a child forked straight from pytest is not the child's own: Linux starts a
# forked child's high-water mark from the parent's resident memory (and keeps it across exec),
# so late in a long pytest run `true` alone "peaks" at hundreds of MiB. A small launcher
# process (fresh after its exec) forks the measured command instead and reports its peak.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def max_rss_of(argv: list[str], cwd: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of one command, whatever this process holds."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rc, rss = map(int, proc.stdout.split())
    return rc, proc.stderr, rss


def test_max_rss_of_does_not_count_what_the_caller_holds(tmp_path: Path) -> None:
    held = bytearray(300 << 20)
    held[:: 1 << 12] = b"\1" * len(range(0, len(held), 1 << 12))  # resident, not just mapped
    rc, _, rss = max_rss_of(["true"], tmp_path)
    assert rc == 0 and rss < 100 << 20, f"peak RSS {rss >> 20} MiB"
    del held


def test_r6_test_ko_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    bomb = zstd_bomb(tmp_path / "bomb.ko.zst", 1 << 30)
    assert bomb.stat().st_size < 1 << 20
    rc, err, rss = max_rss_of([KMOD_PY, "test", "--ko", str(bomb)], tmp_path)
    assert rc == 2, err
    assert "expands beyond" in err, err
    assert rss < 200 << 20, f"peak RSS {rss >> 20} MiB"


def test_r6_moddeps_and_check_share_one_capped_decompressor(tmp_path: Path) -> None:
    from kbuild_py.boot import deps as moddeps
    from kbuild_py.check.elf import modfile
    from kbuild_py.errors import ModuleReadError

    bomb = zstd_bomb(tmp_path / "dep.ko.zst", 300 << 20)
    with pytest.raises(ModuleReadError, match="expands beyond"):
        moddeps.decompress(bomb.read_bytes())
    with pytest.raises(ModuleReadError, match="expands beyond"):
        modfile.read_module(bomb)


def _tree_rss(pid: int) -> int:
    """Summed RSS of a process and its children (from /proc)."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        return 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def test_r6_check_r_over_bombs_stays_bounded_whatever_the_cores(tmp_path: Path) -> None:
    d = tmp_path / "bombs"
    d.mkdir()
    # huge but legal modules (under the cap) at both ends of the list, where the parent and
    # the first worker start at once; small ones between (48 files: enough to fork workers)
    big = zstd_bomb(tmp_path / "big.ko.zst", 100 << 20)
    small = zstd_bomb(tmp_path / "small.ko.zst", 1 << 20)
    for i in range(48):
        os.link(big if i < 3 or i >= 45 else small, d / f"b{i:03}.ko.zst")
    proc = subprocess.Popen([KMOD_PY, "check", "-r", str(d)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.02)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 2, err
    ncpu = len(os.sched_getaffinity(0))
    # one huge module in memory at a time (plus each worker's interpreter), not one per core
    assert peak < (150 << 20) + ncpu * (100 << 20), f"peak {peak >> 20} MiB with {ncpu} cores"


# --- R7: images --prune ------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.docker
def test_r7_prune_removes_orphans_only_and_keeps_images_in_use(tmp_path: Path, client) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.seams.docker import RUN_LABEL

    tag = f"kmod-py-hostile/kernel:{os.getpid()}"
    busybox = Path("/bin/busybox").read_bytes()
    docker_import(tmp_path, {"bin/busybox": busybox}, tag,
                  {"io.kmod-py.kind": "kernel", "io.kmod-py.kernel.release": "6.6.6-prune"})
    used_tag = f"kmod-py-hostile/kernel:{os.getpid()}-used"
    docker_import(tmp_path, {"bin/busybox": busybox, "x": b"1"}, used_tag,
                  {"io.kmod-py.kind": "kernel", "io.kmod-py.kernel.release": "6.6.7-used"})
    used_id = client.images.get(used_tag).id
    made: list = []  # type: ignore[type-arg]
    try:
        orphan = client.containers.create(tag, ["/bin/busybox", "true"],
                                          labels={RUN_LABEL: str(_dead_pid())})
        made.append(orphan)
        live = client.containers.create(tag, ["/bin/busybox", "true"],
                                        labels={RUN_LABEL: str(os.getpid())})
        made.append(live)
        user = client.containers.create(used_tag, ["/bin/busybox", "sleep", "60"],
                                        network_mode="none")
        made.append(user)
        user.start()
        client.images.remove(used_tag, force=True)  # untagged: a leftover of a rebuild, in use
        proc = kmod_py("images", "--prune", cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        no_traceback(proc)
        ids = {c.id for c in client.containers.list(all=True)}
        assert orphan.id not in ids, "a container of a killed kmod-py stayed"
        assert live.id in ids, "a container of a running kmod-py was removed"
        assert client.images.get(tag), "a tagged kernel image went without --all"
        assert client.images.get(used_id), "an image in use was removed"
        assert "in use" in proc.stdout + proc.stderr
    finally:
        for c in made:
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for ref in (tag, used_id):
            with contextlib.suppress(Exception):
                client.images.remove(ref, force=True)


class _FakeImage:
    def __init__(self, id_: str, tags: list[str], labels: dict[str, str]) -> None:
        self.id, self.short_id, self.tags, self.labels = id_, id_[:12], tags, labels
        self.attrs = {"Size": 1, "Created": ""}


class _FakeImages:
    def __init__(self, imgs: list[_FakeImage], in_use: set[str]) -> None:
        self.imgs, self.in_use, self.removed = imgs, in_use, []  # type: ignore[var-annotated]

    def list(self, filters=None, name=None, all=False):  # type: ignore[no-untyped-def]  # noqa: A002
        return list(self.imgs)

    def remove(self, ref: str, force: bool = False, noprune: bool = False) -> None:
        from docker.errors import APIError

        if ref in self.in_use:
            raise APIError("conflict", response=type("R", (), {"status_code": 409})(),
                           explanation="image is being used by running container")
        self.removed.append(ref)


class _FakeClient:
    def __init__(self, images: _FakeImages) -> None:
        self.images = images
        self.containers = type("C", (), {"list": staticmethod(lambda **kw: [])})()


def test_r7_prune_all_removes_every_image_but_those_in_use(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.images import kernel as images

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path))
    imgs = [
        _FakeImage("sha256:aaa", ["kmod-py/kernel:6.1.0-1-amd64"], {"io.kmod-py.kind": "kernel"}),
        _FakeImage("sha256:bbb", ["kmod-py/kernel:6.1.0-2-amd64"], {"io.kmod-py.kind": "kernel"}),
        _FakeImage("sha256:ccc", ["kmod-py/base:bookworm"], {"io.kmod-py.kind": "base"}),
    ]
    fake = _FakeImages(imgs, in_use={"sha256:bbb"})
    report = images.prune(_FakeClient(fake), everything=True)
    assert sorted(fake.removed) == ["sha256:aaa", "sha256:ccc"]
    assert report.kept == ["kmod-py/kernel:6.1.0-2-amd64 (in use)"]
    fake2 = _FakeImages(imgs, in_use=set())
    images.prune(_FakeClient(fake2), everything=False)
    assert fake2.removed == [], "tagged images went without --all"


# --- R8: non-regular files ---------------------------------------------------------------


def test_r8_check_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.ko"
    os.mkfifo(fifo)
    proc = kmod_py("check", str(fifo), cwd=tmp_path, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_r8_check_refuses_a_device(tmp_path: Path) -> None:
    proc = kmod_py("check", "/dev/zero", cwd=tmp_path, timeout=20)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr


def test_r8_test_ko_refuses_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "y.ko"
    os.mkfifo(fifo)
    proc = kmod_py("test", "--ko", str(fifo), cwd=tmp_path, timeout=20)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr


# --- R9: timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_r9_test_timeout_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    proj = project(tmp_path)
    proc = kmod_py("test", "--timeout", value, "--kernel", "host", cwd=proj, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--timeout" in proc.stderr and "TIMEOUT" not in proc.stdout, proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("value", ["nan", "inf", "+inf", "-inf", "0"])
def test_r9_kmod_toml_timeout_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    proj = project(tmp_path)
    (proj / "kmod.toml").write_text(f"[test]\ntimeout = {value}\n")
    proc = kmod_py("test", "--kernel", "host", cwd=proj, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "test.timeout" in proc.stderr, proc.stderr


# --- R10: the Docker daemon dies mid-build -------------------------------------------------


class _DyingContainer:
    id = "c0ffee"
    short_id = "c0ffee"

    def __init__(self) -> None:
        self.removed = False

    def start(self) -> None:
        pass

    def logs(self, **kw):  # type: ignore[no-untyped-def]
        import requests

        yield b"  CC [M]  m.o\n"
        raise requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected)")

    def wait(self):  # type: ignore[no-untyped-def]
        raise AssertionError("not reached")

    def remove(self, force: bool = False) -> None:
        import requests

        raise requests.exceptions.ConnectionError("daemon gone")

    def kill(self) -> None:
        pass


class _DyingClient:
    def __init__(self) -> None:
        parent = self

        class Containers:
            def create(self, *a, **kw):  # type: ignore[no-untyped-def]
                parent.labels = kw.get("labels", {})
                return _DyingContainer()

        self.containers = Containers()
        self.labels: dict[str, str] = {}


def test_r10_daemon_dying_mid_build_is_an_infrastructure_error_of_that_kernel(
    tmp_path: Path,
) -> None:
    from kbuild_py.build.plan import BuildOptions
    from kbuild_py.build.run import build_all
    from kbuild_py.kernels.buildtree import BuildTree
    from kbuild_py.kernels.spec import Target
    from kbuild_py.seams.docker import DockerRunner

    tree = BuildTree.open(fake_kdir(tmp_path))
    client = _DyingClient()
    target = Target(spec="image:x", release=FAKE_RELEASE, tree=tree, kdir="/k",
                    runner=DockerRunner("x", client), where="x")
    proj = project(tmp_path)
    [res] = build_all(proj, [target], BuildOptions(run_checks=False))
    assert not res.ok and res.error is not None
    assert "Docker daemon" in res.error, res.error
    log = (proj / ".kmod-py" / FAKE_RELEASE / "build.log").read_text()
    assert "CC [M]  m.o" in log and "Docker daemon" in log, log
    assert client.labels.get("io.kmod-py.run") == str(os.getpid())


@pytest.mark.docker
def test_r10_containers_of_a_killed_kmod_py_are_removed_by_the_next_run(  # type: ignore[no-untyped-def]
    tmp_path: Path, client
) -> None:
    from kbuild_py.seams.docker import RUN_LABEL

    tag = f"kmod-py-hostile/run:{os.getpid()}"
    docker_import(tmp_path, {"bin/busybox": Path("/bin/busybox").read_bytes()}, tag, {})
    script = (
        "import sys\nfrom kbuild_py.seams.docker import DockerRunner\n"
        f"DockerRunner({tag!r}).run(['/bin/busybox', 'sh', '-c', 'echo up; sleep 300'], "
        "on_line=lambda l: print(l, flush=True))\n"
    )
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "up"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        left = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={victim.pid}"})
        assert len(left) == 1, "kill -9 left no container: the test proves nothing"
        nxt = subprocess.run([sys.executable, "-c", "from kbuild_py.seams.docker import "
                              f"DockerRunner as R; print(R({tag!r}).run(['/bin/busybox', "
                              "'true']).returncode)"], capture_output=True, text=True, timeout=120)
        assert nxt.stdout.strip() == "0", nxt.stderr
        gone = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={victim.pid}"})
        assert gone == [], "the next run did not remove the killed run's container"
    finally:
        for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={victim.pid}"}):
            c.remove(force=True)
        client.images.remove(tag, force=True)


class SecondDaemon:
    """A private dockerd (own socket, data root, exec root and containerd) that a test may kill
    without touching the machine's daemon."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = f"unix://{root}/d.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.sock, "--data-root", f"{self.root}/data",
             "--exec-root", f"{self.root}/x", "--pidfile", f"{self.root}/d.pid",
             "--bridge", "none", "--iptables=false", "--ip-masq=false",
             "--containerd-namespace", "kmodhostile", "--containerd-plugins-namespace",
             "kmodhostile-p"], stdout=log, stderr=log)
        wait_for(lambda: subprocess.run(["docker", "-H", self.sock, "info"],
                                        capture_output=True).returncode == 0,
                 "the private dockerd never answered: "
                 + (self.root / "dockerd.log").read_text(errors="replace")[-600:], timeout=60)

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", "-H", self.sock, *args], capture_output=True,
                              text=True, check=True, timeout=120).stdout

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        # what a restart after a crash needs: dockerd 20.10 refuses its stale pid file and
        # waits forever on the socket its dead containerd's pid file names
        (self.root / "d.pid").unlink(missing_ok=True)
        (self.root / "x/containerd/containerd.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # what this daemon started (its containerd, shims) and outlived it: by pid, ours only
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(self.root).encode() + b"/x" in cmd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def second_daemon():  # type: ignore[no-untyped-def]
    import tempfile

    require(shutil.which("dockerd") is not None, "dockerd")
    root = Path(tempfile.mkdtemp(prefix="kdd", dir="/tmp"))  # short: unix socket paths
    d = SecondDaemon(root)
    try:
        d.start()
        yield d
    finally:
        d.stop()
        subprocess.run(["umount", "-R", "-l", f"{root}/data"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


MAKE_THAT_HANGS = b"#!/bin/busybox sh\necho '  CC [M]  m.o'\nexec /bin/busybox sleep 300\n"


@pytest.mark.docker
@pytest.mark.slow
def test_r10_real_daemon_killed_mid_build(tmp_path: Path, second_daemon) -> None:  # type: ignore[no-untyped-def]
    from kbuild_py.seams.docker import RUN_LABEL

    rel = "6.6.6-daemon"
    uts = f'#define UTS_RELEASE "{rel}"\n'.encode()
    files = {"bin/busybox": Path("/bin/busybox").read_bytes(), "usr/bin/make": MAKE_THAT_HANGS,
             f"lib/modules/{rel}/build/include/generated/utsrelease.h": uts,
             "tmp/.keep": b""}
    tar_path = tmp_path / "img.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o1777 if path.startswith("tmp/") else 0o755
            tar.addfile(info, io.BytesIO(data))
    second_daemon.docker("import", "-c", f"LABEL io.kmod-py.kernel.release={rel}",
                         str(tar_path), "hostile/daemon:1")
    proj = project(tmp_path)
    env = {**os.environ, "NO_COLOR": "1", "DOCKER_HOST": second_daemon.sock,
           "KMOD_PY_CACHE": str(tmp_path / "cache")}
    build = subprocess.Popen([KMOD_PY, "build", "--kernel", "image:hostile/daemon:1", "-v"],
                             cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    log = proj / ".kmod-py" / rel / "build.log"
    try:
        wait_for(lambda: build.poll() is not None or second_daemon.docker(
            "ps", "-q", "--filter", f"label={RUN_LABEL}={build.pid}").strip(),
            "make never started", timeout=120)
        assert build.poll() is None, build.communicate()
        time.sleep(1)
        second_daemon.kill9()
        out, err = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 1, out + err
    assert "internal error" not in err and "Traceback" not in err, err
    assert "Docker daemon" in out + err, out + err
    assert "Docker daemon" in log.read_text() and "CC [M]  m.o" in log.read_text()
    second_daemon.start()
    left = second_daemon.docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={build.pid}")
    assert left.strip(), "no container was left: the test proves nothing"
    again = subprocess.run([sys.executable, "-c", "from kbuild_py.seams.docker import "
                            "DockerRunner as R; print(R('hostile/daemon:1').run(['/bin/busybox',"
                            " 'true']).returncode)"], capture_output=True, text=True,
                           timeout=120, env=env)
    assert again.stdout.strip() == "0", again.stderr
    gone = second_daemon.docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={build.pid}")
    assert gone.strip() == "", "the next run did not remove the dead daemon's container"


# --- R11: closed stdout, disk full, sparse files, hard links, non-UTF-8 names ---------------


@pytest.mark.headers
def test_r11_check_with_stdout_closed(tmp_path: Path, built_hello: Path) -> None:
    proc = subprocess.run(f"exec {KMOD_PY} check {built_hello} 1>&-", shell=True, cwd=tmp_path,
                          capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "standard output" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_r11_new_on_a_full_disk_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small") as mnt:
        fill(mnt, 6000)
        proc = kmod_py("new", "hello_module", "--dir", str(mnt), cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"{mnt}/hello_module/" in proc.stderr, proc.stderr
        assert "No space left on device" in proc.stderr
        assert not (mnt / "hello_module").exists(), list((mnt / "hello_module").iterdir())
        (mnt / ".filler").unlink()
        again = kmod_py("new", "hello_module", "--dir", str(mnt), cwd=tmp_path)
        assert again.returncode == 0, again.stderr


def test_r11_source_copy_on_a_full_disk_names_the_destination(tmp_path: Path) -> None:
    proj = project(tmp_path)
    (proj / "big.bin").write_bytes(os.urandom(200_000))
    with tmpfs(proj / ".kmod-py", size="128k") as mnt:
        proc = kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        dest = mnt / FAKE_RELEASE / "big.bin"
        assert f"{dest}: No space left on device" in proc.stderr, proc.stderr
        assert not list((mnt / FAKE_RELEASE).glob("*.part")), "a half-made copy stayed"
        assert not dest.exists()


def test_r11_sparse_sources_are_copied_sparse(tmp_path: Path) -> None:
    proj = project(tmp_path)
    with open(proj / "sparse.img", "wb") as f:
        f.truncate(256 << 20)
        f.seek(100 << 20)
        f.write(b"data in the middle")
    kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    copy = proj / ".kmod-py" / FAKE_RELEASE / "sparse.img"
    assert copy.stat().st_size == 256 << 20
    assert copy.stat().st_blocks * 512 < 1 << 20, f"{copy.stat().st_blocks * 512} bytes used"
    with open(copy, "rb") as f:
        f.seek(100 << 20)
        assert f.read(18) == b"data in the middle"


def test_r11_new_force_replaces_hard_links_instead_of_writing_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.c"
    outside.write_text("precious\n")
    dest = tmp_path / "hello_module"
    dest.mkdir()
    os.link(outside, dest / "hello_module.c")
    os.link(outside, dest / "Kbuild")
    proc = kmod_py("new", "hello_module", "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert outside.read_text() == "precious\n", "new --force wrote through a hard link"
    assert "module_init" in (dest / "hello_module.c").read_text()
    assert outside.stat().st_nlink == 1


def test_r11_source_sync_replaces_hard_links_in_the_output_dir(tmp_path: Path) -> None:
    proj = project(tmp_path)
    out = proj / ".kmod-py" / FAKE_RELEASE
    out.mkdir(parents=True)
    outside = tmp_path / "outside.c"
    outside.write_text("precious, and longer than m.c\n")
    os.link(outside, out / "m.c")
    kmod_py("build", "--kdir", str(fake_kdir(tmp_path)), cwd=proj)
    assert outside.read_text() == "precious, and longer than m.c\n"
    assert (out / "m.c").read_text() == "/* m */\n"


@pytest.mark.headers
def test_r11_non_utf8_names_are_lossless_in_json(tmp_path: Path, built_hello: Path) -> None:
    d = os.fsencode(tmp_path)
    name = d + b"/caf\xe9.ko"
    shutil.copyfile(built_hello, name)
    proc = subprocess.run([KMOD_PY, "check", "--json", name], capture_output=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    text = proc.stdout.decode("utf-8")  # strict: the output is valid UTF-8
    assert "\\udc" not in text, "lone surrogates in JSON"
    [mod] = json.loads(text)["modules"]
    import base64

    assert base64.b64decode(mod["path_bytes"]) == name
    assert "caf" in mod["path"]


# --- R12: JUnit from test with control characters in console lines ----------------------------


def test_r12_test_junit_escapes_what_xml_cannot_hold() -> None:
    import xml.etree.ElementTree as ET

    from kbuild_py.boot.run import TestResult
    from kbuild_py.boot.verdict import Verdict
    from kbuild_py.report.test import to_junit

    v = Verdict(status="fail", problems=["kernel said \x1b[31mOops\x1b[0m"],
                excerpt=["[1.0] \x1b[1mBUG\x1b[0m \x00 <b> & \x07", "\ud800 lone"])
    r = TestResult(label="debian:x\x1b", release="6.1.0-1-amd64", status="fail", verdict=v,
                   modules=["m\x01"])
    xml = to_junit([r])
    root = ET.fromstring(xml.encode("utf-8"))
    failure = root.find(".//failure")
    assert failure is not None and "Oops" in failure.get("message", "")
    assert "<b> &" in (failure.text or "")


def test_r12_one_junit_writer() -> None:
    from kbuild_py.report import check as report_check
    from kbuild_py.report import test as report_test

    src_t = Path(report_test.__file__).read_text()
    src_c = Path(report_check.__file__).read_text()
    for src in (src_t, src_c):
        assert "from kbuild_py.report import junit" in src
        assert "ElementTree" not in src and "<testcase " not in src and "def _esc" not in src, \
            "a second JUnit writer"


def test_r12_check_junit_escapes_undecodable_names_and_controls() -> None:
    import xml.etree.ElementTree as ET

    from kbuild_py.report.check import to_junit

    d = {"path": "/tmp/caf\udce9\x1b.ko", "error": None, "rules_run": ["license"],
         "rules_skipped": {"vermagic": "no target \x07"},
         "findings": [{"rule": "license", "severity": "error", "message": "bad \x1b[1m<x>",
                       "hint": "fix & \x00 retry"}]}
    root = ET.fromstring(to_junit([d]).encode("utf-8"))
    failure = root.find(".//failure")
    assert failure is not None and "<x>" in failure.get("message", "")
    assert root.find(".//testsuite").get("failures") == "1"
