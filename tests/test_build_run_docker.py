"""Real module builds in kernel-headers containers: three Debian kernels, ownership, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kbuild_py.build.plan import BuildOptions
from kbuild_py.build.run import build_all
from kbuild_py.seams import process
from kbuild_py.seams.docker import RUN_LABEL, DockerRunner

pytestmark = pytest.mark.docker
SPECS = ("debian:bookworm", "debian:trixie", "debian:trixie-backports")


def modinfo(ko: Path) -> dict[str, str]:
    """The .modinfo key=value strings of a .ko (first value of each key)."""
    from elftools.elf.elffile import ELFFile

    with open(ko, "rb") as f:
        data = ELFFile(f).get_section_by_name(".modinfo").data()
    out: dict[str, str] = {}
    for entry in data.split(b"\0"):
        key, eq, value = entry.decode().partition("=")
        if eq:
            out.setdefault(key, value)
    return out


def owners(tree: Path) -> set[int]:
    return {p.lstat().st_uid for p in tree.rglob("*")} | {tree.stat().st_uid}


def test_scaffolded_hello_builds_for_three_debian_kernels(  # type: ignore[no-untyped-def]
    scaffold, debian_targets, kmod_py
) -> None:
    project = scaffold("hello_module")
    proc = kmod_py(["build", *[a for s in SPECS for a in ("--kernel", s)], "-j2", "--json"],
                   cwd=project)
    assert proc.exit_code == 0, proc.output
    results = json.loads(proc.stdout)
    assert [r["kernel"] for r in results] == list(SPECS)
    for r in results:
        t = debian_targets[r["kernel"]]
        assert r["ok"] and r["release"] == t.release and r["where"] == t.where
        (mod,) = r["modules"]
        ko = Path(mod["path"])
        assert ko.parent == project / ".kmod-py" / t.release
        info = modinfo(ko)
        assert info["vermagic"] == t.tree.vermagic
        assert mod["vermagic"].strip() == info["vermagic"].strip()
        assert info["vermagic"].startswith(t.release + " ")
        assert info["name"] == "hello_module" and info["license"] == "GPL"
        assert owners(ko.parent) == {os.getuid()}  # nothing root-owned (or other) left behind
    assert len({r["release"] for r in results}) == 3
    assert not list(project.glob("*.o")) and not list(project.glob("*.ko"))


MULTI_MAIN = r"""
#include <linux/module.h>
#include <linux/init.h>
#include "helper.h"
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("two-file module");
static int __init multi_init(void) { pr_info("multi %d\n", helper_answer()); return 0; }
static void __exit multi_exit(void) { }
module_init(multi_init);
module_exit(multi_exit);
"""
MULTI_HELPER = r"""
#include <linux/module.h>
#include <linux/version.h>
#include "helper.h"
#ifdef BREAK_ON_7
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
#error "helper not ported to Linux 7 yet"
#endif
#endif
int helper_answer(void) { return 42; }
"""


def multi_file_module(parent: Path, break_on_7: bool = False) -> Path:
    d = parent / "multi"
    (d / "include").mkdir(parents=True)
    (d / "main.c").write_text(MULTI_MAIN)
    (d / "helper.c").write_text(("#define BREAK_ON_7\n" if break_on_7 else "") + MULTI_HELPER)
    (d / "include/helper.h").write_text("int helper_answer(void);\n")
    (d / "Kbuild").write_text("obj-m := multi.o\nmulti-y := main.o helper.o\n"
                              "ccflags-y := -I$(src)/include\n")
    return d


def test_multi_file_module_builds_in_parallel_via_build_all(tmp_path: Path, debian_targets) -> None:  # type: ignore[no-untyped-def]
    project = multi_file_module(tmp_path)
    targets = [debian_targets[s] for s in SPECS]
    results = build_all(project, targets, BuildOptions(make_jobs=1), jobs=2)
    for res, t in zip(results, targets, strict=True):
        assert res.ok, res.log_path.read_text()
        (ko,) = res.modules
        assert ko.name == "multi.ko" and modinfo(ko)["vermagic"] == t.tree.vermagic
        assert (res.outdir / "main.o").is_file() and (res.outdir / "helper.o").is_file()


def test_compile_error_in_one_kernel_leaves_the_others_built(  # type: ignore[no-untyped-def]
    tmp_path: Path, debian_targets, kmod_py
) -> None:
    project = multi_file_module(tmp_path, break_on_7=True)
    proc = kmod_py(["build", *[a for s in SPECS for a in ("--kernel", s)], "-j2"], cwd=project)
    assert proc.exit_code == 1, proc.output
    new = debian_targets["debian:trixie-backports"].release
    rows = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln[:1].isdigit()}
    assert "FAILED" in rows[new]
    assert 'error: #error "helper not ported to Linux 7 yet"' in proc.stdout
    assert f"full log: {project}/.kmod-py/{new}/build.log" in proc.stdout
    for spec in ("debian:bookworm", "debian:trixie"):
        t = debian_targets[spec]
        assert "FAILED" not in rows[t.release], proc.stdout
        ko = project / ".kmod-py" / t.release / "multi.ko"
        assert modinfo(ko)["vermagic"] == t.tree.vermagic


def test_builds_run_as_the_calling_uid(debian_targets, kmod_py_bin) -> None:  # type: ignore[no-untyped-def]
    """kmod-py run by uid 4242 (in the docker group): every output file is 4242's."""
    import grp

    from conftest import require

    groups = {g.gr_name: g.gr_gid for g in grp.getgrall()}
    require("docker" in groups, "a docker group (to lend the socket to another uid)")
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None,
            "root and setpriv (to run kmod-py as another uid)")
    docker_gid = groups["docker"]
    uid = 4242
    base = Path(tempfile.mkdtemp(prefix="kmod-py-uid-"))
    try:
        base.chmod(0o755)
        project = multi_file_module(base)
        home = base / "home"
        home.mkdir()
        for p in [base, *base.rglob("*")]:
            os.chown(p, uid, uid)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "NO_COLOR": "1",
               "KMOD_PY_CACHE": str(home / "cache")}
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={docker_gid}",
               str(kmod_py_bin), "build", "--kernel", "image:kmod-py/kernel:debian-bookworm"]
        proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        release = debian_targets["debian:bookworm"].release
        assert (project / ".kmod-py" / release / "multi.ko").is_file()
        assert owners(base) == {uid}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def containers_of(client, pid: int) -> list:  # type: ignore[no-untyped-def]
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={pid}"})


@pytest.mark.parametrize(("sig", "specs"), [
    (signal.SIGINT, ("debian:bookworm",)),
    (signal.SIGTERM, ("debian:bookworm", "debian:trixie")),
])
def test_interrupt_mid_build_removes_every_container(  # type: ignore[no-untyped-def]
    tmp_path: Path, docker_client, debian_targets, sig: int, specs: tuple[str, ...],
    kmod_py_bin: Path,
) -> None:
    project = tmp_path / "slow"
    project.mkdir()
    (project / "slow.c").write_text('#include <linux/module.h>\nMODULE_LICENSE("GPL");\n')
    (project / "Kbuild").write_text("obj-m := slow.o\nnap := $(shell sleep 120)\n")
    args = [str(kmod_py_bin), "build", *[a for s in specs for a in ("--kernel", s)], "-j2"]
    proc = subprocess.Popen(args, cwd=project, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        deadline = time.monotonic() + 120
        while len([c for c in containers_of(docker_client, proc.pid)
                   if c.status == "running"]) < len(specs):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the build containers never started"
            time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack
            pytest.fail("kmod-py did not stop:\n" + proc.communicate(timeout=30)[0])
        assert time.monotonic() - started < 30
        assert proc.returncode in (130, 143, 1), out
        assert "interrupted" in out or proc.returncode != 0
        assert containers_of(docker_client, proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in containers_of(docker_client, proc.pid):
            c.remove(force=True)


def test_runner_timeout_kills_and_removes_the_container(tmp_path: Path, docker_client,  # type: ignore[no-untyped-def]
                                                        debian_targets) -> None:
    runner = DockerRunner(debian_targets["debian:bookworm"].where, docker_client)
    lines: list[str] = []
    start = time.monotonic()
    res = runner.run(["sh", "-c", "echo started; sleep 60"], cwd=tmp_path, timeout=3,
                     on_line=lines.append)
    assert res.timed_out and res.returncode != 0 and time.monotonic() - start < 20
    assert lines == ["started"]
    assert containers_of(docker_client, os.getpid()) == []


def test_runner_exit_code_env_lines_and_isolation(tmp_path: Path, docker_client,  # type: ignore[no-untyped-def]
                                                  debian_targets) -> None:
    runner = DockerRunner(debian_targets["debian:trixie"].where, docker_client)
    lines: list[str] = []
    script = "echo out; echo err >&2; echo $FOO; id -u; id -g; pwd; touch made; exit 3"
    res = runner.run(["sh", "-c", script], cwd=tmp_path, env={"FOO": "bar"},
                     on_line=lines.append)
    assert res.returncode == 3 and not res.timed_out
    assert sorted(lines) == sorted(["out", "err", "bar", str(os.getuid()), str(os.getgid()),
                                    str(tmp_path.resolve())])
    assert (tmp_path / "made").stat().st_uid == os.getuid()
    res = runner.run(["sh", "-c", "ls /work /root 2>/dev/null; getent hosts deb.debian.org"],
                     timeout=60)
    assert res.returncode != 0  # nothing else mounted, no network


def test_cancel_all_stops_a_runner_in_another_thread(tmp_path: Path, docker_client,  # type: ignore[no-untyped-def]
                                                    debian_targets) -> None:
    runner = DockerRunner(debian_targets["debian:bookworm"].where, docker_client)
    out: list = []
    th = threading.Thread(target=lambda: out.append(runner.run(["sleep", "120"], cwd=tmp_path)))
    th.start()
    deadline = time.monotonic() + 60
    while not containers_of(docker_client, os.getpid()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (c,) = containers_of(docker_client, os.getpid())
    host = c.attrs["HostConfig"]
    assert host["Privileged"] is False
    assert c.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
    assert host["Binds"] == [f"{tmp_path.resolve()}:{tmp_path.resolve()}:rw"]
    try:
        process.cancel_all()  # what Ctrl-C does: the one registry removes the container
        th.join(timeout=30)
    finally:
        process.rearm()
    assert not th.is_alive() and out[0].returncode == 130
    assert containers_of(docker_client, os.getpid()) == []


def test_a_program_missing_from_the_image_is_an_infra_error(docker_client,  # type: ignore[no-untyped-def]
                                                            debian_targets) -> None:
    from kbuild_py.errors import InfraError

    runner = DockerRunner(debian_targets["debian:trixie"].where, docker_client)
    with pytest.raises(InfraError, match="cannot start 'no-such-program'"):
        runner.run(["no-such-program"], timeout=60)
    assert containers_of(docker_client, os.getpid()) == []
