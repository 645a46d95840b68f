"""Container builds: kmod-py's Docker backend against hand-written `docker run … make`.

1. hello, warm image: `kmod-py build --kernel debian:bookworm` (whole CLI: start-up,
   spec resolution, source copy, container, check) and kmod-py's DockerRunner alone,
   against `docker run --rm -u UID:GID -v DIR:DIR -w DIR IMAGE make …` (the anchor) in
   the same image. Goal (issue 3): kmod-py build <= anchor + 0.5 s.
2. 3-kernel matrix (bookworm, trixie, trixie-backports) with -j2 against the same three
   builds one after another (build_all jobs=2 vs jobs=1, make -j1 each).
   Goal: wall <= 0.7x the sequential sum.
Every build starts from clean sources; runs are interleaved. Needs the Docker daemon
(images are built once). Load from other work on the machine adds noise: compare ratios.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 7
KMOD = str(Path(sys.executable).parent / "kmod-py")
SPECS = ("debian:bookworm", "debian:trixie", "debian:trixie-backports")


def median_times(fns, runs: int = RUNS) -> list[float]:  # type: ignore[no-untyped-def]
    """Median wall time of each fn; runs are interleaved so machine load hits all alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - t)
    return [statistics.median(s) for s in samples]


def fresh(project: Path) -> Path:
    """A clean copy of the project's sources (no build outputs, no .kmod-py)."""
    dest = project.parent / "run"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns(".kmod-py", "*.o", "*.ko"))
    return dest


def main() -> None:
    from kbuild_py.build.plan import BuildOptions
    from kbuild_py.build.run import build_all
    from kbuild_py.kernels.resolve import resolve_spec
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    targets = [resolve_spec(s, progress=lambda line: print("  " + line)) for s in SPECS]
    work = Path(tempfile.mkdtemp(prefix="kmod-py-bench-"))
    try:
        project = scaffold_module(ModuleSpec(name="hello"), work).path
        bookworm = targets[0]
        argv = ["make", "-C", bookworm.kdir, "-j1", "modules"]

        def anchor() -> None:
            d = fresh(project)
            subprocess.run(
                ["docker", "run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}", "-v",
                 f"{d}:{d}", "-w", str(d), "--network", "none", bookworm.where,
                 *argv[:3], f"M={d}", *argv[3:]],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

        def runner() -> None:
            d = fresh(project)
            res = bookworm.runner.run([*argv[:3], f"M={d}", *argv[3:]], cwd=d, timeout=600)
            assert res.returncode == 0

        def cli() -> None:
            d = fresh(project)
            subprocess.run([KMOD, "build", "--kernel", "debian:bookworm", "--make-jobs", "1"],
                           cwd=d, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

        anchor()  # warm the page cache and the image layers
        a, r, c = median_times([anchor, runner, cli])
        print(f"hello, bookworm image, median of {RUNS}:")
        print(f"  docker run … make (anchor)   {a:6.2f} s")
        print(f"  DockerRunner.run             {r:6.2f} s  ratio {r / a:4.2f}x  "
              f"overhead {r - a:+5.2f} s")
        print(f"  kmod-py build (whole CLI)    {c:6.2f} s  ratio {c / a:4.2f}x  "
              f"overhead {c - a:+5.2f} s")
        print(f"  goal: kmod-py build <= anchor + 0.5 s -> {'met' if c - a <= 0.5 else 'NOT met'}")

        opts = BuildOptions(make_jobs=1)

        def matrix(jobs: int) -> None:
            d = fresh(project)
            results = build_all(d, targets, opts, jobs=jobs)
            assert all(r.ok for r in results), [r.log_path for r in results if not r.ok]

        seq, par = median_times([lambda: matrix(1), lambda: matrix(2)], runs=3)
        print("3-kernel matrix (bookworm, trixie, trixie-backports), make -j1, median of 3:")
        print(f"  one after another (anchor)   {seq:6.2f} s")
        print(f"  -j2                          {par:6.2f} s  ratio {par / seq:4.2f}x")
        print(f"  goal: -j2 wall <= 0.7x sequential -> {'met' if par <= 0.7 * seq else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
