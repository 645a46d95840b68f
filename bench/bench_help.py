"""`kmod-py --help` start-up time against `python -c pass` (the anchor), same run.

Goal (issue 2): `kmod-py --help` within 0.15 s on these machines. Printed as the
ratio to the bare interpreter start and as the absolute overhead over it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
KMOD = str(Path(sys.executable).parent / "kmod-py")


def timed(argv: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    anchor = timed([sys.executable, "-c", "pass"])
    help_t = timed([KMOD, "--help"])
    new_help = timed([KMOD, "new", "--help"])
    print(f"python -c pass       {anchor * 1000:7.1f} ms  (anchor)")
    print(
        f"kmod-py --help       {help_t * 1000:7.1f} ms  ratio {help_t / anchor:5.2f}x  "
        f"overhead {(help_t - anchor) * 1000:6.1f} ms"
    )
    print(f"kmod-py new --help   {new_help * 1000:7.1f} ms  ratio {new_help / anchor:5.2f}x")
    print(f"goal: kmod-py --help <= 150 ms -> {'met' if help_t <= 0.150 else 'NOT met'}")


if __name__ == "__main__":
    main()
