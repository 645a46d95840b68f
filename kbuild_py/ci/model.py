"""The CI job model: one matrix job per kernel spec, and the shell commands each job runs.

Pure data, no I/O. render.py writes the same model as a GitHub Actions workflow and as a
GitLab CI pipeline; the steps' commands are the single source both files use, so what runs
under gitlab-ci-local on a workstation is what runs on GitHub.

Every command runs in the checked-out project directory with these variables set by the CI
file: KERNEL (the matrix's kernel spec), KMOD_PY_INSTALL (what pip installs), KMOD_PY_CI
(.kmod-py/ci, the job's own state: venv, reports) and KMOD_PY_CACHE (kmod-py's cache,
restored and saved by the CI system's cache).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kbuild_py.errors import UsageError
from kbuild_py.kernels.resolve import parse_spec

# Official actions at their current major versions (looked up 2026-12: checkout v7.0.1,
# setup-python v7.0.0, cache v6.1.0 with its restore/save sub-actions, upload-artifact v7;
# upload-artifact has no v8).
ACTIONS = {
    "checkout": "actions/checkout@v7",
    "setup-python": "actions/setup-python@v7",
    "cache-restore": "actions/cache/restore@v6",
    "cache-save": "actions/cache/save@v6",
    "upload-artifact": "actions/upload-artifact@v7",
}
GITHUB_PATH = ".github/workflows/kmod-py.yml"
GITLAB_PATH = ".gitlab-ci.yml"
RUNNERS = ("dind", "socket", "shell")  # GitLab: docker executor + dind / + host socket; shell
DEFAULT_IMAGE = "python:3.12-bookworm"  # GitLab docker executors
DEFAULT_RUNS_ON = "ubuntu-24.04"
DEFAULT_PYTHON = "3.12"
CI_DIR = ".kmod-py/ci"  # inside .kmod-py/, which builds never copy and .gitignore lists
CACHED = (f"{CI_DIR}/cache/", f"{CI_DIR}/venv/")  # what the CI system's cache keeps
REPORTS = f"{CI_DIR}/reports"
ARTIFACTS = (".kmod-py/*/*.ko", ".kmod-py/*/build.log", ".kmod-py/*/test-console.log",
             f"{REPORTS}/")

_KMOD_PY = '"$KMOD_PY_CI/venv/bin/kmod-py"'


@dataclass(frozen=True)
class Step:
    key: str  # GitHub step id
    name: str
    run: str  # POSIX shell, run with `set -e` by both CI systems
    always: bool = False  # also after a failed step (GitLab: after_script)


@dataclass(frozen=True)
class Kernel:
    spec: str
    slug: str  # for cache keys and artifact names: [a-z0-9.-]


@dataclass(frozen=True)
class Pipeline:
    system: str  # "github" | "gitlab"
    kernels: tuple[Kernel, ...]
    boot: bool
    version: str  # kmod-py's version: the default KMOD_PY_INSTALL pins it
    command: str  # the command line that regenerates this file
    steps: tuple[Step, ...]
    runner: str = "dind"  # GitLab
    image: str = DEFAULT_IMAGE  # GitLab docker executors
    runs_on: str = DEFAULT_RUNS_ON  # GitHub
    python: str = DEFAULT_PYTHON  # GitHub

    @property
    def install(self) -> str:
        return f"kmod-py=={self.version}"


SYSTEM_PACKAGES = """\
# QEMU and a static busybox boot the kernels; python3-venv installs kmod-py.
pkgs=""
python3 -c 'import ensurepip' 2>/dev/null || pkgs="$pkgs python3-venv"
{boot}if [ -n "$pkgs" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
fi
"""
BOOT_PACKAGES = """\
command -v qemu-system-x86_64 >/dev/null || pkgs="$pkgs qemu-system-x86"
dpkg -s busybox-static >/dev/null 2>&1 || pkgs="$pkgs busybox-static"
"""
INSTALL = """\
# A venv kept in the CI cache; reinstalled when KMOD_PY_INSTALL (or the wheel it names,
# or the Python) changes.
stamp="$KMOD_PY_INSTALL $(python3 -VV) $PWD"
if [ -f "$KMOD_PY_INSTALL" ]; then stamp="$stamp $(sha256sum "$KMOD_PY_INSTALL" | cut -c1-64)"; fi
if [ "$(cat "$KMOD_PY_CI/venv/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$KMOD_PY_CI/venv"
  python3 -m venv "$KMOD_PY_CI/venv"
  "$KMOD_PY_CI/venv/bin/python" -m pip install -q --disable-pip-version-check $KMOD_PY_INSTALL
  printf '%s\\n' "$stamp" > "$KMOD_PY_CI/venv/stamp"
fi
"""
PREPARE = """\
# Resolve the spec (debian:trixie follows Debian's current kernel) and load its saved image.
{kmod_py} ci prepare --kernel "$KERNEL"
"""
BUILD = """\
mkdir -p "$KMOD_PY_CI/reports"
{kmod_py} build --kernel "$KERNEL" --junit "$KMOD_PY_CI/reports/build-junit.xml"
"""
TEST = """\
{kmod_py} test --kernel "$KERNEL" --junit "$KMOD_PY_CI/reports/test-junit.xml"
"""
SAVE = """\
# Keep the kernel-headers image for the next job (a no-op when the saved one is current).
if [ -x "$KMOD_PY_CI/venv/bin/kmod-py" ]; then {kmod_py} ci save --kernel "$KERNEL"; fi
"""


def job_steps(boot: bool, save_images: bool = True) -> tuple[Step, ...]:
    """The commands of one kernel's job, in order (pure). Without save_images (a shell
    runner, whose Docker daemon keeps the kernel images) there is no save step."""
    fill = {"kmod_py": _KMOD_PY}
    steps = [
        Step("system", "Install system packages",
             SYSTEM_PACKAGES.format(boot=BOOT_PACKAGES if boot else "")),
        Step("install", "Install kmod-py", INSTALL),
        Step("prepare", "Resolve the kernel and restore its image", PREPARE.format(**fill)),
        Step("build", "Build and check", BUILD.format(**fill)),
    ]
    if boot:
        steps.append(Step("test", "Boot the kernel and load the module", TEST.format(**fill)))
    if save_images:
        steps.append(Step("save", "Save the kernel image", SAVE.format(**fill), always=True))
    return tuple(steps)


def slug(spec: str) -> str:
    """A name for cache keys and artifacts: debian:trixie-backports -> debian-trixie-backports."""
    return re.sub(r"[^a-z0-9.]+", "-", spec.lower()).strip("-.") or "kernel"


def kernels_for(specs: list[str]) -> tuple[Kernel, ...]:
    """Validate the kernel specs a pipeline builds; refuse what cannot work on a CI runner."""
    if not specs:
        raise UsageError(
            "no kernels to build: kmod.toml's [build] kernels is empty and no --kernel given",
            'add kernels = ["debian:bookworm", "debian:trixie"] to kmod.toml, or pass --kernel',
        )
    out: list[Kernel] = []
    seen: dict[str, str] = {}
    for spec in dict.fromkeys(specs):
        if parse_spec(spec).kind == "host":
            raise UsageError(
                "kernel spec 'host' means the CI runner's own kernel, which has no headers there",
                "name the kernels: debian:SUITE or a Debian release",
            )
        s = slug(spec)
        if s in seen:
            raise UsageError(f"kernel specs {seen[s]!r} and {spec!r} give the same job name {s!r}")
        seen[s] = spec
        out.append(Kernel(spec, s))
    return tuple(out)


def command_line(system: str, specs: tuple[str, ...], project_specs: list[str], boot: bool,
                 options: dict[str, str]) -> str:
    """The canonical `kmod-py ci ...` command that regenerates a file (recorded in its header)."""
    parts = ["kmod-py", "ci", system]
    if list(specs) != list(dict.fromkeys(project_specs)):
        parts += [f"--kernel {s}" for s in specs]
    if not boot:
        parts.append("--no-boot")
    parts += [f"--{k} {v}" for k, v in options.items()]
    return " ".join(parts)


def pipeline(system: str, specs: list[str], project_specs: list[str], *, boot: bool,
             version: str, runner: str = "dind", image: str = DEFAULT_IMAGE,
             runs_on: str = DEFAULT_RUNS_ON, python: str = DEFAULT_PYTHON) -> Pipeline:
    """The job model for `kmod-py ci SYSTEM` (pure)."""
    if system not in ("github", "gitlab"):
        raise UsageError(f"unknown CI system {system!r}", "use github or gitlab")
    if runner not in RUNNERS:
        raise UsageError(f"--runner {runner!r}", f"use one of: {', '.join(RUNNERS)}")
    kernels = kernels_for(specs or project_specs)
    options: dict[str, str] = {}
    if system == "gitlab":
        if runner != "dind":
            options["runner"] = runner
        if image != DEFAULT_IMAGE and runner != "shell":
            options["image"] = image
    else:
        if runs_on != DEFAULT_RUNS_ON:
            options["runs-on"] = runs_on
        if python != DEFAULT_PYTHON:
            options["python"] = python
    cmd = command_line(system, tuple(k.spec for k in kernels), project_specs, boot, options)
    return Pipeline(system=system, kernels=kernels, boot=boot, version=version, command=cmd,
                    steps=job_steps(boot, save_images=system == "github" or runner != "shell"),
                    runner=runner if system == "gitlab" else "github",
                    image=image, runs_on=runs_on, python=python)
