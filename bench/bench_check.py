"""`kmod-py check` (all rules, one invocation) vs kmod's `modinfo` over a whole kernel package.

Both read the same ~4,000 in-tree modules of linux-image-<release> (fetched once and
cached), given as one argument list, output to /dev/null, page cache warm. kmod-py
checks them against the release's build tree (/lib/modules/R/build), so every rule
runs, including the Module.symvers ones. Goal (issue 4): kmod-py <= 2x modinfo.

usage: bench_check.py [RELEASE]   (default: the newest Debian -amd64 headers installed)
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 5
KMOD = str(Path(sys.executable).parent / "kmod-py")


CPU: dict[str, list[float]] = {}


def timed(argv: list[str]) -> float:
    """Wall time of one run; its CPU time (user+sys, all its processes) goes to CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(argv[0], []).append(cpu)
    return elapsed


def main() -> None:
    from kbuild_py.debian.linuximage import fetch_kernel
    from kbuild_py.kernels.host import host_releases

    if not shutil.which("modinfo"):
        sys.exit("modinfo (Debian package kmod) is needed")
    releases = [r for r in host_releases() if r.endswith("-amd64")]
    release = sys.argv[1] if len(sys.argv) > 1 else (releases[-1] if releases else "")
    if not release:
        sys.exit("no Debian kernel headers installed (apt-get install linux-headers-amd64)")
    files = [str(p) for p in fetch_kernel(release).module_files()]
    # An installed kmod-py has its bytecode compiled (pip does it); an editable checkout
    # under PYTHONDONTWRITEBYTECODE=1 would recompile ~16 modules from source every run.
    import compileall

    import kbuild_py

    compileall.compile_dir(Path(kbuild_py.__file__).parent, quiet=1)
    for f in files:  # warm the page cache for both
        Path(f).read_bytes()
    modinfo = ["modinfo", *files]
    check = [KMOD, "check", "--kernel", release, *files]
    timed(modinfo), timed(check)  # warm-up
    a, b = [], []
    for _ in range(RUNS):  # interleaved, so machine load hits both alike
        a.append(timed(modinfo))
        b.append(timed(check))
    ta, tb = statistics.median(a), statistics.median(b)
    ca, cb = statistics.median(CPU["modinfo"]), statistics.median(CPU[KMOD])
    load = os.getloadavg()[0]
    print(f"{len(files)} modules of linux-image-{release}; {os.cpu_count()} cores, load {load:.1f}")
    print(f"modinfo (anchor)              {ta:6.3f} s wall  {ca:6.3f} s cpu  (medians of {RUNS})")
    print(f"kmod-py check, all rules      {tb:6.3f} s wall  {cb:6.3f} s cpu")
    print(
        f"ratio kmod-py/modinfo         {tb / ta:6.2f}x wall  {cb / ca:5.2f}x cpu"
        "   (goal <= 2x wall)"
    )


if __name__ == "__main__":
    main()
