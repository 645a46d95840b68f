"""kmod-py as users install it: the wheel built from this checkout, installed (not editable)
into a virtual environment of its own.

`make test` runs `python tests/wheelenv.py .venv-wheel` before pytest and passes the
installed console script on as KMOD_PY_BIN; the `kmod_py_bin` fixture does the same when
pytest runs alone. The integration tiers (headers, docker, qemu) run that script, so a file
missing from the wheel fails them as it would fail a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP = ["-m", "pip", "--disable-pip-version-check", "-q"]


def build_wheel(dest: Path) -> Path:
    """The wheel of this checkout, built into dest (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    # hatchling comes with the dev extra: no isolated build environment to set up each time
    _run([sys.executable, *PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest),
          str(ROOT)])
    (wheel,) = dest.glob("kmod_py-*.whl")
    return wheel


def install(venv: Path) -> Path:
    """Build the wheel, install it into venv (created if missing); the installed kmod-py."""
    venv = venv.resolve()
    py = venv / "bin" / "python"
    base = base_python()
    cfg = venv / "pyvenv.cfg"
    if cfg.exists() and f"home = {Path(base).parent}\n" not in cfg.read_text():
        shutil.rmtree(venv / "bin")  # made from another interpreter: start again
    if not py.exists():
        _run([base, "-m", "venv", "--clear", str(venv)])
    wheel = build_wheel(venv / "wheel")
    _run([str(py), *PIP, "install", str(wheel)])  # dependencies, once
    _run([str(py), *PIP, "install", "--force-reinstall", "--no-deps", str(wheel)])
    where = _run([str(py), "-c", "import kbuild_py; print(kbuild_py.__file__)"], cwd=venv)
    if not where.startswith(str(venv)):
        raise SystemExit(f"{venv}: kbuild_py is imported from {where}, not from the wheel")
    os.chmod(venv, 0o755)  # the packaging test runs it as an unprivileged user
    return venv / "bin" / "kmod-py"


def base_python() -> str:
    """The interpreter the venv is made from: the system's python3 when it is new enough, so
    that other users (the tests' uid 4242 and docker-group user) can run the installed kmod-py;
    else this one (which may live under a private home such as /root/.pyenv)."""
    system = "/usr/bin/python3"
    try:
        out = _run([system, "-c", "import sys, venv; print(sys.version_info >= (3, 11))"])
    except (SystemExit, OSError):
        return sys.executable
    return system if out == "True" else sys.executable


def wheel_of(kmod_py: Path) -> Path:
    """The wheel an install() made, from its kmod-py script."""
    (wheel,) = (kmod_py.parent.parent / "wheel").glob("kmod_py-*.whl")
    return wheel


def _run(argv: list[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout.strip()


if __name__ == "__main__":
    print(install(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".venv-wheel")))
