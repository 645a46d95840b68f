"""Clang-built kernels: CONFIG_CC_IS_CLANG=y + CONFIG_LD_IS_LLD=y build with LLVM=-N.

The kernel tree is made once per machine from Debian's linux-source (tests/clangtree.py,
minutes on a busy 2-core machine), hence the `slow` marker (`make test-slow`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require, run_kmod_py


@pytest.fixture(scope="session")
def clang_kdir() -> Path:
    import clangtree

    require(clangtree.clang_version() is not None, "clang-N and ld.lld-N (clang, lld)")
    for tool in ("flex", "bison", "bc"):
        require(shutil.which(tool) is not None, tool)
    return clangtree.clang_tree(Path(os.environ["KMOD_PY_CACHE"]))


@pytest.mark.slow
def test_clang_built_kernel_builds_with_llvm_and_says_so(scaffold, clang_kdir) -> None:  # type: ignore[no-untyped-def]
    import clangtree

    major = clangtree.clang_version()
    project = scaffold("hello_module")
    res = run_kmod_py(["build", str(project), "--kdir", str(clang_kdir)])
    assert res.exit_code == 0, res.output
    assert (f"clang-built kernel (CONFIG_CC_IS_CLANG=y, CONFIG_LD_IS_LLD=y, Debian clang "
            f"version {major}.") in res.output
    assert f"building with LLVM=-{major}" in res.output
    assert "compiler differs" not in res.output
    (ko,) = (project / ".kmod-py").glob("*/hello_module.ko")
    log = (ko.parent / "build.log").read_text()
    assert any(ln.startswith("# make") and f" LLVM=-{major} modules" in ln
               for ln in log.splitlines()), log[:2000]
    comment = subprocess.run(["readelf", "-p", ".comment", str(ko)], capture_output=True,
                             text=True, check=True).stdout
    assert "clang version" in comment and "GCC:" not in comment, comment
    res = run_kmod_py(["check", str(ko), "--kdir", str(clang_kdir)])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
@pytest.mark.qemu
def test_clang_built_kernel_boots_and_loads_the_module(scaffold, clang_kdir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The kernel itself (bzImage, many minutes the first time), booted with the module."""
    import clangtree

    from kbuild_py.boot import run as testrun
    from kbuild_py.debian.linuximage import KernelImage
    from kbuild_py.kernels.buildtree import BuildTree

    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    bzimage = clangtree.bzimage(clang_kdir)
    release = BuildTree.open(clang_kdir).release
    root = tmp_path / "image"
    (root / "boot").mkdir(parents=True)
    (root / "lib/modules" / release / "kernel").mkdir(parents=True)
    shutil.copy(bzimage, root / "boot" / f"vmlinuz-{release}")
    project = scaffold("hello_module")
    res = run_kmod_py(["build", str(project), "--kdir", str(clang_kdir)])
    assert res.exit_code == 0, res.output
    (ko,) = (project / ".kmod-py").glob("*/hello_module.ko")
    job = testrun.KernelTest("clang", release, (ko,), tmp_path / "out")
    result = testrun.run_one(job, testrun.TestOptions(accel="tcg", timeout=300),
                             fetch=lambda *_a: KernelImage(release, root))
    console = (tmp_path / "out" / testrun.CONSOLE_LOG).read_text(errors="replace")
    assert result.status == "pass", (result.status, result.error,
                                     result.verdict and result.verdict.problems, console[-3000:])
