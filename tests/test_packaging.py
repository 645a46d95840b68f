"""The wheel ships the templates; an installed kmod-py scaffolds from them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_scaffolds(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    wheel = next(dist.glob("kmod_py-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "kbuild_py/templates/module.c.j2" in names
    assert "kbuild_py/templates/Makefile.j2" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    # Dependencies come from this environment's site-packages through PYTHONPATH
    # (no .pth processing there, so the editable kbuild_py stays out of sight).
    subprocess.run(
        [
            str(vpy),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [str(vpy), "-c", "import kbuild_py; print(kbuild_py.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout
    proc = subprocess.run(
        [str(venv / "bin" / "kmod-py"), "new", "wheel_mod"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "module_init(wheel_mod_mod_init);" in (work / "wheel_mod" / "wheel_mod.c").read_text()


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\nfrom kbuild_py.cli import app\n"
        "try:\n    app(['--help'], prog_name='kmod-py')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('jinja2', 'elftools', 'docker', 'cryptography', 'asn1crypto')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
