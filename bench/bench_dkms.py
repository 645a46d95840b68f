"""kmod-py build against a real `dkms build` over the -dkms corpus, on the host's headers.

For every package of tests/dkmscorpus.py (fetched once per machine and cached), from a fresh
copy of its source each time: `kmod-py build SRC --kernel RELEASE` (the whole CLI: start-up,
dkms.conf read, copy, make, post-build check) against `dkms build -m NAME -v VERSION -k
RELEASE` in a private dkms tree (copy, CLEAN, make, strip, sign). Runs are interleaved so
machine load hits both alike; the medians are summed over the corpus.
Goal (issue 10): kmod-py total <= 0.8x dkms total. Needs dkms and the host's kernel headers.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import dkmscorpus  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "2"))
KMOD = str(Path(sys.executable).parent / "kmod-py")
GOAL = 0.8


def host_release() -> str:
    from kbuild_py.kernels.host import host_releases

    releases = [r for r in host_releases() if r.endswith("-amd64")]
    if not releases:
        sys.exit("bench_dkms: no Debian kernel headers on the host "
                 "(apt-get install linux-headers-amd64)")
    return releases[-1]


def main() -> None:
    if shutil.which("dkms") is None:
        sys.exit("bench_dkms: dkms is not installed (apt-get install dkms)")
    os.environ.setdefault("KMOD_PY_CACHE", str(Path("/var/cache/kmod-py-tests")))
    release = host_release()
    corpus = dkmscorpus.fetch_all()
    print(f"corpus: {len(corpus)} packages, kernel {release}, {RUNS} run(s) each, "
          f"{os.cpu_count()} cores")
    rows, total_k, total_d = [], 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-dkms-") as tmp:
        work = Path(tmp)
        for pkg, src in corpus.items():
            ks: list[float] = []
            ds: list[float] = []
            rcs: set[int] = set()
            for _ in range(RUNS):
                copy = dkmscorpus.fresh_copy(src, work / "kmod")
                t = time.perf_counter()
                rc = subprocess.run([KMOD, "build", str(copy), "--kernel", release],
                                    capture_output=True, timeout=1800).returncode
                ks.append(time.perf_counter() - t)
                rcs.add(rc)
                t = time.perf_counter()
                rc, _ = dkmscorpus.dkms_build(src, release, work / "dkms", timeout=1800)
                ds.append(time.perf_counter() - t)
                rcs.add(rc)
            k, d = statistics.median(ks), statistics.median(ds)
            ok = rcs == {0}
            if ok:
                total_k, total_d = total_k + k, total_d + d
            rows.append((pkg, k, d, ok))
    print(f"{'package':24} {'kmod-py':>8} {'dkms':>8} {'ratio':>6}")
    for pkg, k, d, ok in rows:
        note = "" if ok else "  (build fails with both: not in the total)"
        print(f"{pkg:24} {k:7.2f}s {d:7.2f}s {k / d:6.2f}{note}")
    ratio = total_k / total_d if total_d else float("nan")
    print(f"{'total (built)':24} {total_k:7.2f}s {total_d:7.2f}s {ratio:6.2f}  "
          f"goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
