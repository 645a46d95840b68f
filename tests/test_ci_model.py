"""kmod-py ci github|gitlab: the job model, both renderings from one source of commands,
golden files, the official schemas (check-jsonschema's vendored copies, no network), and the
CLI's write / --force / --check behaviour."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from kbuild_py import __version__
from kbuild_py.ci import model, render
from kbuild_py.errors import UsageError

GOLDEN = Path(__file__).parent / "golden" / "ci"
KERNELS = ["debian:bookworm", "debian:trixie", "debian:trixie-backports"]
VARIANTS = {  # golden file -> (system, options)
    "github.yml": ("github", {}),
    "github-no-boot.yml": ("github", {"boot": False}),
    "gitlab-dind.yml": ("gitlab", {}),
    "gitlab-socket.yml": ("gitlab", {"runner": "socket"}),
    "gitlab-shell.yml": ("gitlab", {"runner": "shell"}),
    "gitlab-shell-no-boot.yml": ("gitlab", {"runner": "shell", "boot": False}),
}


def generate(system: str, boot: bool = True, specs: list[str] | None = None, **kw: str) -> str:
    p = model.pipeline(system, specs or [], KERNELS, boot=boot, version="0.1.0", **kw)
    return render.render(p)


def load(text: str) -> dict:
    return YAML(typ="safe").load(io.StringIO(text))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rendered_files_match_golden(name: str) -> None:
    system, opts = VARIANTS[name]
    text = generate(system, **opts)
    if os.environ.get("KMOD_PY_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / name).write_text(text)
    assert text == (GOLDEN / name).read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize("boot", [True, False])
def test_github_and_gitlab_run_the_same_commands(boot: bool) -> None:
    steps = model.job_steps(boot)
    gh = load(generate("github", boot=boot))["jobs"]["kernel"]["steps"]
    gh_runs = {s["id"]: s["run"] for s in gh if "run" in s}
    assert gh_runs == {s.key: s.run for s in steps}
    assert [s["id"] for s in gh if "run" in s] == [s.key for s in steps]
    for runner in model.RUNNERS:
        job = load(generate("gitlab", boot=boot, runner=runner))["kmod-py"]
        assert job["script"] == [s.run for s in steps if not s.always]
        if runner == "shell":  # its daemon keeps the images: nothing to save after the job
            assert "after_script" not in job
        else:
            assert job["after_script"] == [s.run for s in steps if s.always]
    # GitHub runs the always-steps whatever happened before, like GitLab's after_script
    assert all(s.get("if") == "always()" for s in gh if s.get("id") in
               {x.key for x in steps if x.always})
    assert ("test" in {s.key for s in steps}) is boot


def test_one_matrix_job_per_kernel_spec() -> None:
    gh = load(generate("github"))["jobs"]["kernel"]
    assert gh["strategy"]["fail-fast"] is False
    assert [m["kernel"] for m in gh["strategy"]["matrix"]["include"]] == KERNELS
    assert gh["env"]["KERNEL"] == "${{ matrix.kernel }}"
    gl = load(generate("gitlab"))["kmod-py"]
    assert [m["KERNEL"] for m in gl["parallel"]["matrix"]] == KERNELS
    assert [m["KERNEL_SLUG"] for m in gl["parallel"]["matrix"]] == [
        "debian-bookworm", "debian-trixie", "debian-trixie-backports"]
    assert gl["cache"]["key"] == "kmod-py-$KERNEL_SLUG" and gl["cache"]["when"] == "always"
    assert gl["artifacts"]["when"] == "always"
    assert gl["artifacts"]["reports"]["junit"] == ".kmod-py/ci/reports/*.xml"


def test_kmod_py_install_defaults_to_this_version_and_is_one_variable() -> None:
    gh = load(generate("github"))["jobs"]["kernel"]["env"]
    assert gh["KMOD_PY_INSTALL"] == "${{ vars.KMOD_PY_INSTALL || 'kmod-py==0.1.0' }}"
    gl = load(generate("gitlab"))["variables"]
    assert gl["KMOD_PY_INSTALL"] == "kmod-py==0.1.0"
    for s in model.job_steps(True):
        assert "pip install" not in s.run or "$KMOD_PY_INSTALL" in s.run


def test_official_actions_at_current_majors() -> None:
    gh = load(generate("github"))["jobs"]["kernel"]["steps"]
    uses = [s["uses"] for s in gh if "uses" in s]
    assert uses == [
        "actions/checkout@v7", "actions/setup-python@v7", "actions/cache/restore@v6",
        "actions/cache/save@v6", "actions/upload-artifact@v7",
    ]
    assert all(int(u.rsplit("@v", 1)[1]) >= 6 for u in uses)


def test_docker_runner_variants() -> None:
    dind = load(generate("gitlab"))["kmod-py"]
    assert dind["services"] == [{"name": "docker:dind", "alias": "docker"}]
    assert dind["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert dind["image"] == model.DEFAULT_IMAGE
    sock = load(generate("gitlab", runner="socket"))["kmod-py"]
    assert "services" not in sock and sock["image"] == model.DEFAULT_IMAGE
    shell = load(generate("gitlab", runner="shell"))
    assert "image" not in shell["kmod-py"] and "services" not in shell["kmod-py"]
    assert "ci save" not in generate("gitlab", runner="shell")
    assert "ci save" in generate("gitlab", runner="socket")


def test_bad_kernel_lists_are_refused() -> None:
    with pytest.raises(UsageError, match="no kernels"):
        model.pipeline("gitlab", [], [], boot=True, version="0.1.0")
    with pytest.raises(UsageError, match="host"):
        model.pipeline("gitlab", ["host"], [], boot=True, version="0.1.0")
    with pytest.raises(UsageError, match="unknown kernel spec"):
        model.pipeline("gitlab", ["linux-6"], [], boot=True, version="0.1.0")
    with pytest.raises(UsageError, match="same job name"):
        model.pipeline("gitlab", ["6.1.0-1+x-amd64", "6.1.0-1-x-amd64"], [], boot=True,
                       version="0.1.0")
    with pytest.raises(UsageError, match="--runner"):
        model.pipeline("gitlab", KERNELS, [], boot=True, version="0.1.0", runner="k8s")


def test_slug() -> None:
    assert model.slug("debian:trixie-backports") == "debian-trixie-backports"
    assert model.slug("6.12.117+deb13-amd64") == "6.12.117-deb13-amd64"
    assert model.slug("image:registry.example/kern:6") == "image-registry.example-kern-6"


def test_command_line_in_header_names_non_default_options() -> None:
    text = generate("gitlab", boot=False, specs=["debian:sid"], runner="shell")
    assert text.startswith("# Generated by kmod-py 0.1.0 from kmod.toml: "
                           "kmod-py ci gitlab --kernel debian:sid --no-boot --runner shell\n")
    assert "# kernels: debian:sid\n" in text


# --- schemas -----------------------------------------------------------------------------


def check_jsonschema(schema: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored schema, in a network namespace without network
    when unshare works here (root): proof that validation needs no download."""
    exe = Path(sys.executable).parent / "check-jsonschema"
    argv = [str(exe), "--builtin-schema", f"vendor.{schema}", *map(str, files)]
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--net", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("schema,prefix", [("github-workflows", "github"),
                                           ("gitlab-ci", "gitlab")])
def test_generated_files_validate_against_the_official_schemas(
        tmp_path: Path, schema: str, prefix: str) -> None:
    files = []
    for name, (system, opts) in VARIANTS.items():
        if system == prefix:
            files.append(tmp_path / name)
            files[-1].write_text(generate(system, **opts))
    res = check_jsonschema(schema, files)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validation done" in res.stdout


def test_schema_validation_can_fail(tmp_path: Path) -> None:
    gl = tmp_path / "bad-gitlab.yml"
    gl.write_text(generate("gitlab").replace("    when: always\n  script:",
                                             "    when: sometimes\n  script:"))
    res = check_jsonschema("gitlab-ci", [gl])
    assert res.returncode == 1 and "sometimes" in res.stdout
    gh = tmp_path / "bad-github.yml"
    gh.write_text(generate("github").replace("    runs-on:", "    runs_on:"))
    res = check_jsonschema("github-workflows", [gh])
    assert res.returncode == 1, res.stdout


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def project(scaffold) -> Path:  # type: ignore[no-untyped-def]
    path = scaffold("hello_module")
    toml = path / "kmod.toml"
    toml.write_text(toml.read_text().replace(
        "kernels = []", 'kernels = ["debian:bookworm", "debian:trixie"]'))
    return path


def cli(*args: str):  # type: ignore[no-untyped-def]
    from kbuild_py.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_writes_then_refuses_to_overwrite(project: Path) -> None:
    res = cli("ci", "github", str(project))
    assert res.exit_code == 0, res.output
    wf = project / ".github/workflows/kmod-py.yml"
    assert f"Generated by kmod-py {__version__}" in wf.read_text()
    wf.write_text("# mine\n")
    res = cli("ci", "github", str(project))
    assert res.exit_code == 2 and "exists" in res.output and "--force" in res.output
    assert wf.read_text() == "# mine\n"
    res = cli("ci", "github", str(project), "--force")
    assert res.exit_code == 0 and "kmod-py" in wf.read_text()
    res = cli("ci", "gitlab", str(project), "--output", str(project / "ci/pipeline.yml"))
    assert res.exit_code == 0 and (project / "ci/pipeline.yml").is_file()
    assert not (project / ".gitlab-ci.yml").exists()


def test_cli_check_names_what_differs(project: Path) -> None:
    res = cli("ci", "gitlab", str(project), "--check")
    assert res.exit_code == 1 and "missing" in res.output
    assert cli("ci", "gitlab", str(project), "--runner", "shell").exit_code == 0
    res = cli("ci", "gitlab", str(project), "--runner", "shell", "--check")
    assert res.exit_code == 0 and "up to date" in res.output
    toml = project / "kmod.toml"
    toml.write_text(toml.read_text().replace('"debian:trixie"]', '"debian:sid"]'))
    res = cli("ci", "gitlab", str(project), "--runner", "shell", "--check")
    assert res.exit_code == 1, res.output
    assert "kernels only in the file: debian:trixie" in res.output
    assert "kernels only in kmod.toml: debian:sid" in res.output
    assert '+      - KERNEL: "debian:sid"' in res.output
    res = cli("ci", "gitlab", str(project), "--check")  # other options than generated with
    assert res.exit_code == 1 and "generated with `kmod-py ci gitlab --runner shell`" in res.output
    ci_file = project / ".gitlab-ci.yml"
    ci_file.write_text(ci_file.read_text().replace("timeout: 1h", "timeout: 2h"))
    toml.write_text(toml.read_text().replace('"debian:sid"]', '"debian:trixie"]'))
    res = cli("ci", "gitlab", str(project), "--runner", "shell", "--check")
    assert res.exit_code == 1 and "1 line(s) differ" in res.output


def test_cli_without_kernels_is_a_usage_error(scaffold) -> None:  # type: ignore[no-untyped-def]
    res = cli("ci", "gitlab", str(scaffold("m")))
    assert res.exit_code == 2 and "no kernels" in res.output


def test_readme_shows_the_files_kmod_py_generates() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in ("github.yml", "gitlab-dind.yml"):
        assert "```yaml\n" + (GOLDEN / name).read_text() + "```\n" in readme, name


def test_job_helpers_fast_path_arguments() -> None:
    from kbuild_py.cli.cimain import parse_fast

    assert parse_fast(["--kernel", "debian:trixie"]) == {"kernel": "debian:trixie", "mirror": None}
    assert parse_fast(["-k", "x", "--mirror=http://m"]) == {"kernel": "x", "mirror": "http://m"}
    for bad in ([], ["--help"], ["--kernel"], ["--kernel", "a", "-k", "b"], ["--kernel", "-x"],
                ["--mirror", "m"], ["--kernel", "a", "extra"]):
        assert parse_fast(bad) is None, bad


def test_job_helpers_through_the_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "kmod-py"
    env = {**os.environ, "GITHUB_OUTPUT": str(tmp_path / "out")}
    res = subprocess.run([str(exe), "ci", "prepare", "--kernel", "host"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 0 and f"kmod-py {__version__}: host is " in res.stdout
    outputs = dict(line.split("=", 1) for line in (tmp_path / "out").read_text().splitlines())
    assert outputs["release"] == os.uname().release
    assert outputs["cache-key"].startswith("kmod-py-host-")
    res = subprocess.run([str(exe), "ci", "save", "-k", "host"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "no kmod-py image to save" in res.stdout
    res = subprocess.run([str(exe), "ci", "save", "--kernel", "nope"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "unknown kernel spec 'nope'" in res.stderr
    res = subprocess.run([str(exe), "ci", "prepare", "--bogus"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2  # typer's usage error
