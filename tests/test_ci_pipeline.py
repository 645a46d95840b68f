"""The generated GitLab pipeline, really run: gitlab-ci-local (pinned 4.73.0, installed by
scripts/setup-system.sh) with the shell executor runs `kmod-py ci gitlab --runner shell`'s
file in a git repository of a scaffolded module, installing kmod-py from this checkout's
wheel. Every job must pass and leave a JUnit report with one case for its kernel; a broken
module fails its job and the pipeline.

The jobs reuse this machine's kmod-py cache and Docker images (KMOD_PY_CACHE), and pip
installs from a wheelhouse kept in that cache, so a second run costs a few seconds per job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.docker  # not slow: `make test` runs the pipeline (3-6 min)

GCL_VERSION = "4.73.0"
KERNELS = ["debian:bookworm", "debian:trixie", "debian:trixie-backports"]
PIPELINE_TIMEOUT = 1500


@pytest.fixture(scope="session")
def gitlab_ci_local() -> str:
    exe = shutil.which("gitlab-ci-local")
    require(exe is not None, "gitlab-ci-local (sh scripts/setup-system.sh installs it)")
    assert exe is not None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == GCL_VERSION, version.stdout + version.stderr
    for tool in ("git", "rsync"):
        require(shutil.which(tool) is not None, tool)
    return exe


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kmod-py built from this checkout, what KMOD_PY_INSTALL points the jobs at."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (found,) = out.glob("kmod_py-*.whl")
    return found


@pytest.fixture(scope="session")
def wheelhouse(wheel: Path) -> Path:
    """kmod-py's dependencies as wheels in the machine's cache: the jobs' pip runs offline."""
    house = Path(os.environ["KMOD_PY_CACHE"]) / "ci-wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house), "--find-links",
            str(house)]
    offline = subprocess.run([*base, "--no-index", str(wheel)], capture_output=True,
                             timeout=600)
    if offline.returncode != 0:  # first run on this machine (or new dependencies)
        subprocess.run([*base, str(wheel)], check=True, capture_output=True, timeout=900)
    (house / wheel.name).unlink(missing_ok=True)  # only the dependencies stay
    return house


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One git repository for the module's pipelines: gitlab-ci-local keeps its job caches
    (the venv kmod-py is installed in) in it, as a GitLab project keeps them between runs."""
    from kbuild_py.scaffold.scaffold import ModuleSpec, scaffold_module

    path = scaffold_module(ModuleSpec(name="hello_module"), tmp_path_factory.mktemp("ci")).path
    subprocess.run(["git", "init", "-q", str(path)], check=True, timeout=60)
    return path


def make_project(path: Path, kernels: list[str], *, boot: bool, broken: bool = False) -> Path:
    """Commit the module (broken or not) and its generated pipeline for these kernels."""
    from typer.testing import CliRunner

    from kbuild_py.cli import app
    from kbuild_py.scaffold.scaffold import ModuleSpec, render

    for name, text in render(ModuleSpec(name="hello_module")).items():
        (path / name).write_text(text)
    toml = path / "kmod.toml"
    toml.write_text(toml.read_text().replace("kernels = []", f"kernels = {kernels!r}"
                                             .replace("'", '"')))
    if broken:
        src = path / "hello_module.c"
        src.write_text(src.read_text().replace('pr_info("loaded\\n");', 'pr_info("loaded\\n")'))
        assert 'pr_info("loaded\\n")\n' in src.read_text()
    args = ["ci", "gitlab", str(path), "--runner", "shell", "--force",
            *([] if boot else ["--no-boot"])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    git = ["git", "-c", "user.name=kmod-py tests", "-c", "user.email=tests@kmod-py.invalid"]
    subprocess.run([*git, "-C", str(path), "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "-C", str(path), "commit", "-qm", "module", "--allow-empty"],
                   check=True, timeout=60)
    shutil.rmtree(path / ".gitlab-ci-local" / "artifacts", ignore_errors=True)
    return path


def run_pipeline(exe: str, project: Path, wheel: Path, house: Path) -> subprocess.CompletedProcess:
    argv = [
        exe, "--shell-isolation", "--no-color", "--concurrency", "3",
        "--variable", f"KMOD_PY_INSTALL={wheel}",
        "--variable", f"KMOD_PY_CACHE={os.environ['KMOD_PY_CACHE']}",
        "--variable", f"PIP_FIND_LINKS={house}",
        "--variable", "PIP_NO_INDEX=1",
    ]
    return subprocess.run(argv, cwd=project, capture_output=True, text=True,
                          timeout=PIPELINE_TIMEOUT)


def reports(project: Path, name: str) -> list[ET.Element]:
    """The JUnit reports the jobs left as artifacts (one file per job)."""
    files = sorted((project / ".gitlab-ci-local/artifacts").glob(f"*/.kmod-py/ci/reports/{name}"))
    return [ET.parse(f).getroot() for f in files]


def cases(root: ET.Element) -> list[ET.Element]:
    return list(root.iter("testcase"))


def test_three_kernel_pipeline_passes_with_one_junit_case_per_kernel(
        gitlab_ci_local: str, wheel: Path, wheelhouse: Path, repo: Path) -> None:
    project = make_project(repo, KERNELS, boot=False)
    res = run_pipeline(gitlab_ci_local, project, wheel, wheelhouse)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    for spec in KERNELS:
        assert f"PASS  kmod-py: [{spec}," in log, log[-6000:]
    roots = reports(project, "build-junit.xml")
    assert len(roots) == 3, log[-4000:]
    seen = []
    for root in roots:
        (case,) = cases(root)
        assert case.find("failure") is None and case.find("error") is None
        seen.append(case.get("classname", "") + " " + case.get("name", ""))
    for spec in KERNELS:
        assert sum(spec in s for s in seen) >= 1, seen
    kos = list((project / ".gitlab-ci-local/artifacts").glob("*/.kmod-py/*/hello_module.ko"))
    assert len(kos) == 3


@pytest.mark.qemu
def test_pipeline_job_with_boot_test(
        gitlab_ci_local: str, wheel: Path, wheelhouse: Path, repo: Path) -> None:
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    project = make_project(repo, ["debian:bookworm"], boot=True)
    res = run_pipeline(gitlab_ci_local, project, wheel, wheelhouse)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    assert "PASS  kmod-py: [debian:bookworm," in log
    (root,) = reports(project, "test-junit.xml")
    (case,) = cases(root)
    assert "debian:bookworm" in case.get("name", "")
    assert case.find("failure") is None and case.find("error") is None
    assert list((project / ".gitlab-ci-local/artifacts").glob("*/.kmod-py/*/test-console.log"))


def test_a_broken_module_fails_its_job_and_the_pipeline(
        gitlab_ci_local: str, wheel: Path, wheelhouse: Path, repo: Path) -> None:
    project = make_project(repo, ["debian:bookworm"], boot=False, broken=True)
    res = run_pipeline(gitlab_ci_local, project, wheel, wheelhouse)
    log = res.stdout + res.stderr
    assert res.returncode != 0, log[-6000:]
    assert "FAIL  kmod-py: [debian:bookworm," in log
    (root,) = reports(project, "build-junit.xml")
    (case,) = cases(root)
    failure = case.find("failure")
    assert failure is not None
    assert "error: expected" in failure.get("message", "")
    assert list((project / ".gitlab-ci-local/artifacts").glob("*/.kmod-py/*/build.log"))
