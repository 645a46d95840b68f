"""arm64 `kmod-py test` against a minimal hand-written qemu-system-aarch64 run (the anchor).

hello_module (scaffolded) cross-built for Debian bookworm's current arm64 kernel in its
kmod-py container, then booted under TCG on this amd64 machine:
- anchor: qemu-system-aarch64 -M virt -cpu cortex-a57 with a ready-made busybox-static:arm64
  initramfs whose /init mounts proc/sys, insmods, rmmods and powers off;
- kmod-py: the whole `kmod-py test --ko hello_module.ko --kernel R` process (initramfs, boot,
  verdict, report), kernel image and busybox already cached.
Goal (issue 12): kmod-py <= 1.2x the anchor, measured in the same run (interleaved).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_qemu import KMOD, MINIMAL_INIT, RUNS, interleaved  # noqa: E402


def build_arm64_hello(work: Path, spec: str) -> tuple[Path, str]:
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    project = scaffold_module(ModuleSpec(name="hello_module"), work).path
    subprocess.run([KMOD, "build", str(project), "--kernel", spec], check=True,
                   capture_output=True, timeout=1800)
    (ko,) = (project / ".kmod-py").glob("*-arm64/hello_module.ko")
    return ko, ko.parent.name


def main() -> None:
    from kbuild_py.boot import initramfs
    from kbuild_py.boot.run import find_busybox
    from kbuild_py.debian.linuximage import fetch_kernel
    from kbuild_py.seams import qemu

    with tempfile.TemporaryDirectory(prefix="bench-qemu-arm64-") as tmp:
        work = Path(tmp)
        ko, release = build_arm64_hello(work, "debian:bookworm/arm64")
        image = fetch_kernel(release, "bookworm")
        files = {"bin/busybox": find_busybox(arch="arm64"), "hello_module.ko": ko}
        initrd = initramfs.write(work / "minimal-initrd.gz", initramfs.build(
            files, MINIMAL_INIT, executables=["bin/busybox"]))
        anchor_argv = [
            qemu.MACHINES["arm64"][0], "-M", "virt,accel=tcg", "-cpu", "cortex-a57", "-m", "512",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-kernel", str(image.vmlinuz), "-initrd", str(initrd),
            "-append", "console=ttyAMA0 quiet panic=-1",
        ]
        kmod_argv = [KMOD, "test", "--ko", str(ko), "--kernel", release]
        (anchor, out), (kmod, kout) = interleaved(anchor_argv, kmod_argv)
        assert "hello_module: unloaded" in out, out[-1500:]
        assert "PASS" in kout, kout[-1500:]
        print(f"hello_module on {release} (arm64 on amd64), TCG, median of {RUNS}")
        print(f"minimal qemu-system-aarch64 + busybox  {anchor:6.2f} s  (anchor)")
        print(f"kmod-py test                           {kmod:6.2f} s  ratio {kmod / anchor:5.2f}x"
              f"  goal <= 1.20x -> {'met' if kmod / anchor <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
