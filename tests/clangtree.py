"""A clang/lld-built kernel build tree, made once per machine and cached.

No Debian kernel is built with clang, but kernels users build themselves often are. This
makes one from Debian's own linux-source package: `make LLVM=-N tinyconfig`, a small
fragment (64-bit, modules, a serial console, initramfs), `olddefconfig`, `modules_prepare`
(a few minutes on a busy 2-core machine). `bzimage()` builds the kernel itself for booting
(much longer: the `slow` tier). Everything stays under KMOD_PY_CACHE/clang-tree/.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

SOURCE_PACKAGE = "linux-source-6.1"  # bookworm's; its .deb holds linux-source-6.1.tar.xz
FRAGMENT = """
CONFIG_64BIT=y
CONFIG_MODULES=y
CONFIG_MODULE_UNLOAD=y
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_MULTIUSER=y
CONFIG_ACPI=y
CONFIG_PCI=y
"""


def clang_version() -> str | None:
    """The versioned clang installed (clang-14 on bookworm), else None."""
    for major in range(30, 10, -1):
        if shutil.which(f"clang-{major}") and shutil.which(f"ld.lld-{major}"):
            return str(major)
    return None


def _run(argv: list[str], cwd: Path, log: Path, timeout: int) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=True,
                       timeout=timeout)


def clang_tree(cache: Path) -> Path:
    """The prepared tree (cached); CalledProcessError/MirrorError when it cannot be made."""
    from kbuild_py.debian import archive as debian
    from kbuild_py.debian import linuximage as kimage

    major = clang_version()
    assert major, "clang-N and ld.lld-N are needed"
    root = cache / "clang-tree"
    root.mkdir(parents=True, exist_ok=True)
    # v3: ACPI (with PCI, or its tables do not load), so that poweroff ends a QEMU boot
    tree = root / f"linux-clang{major}-v3"
    done = tree / ".kmod-py-prepared"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            return tree
        deb = kimage.fetch_deb(SOURCE_PACKAGE, "bookworm")
        unpacked = root / "deb"
        if not any(unpacked.glob("usr/src/linux-source-*.tar.xz")):
            debian.extract_deb(deb, unpacked)
        tarball = next(unpacked.glob("usr/src/linux-source-*.tar.xz"))
        if tree.exists():
            shutil.rmtree(tree)
        tmp = root / f".extract-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="tar")
        os.replace(next(tmp.iterdir()), tree)
        shutil.rmtree(tmp, ignore_errors=True)
        log = root / "build.log"
        llvm = f"LLVM=-{major}"
        jobs = f"-j{os.cpu_count() or 1}"
        _run(["make", llvm, "tinyconfig"], tree, log, 600)
        with open(tree / ".config", "a") as cfg:
            cfg.write(FRAGMENT)
        _run(["make", llvm, "olddefconfig"], tree, log, 600)
        _run(["make", llvm, jobs, "modules_prepare"], tree, log, 1800)
        done.write_text(llvm + "\n")
    return tree


def bzimage(tree: Path) -> Path:
    """arch/x86/boot/bzImage of the tree, built once (the slow part: minutes)."""
    image = tree / "arch/x86/boot/bzImage"
    llvm = (tree / ".kmod-py-prepared").read_text().strip()
    with open(tree.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.is_file():
            _run(["make", llvm, f"-j{os.cpu_count() or 1}", "bzImage", "modules"], tree,
                 tree.parent / "build.log", 3600)
    return image
