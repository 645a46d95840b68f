"""The wheel is the product: every data file the code reads at run time ships in it, and the
installed kmod-py (a non-editable install of the wheel, conftest's kmod_py_bin) works from it,
for root and for an ordinary user in the docker group."""

from __future__ import annotations

import ast
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import wheelenv
from conftest import require

from kbuild_py.paths import DATA_DIRS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kbuild_py"
USER = "kmodpy-wheel"  # the ordinary user the docker-tier tests create (when run as root)


def data_paths_in_code() -> set[str]:
    """Every literal argument of a data_path("...") call in kbuild_py: what the code opens."""
    found: set[str] = set()
    for py in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(), str(py))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "data_path"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(str(node.args[0].value))
    return found


def test_data_is_found_only_through_data_path() -> None:
    """A lookup that bypasses paths.data_path (resources.files, __file__, pkgutil) would hide
    a data file from the test below."""
    offenders = []
    for py in PACKAGE.rglob("*.py"):
        if py == PACKAGE / "paths.py":
            continue
        text = py.read_text()
        for needle in ("__file__", "importlib.resources", "from importlib import resources",
                       "pkgutil.get_data", "pkg_resources"):
            if needle in text:
                offenders.append(f"{py.relative_to(ROOT)}: {needle}")
    assert offenders == []


def test_every_runtime_data_file_is_in_the_wheel(kmod_py_bin: Path, tmp_path: Path) -> None:
    used = data_paths_in_code()
    assert {"templates", "containers/debian/Dockerfile"} <= used  # the scan finds them
    wanted: set[str] = set()
    for rel in used | set(DATA_DIRS):
        src = ROOT / rel
        assert src.exists(), f"the code reads {rel}, which the source tree does not have"
        files = [p for p in src.rglob("*") if p.is_file()] if src.is_dir() else [src]
        wanted |= {"kbuild_py/" + str(p.relative_to(ROOT)) for p in files}
    names = set(zipfile.ZipFile(wheelenv.wheel_of(kmod_py_bin)).namelist())
    assert sorted(wanted - names) == []
    # ... and the installed code finds each one inside the installation, not in this checkout
    code = ("import sys\nfrom kbuild_py.paths import data_path\n"
            "for rel in sys.argv[1:]:\n    print(data_path(rel))\n")
    proc = subprocess.run([str(kmod_py_bin.parent / "python"), "-c", code, *sorted(used)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    venv = kmod_py_bin.parent.parent
    for line in proc.stdout.splitlines():
        assert Path(line).is_relative_to(venv) and Path(line).exists(), line


def test_installed_kmod_py_is_the_wheel_and_scaffolds(kmod_py_bin: Path, tmp_path: Path) -> None:
    venv = kmod_py_bin.parent.parent
    where = subprocess.run([str(venv / "bin/python"), "-c",
                            "import kbuild_py; print(kbuild_py.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    proc = subprocess.run([str(kmod_py_bin), "new", "wheel_mod"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "module_init(wheel_mod_mod_init);" in (tmp_path / "wheel_mod/wheel_mod.c").read_text()


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


# --- debian: targets from the wheel, as an ordinary user in the docker group ---------------


@pytest.fixture(scope="module")
def docker_user(docker_client) -> pwd.struct_passwd | None:  # type: ignore[no-untyped-def]
    """An ordinary user in the docker group (created when run as root); None: run as self."""
    if os.geteuid() != 0:
        return None
    require("docker" in {g.gr_name for g in grp.getgrall()}, "a docker group")
    require(shutil.which("useradd") is not None, "useradd")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--groups", "docker", "--shell", "/bin/sh",
                        USER], check=True, capture_output=True, timeout=60)
    return pwd.getpwnam(USER)


def as_user(user: pwd.struct_passwd | None, argv: list[str], cwd: Path,
            timeout: float) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "NO_COLOR": "1", "LC_ALL": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[grp.getgrnam("docker").gr_gid])


@pytest.fixture(scope="module")
def shared_tmp() -> Iterator[Path]:
    """A directory the user may read (pytest's own tmp dirs are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kmod-py-wheel-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def user_kmod_py(docker_user: pwd.struct_passwd | None, kmod_py_bin: Path,
                 shared_tmp: Path) -> Path:
    """The user's own `pip install` of the wheel into a venv in their home (Debian's python3:
    the interpreter behind kmod_py_bin may sit where the user cannot read)."""
    if docker_user is None:
        return kmod_py_bin
    wheel = Path(shutil.copy(wheelenv.wheel_of(kmod_py_bin), shared_tmp))
    venv = Path(docker_user.pw_dir) / "kmod-py-venv"
    steps = [["/usr/bin/python3", "-m", "venv", str(venv)]] if not venv.exists() else []
    steps += [[str(venv / "bin/pip"), "install", "-q", str(wheel)],
              [str(venv / "bin/pip"), "install", "-q", "--force-reinstall", "--no-deps",
               str(wheel)]]
    for argv in steps:
        proc = as_user(docker_user, argv, Path(docker_user.pw_dir), 900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv / "bin/kmod-py"


def user_project(user: pwd.struct_passwd | None, shared: Path, kmod_py_bin: Path) -> Path:
    base = Path(tempfile.mkdtemp(dir=shared))
    base.chmod(0o755)
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    proc = as_user(user, [str(kmod_py_bin), "new", "wheel_mod"], base, 60)
    assert proc.returncode == 0, proc.stderr
    return base / "wheel_mod"


@pytest.mark.docker
@pytest.mark.network
def test_debian_target_builds_from_the_wheel_as_a_docker_group_user(  # type: ignore[no-untyped-def]
        docker_user, debian_targets, user_kmod_py: Path, shared_tmp: Path) -> None:
    """The issue's defect: containers/debian/Dockerfile was missing from the wheel (exit 2)."""
    project = user_project(docker_user, shared_tmp, user_kmod_py)
    proc = as_user(docker_user, [str(user_kmod_py), "build", "--kernel", "debian:bookworm"],
                   project, 1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    release = debian_targets["debian:bookworm"].release
    ko = project / ".kmod-py" / release / "wheel_mod.ko"
    assert ko.is_file(), proc.stdout
    if docker_user is not None:
        assert ko.stat().st_uid == docker_user.pw_uid


@pytest.mark.docker
@pytest.mark.qemu
@pytest.mark.network
def test_debian_target_boots_from_the_wheel_as_a_docker_group_user(  # type: ignore[no-untyped-def]
        docker_user, debian_targets, user_kmod_py: Path, shared_tmp: Path) -> None:
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    project = user_project(docker_user, shared_tmp, user_kmod_py)
    proc = as_user(docker_user, [str(user_kmod_py), "test", "--kernel", "debian:bookworm"],
                   project, 1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"PASS    {debian_targets['debian:bookworm'].release}" in proc.stdout, proc.stdout
