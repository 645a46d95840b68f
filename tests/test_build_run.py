"""Build planning and orchestration with a fake runner at the process seam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from kbuild_py.build.plan import BuildOptions, kernel_compiler_program, make_argv
from kbuild_py.build.run import build_all, parse_diagnostic
from kbuild_py.build.sources import source_files, sync_sources
from kbuild_py.kernels.buildtree import BuildTree
from kbuild_py.kernels.spec import Target
from kbuild_py.seams.process import Result


class FakeRunner:
    """Plays make: prints given lines, writes a .ko into cwd, returns rc."""

    def __init__(self, lines: Sequence[str] = (), rc: int = 0, ko: str | None = None) -> None:
        self.lines, self.rc, self.ko = lines, rc, ko
        self.calls: list[list[str]] = []

    def run(
        self, argv, *, cwd=None, env: Mapping[str, str] | None = None, timeout=None, on_line=None
    ) -> Result:  # type: ignore[no-untyped-def]
        self.calls.append(list(argv))
        for line in self.lines:
            if on_line:
                on_line(line)
        if self.ko and cwd is not None:
            (Path(cwd) / self.ko).write_bytes(b"\x7fELF")
        return Result(self.rc)


def fake_tree(
    tmp_path: Path, release: str = "6.1.0-9-amd64", cc: str = "gcc-12 (Debian) 12"
) -> BuildTree:
    root = tmp_path / f"tree-{release}"
    (root / "include/generated").mkdir(parents=True)
    (root / "include/config").mkdir(parents=True)
    (root / "include/generated/utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    (root / "include/config/auto.conf").write_text(
        f'CONFIG_SMP=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_X86_64=y\nCONFIG_CC_VERSION_TEXT="{cc}"\n'
    )
    return BuildTree.open(root)


def target(tmp_path: Path, runner, release: str = "6.1.0-9-amd64", where: str = "img") -> Target:  # type: ignore[no-untyped-def]
    tree = fake_tree(tmp_path, release)
    return Target(
        spec=release, release=release, tree=tree, kdir="/kdir", runner=runner, where=where
    )


def project(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "Kbuild").write_text("obj-m := m.o\n")
    (p / "m.c").write_text("int x;\n")
    (p / "m.o").write_text("stale object")
    (p / ".kmod-py").mkdir()
    (p / "sub").mkdir()
    (p / "sub" / "h.h").write_text("#define X 1\n")
    return p


def test_make_argv_container_uses_kernel_compiler(tmp_path: Path) -> None:
    t = target(tmp_path, FakeRunner())
    argv = make_argv(t, Path("/out"), BuildOptions(make_jobs=3, make_vars={"W": "1"}))
    assert argv == ["make", "-C", "/kdir", "M=/out", "-j3", "W=1", "CC=gcc-12", "modules"]
    argv = make_argv(t, Path("/out"), BuildOptions(make_jobs=1, make_vars={"LLVM": "1"}))
    assert "CC=gcc-12" not in argv and "LLVM=1" in argv


def test_kernel_compiler_program() -> None:
    assert kernel_compiler_program("gcc-14 (Debian 14.2.0-19) 14.2.0") == "gcc-14"
    assert kernel_compiler_program("x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0") == (
        "x86_64-linux-gnu-gcc-14"
    )
    assert kernel_compiler_program("gcc (GCC) 13.1") is None
    assert kernel_compiler_program("Debian clang version 19") is None
    assert kernel_compiler_program("") is None


def test_parse_diagnostics_and_path_mapping() -> None:
    d = parse_diagnostic("/o/m.c:3:5: error: expected ';' before '}' token", Path("/o"), Path("/p"))
    assert d and d.kind == "error" and d.text.startswith("/p/m.c:3:5: error") and d.line == 3
    d = parse_diagnostic("/o/m.c:9:1: warning: no previous prototype for 'f'")
    assert d and d.kind == "warning"
    d = parse_diagnostic('ERROR: modpost: "foo" [/o/m.ko] undefined!')
    assert d and d.kind == "error"
    assert parse_diagnostic("  CC [M]  /o/m.o") is None
    assert (
        parse_diagnostic("make[2]: *** [scripts/Makefile.build:250: /o/m.o] Error 1").kind
        == "error"
    )


def test_sources_copied_without_build_outputs(tmp_path: Path) -> None:
    p = project(tmp_path)
    assert sorted(map(str, source_files(p))) == ["Kbuild", "m.c", "sub/h.h"]
    out = tmp_path / "out"
    sync_sources(p, out)
    assert (out / "sub/h.h").read_text() == "#define X 1\n" and not (out / "m.o").exists()
    mtime = (out / "m.c").stat().st_mtime_ns
    sync_sources(p, out)
    assert (out / "m.c").stat().st_mtime_ns == mtime


def test_build_all_runs_each_kernel_and_keeps_going(tmp_path: Path) -> None:
    p = project(tmp_path)
    ok = target(tmp_path, FakeRunner(["  CC [M]  m.o"], 0, "m.ko"), "6.1.0-9-amd64")
    bad_lines = [f"{p}/.kmod-py/6.12.0-1-amd64/m.c:1:1: error: boom", "make: *** [x] Error 2"]
    bad = target(tmp_path, FakeRunner(bad_lines, 2), "6.12.0-1-amd64")
    seen: list[str] = []
    results = build_all(
        p,
        [ok, bad],
        BuildOptions(run_checks=False),
        jobs=2,
        on_line=lambda t, line: seen.append(t.release),
    )
    assert [r.target.release for r in results] == ["6.1.0-9-amd64", "6.12.0-1-amd64"]
    assert results[0].built and results[0].modules == [p / ".kmod-py/6.1.0-9-amd64/m.ko"]
    assert not results[1].built
    assert results[1].errors[0].text == f"{p}/m.c:1:1: error: boom"
    log = (p / ".kmod-py/6.12.0-1-amd64/build.log").read_text()
    assert "error: boom" in log and "# exit 2" in log
    assert set(seen) == {"6.1.0-9-amd64", "6.12.0-1-amd64"}
    assert (p / "m.o").read_text() == "stale object"  # user's tree untouched


def test_fail_fast_stops_after_first_failure(tmp_path: Path) -> None:
    p = project(tmp_path)
    first = target(tmp_path, FakeRunner([], 2), "1.0.0-1-amd64")
    second_runner = FakeRunner([], 0, "m.ko")
    second = target(tmp_path, second_runner, "2.0.0-1-amd64")
    results = build_all(p, [first, second], BuildOptions(run_checks=False), jobs=1, fail_fast=True)
    assert len(results) == 1 and second_runner.calls == []


def test_same_size_edit_within_one_second_is_copied(tmp_path: Path) -> None:
    import os

    project, out = tmp_path / "p", tmp_path / "out"
    project.mkdir()
    src = project / "m.c"
    src.write_text("return 0;\n")
    os.utime(src, ns=(1_767_225_600_100_000_000,) * 2)
    sync_sources(project, out)
    src.write_text("return 1;\n")  # same size, same whole second
    os.utime(src, ns=(1_767_225_600_900_000_000,) * 2)
    sync_sources(project, out)
    assert (out / "m.c").read_text() == "return 1;\n"


def test_broken_links_and_fifos_are_not_copied(tmp_path: Path) -> None:
    import os

    project, out = tmp_path / "p", tmp_path / "out"
    project.mkdir()
    (project / "m.c").write_text("int x;\n")
    (project / ".#m.c").symlink_to("user@host.1234")  # Emacs' lock file: a dangling link
    os.mkfifo(project / "pipe")
    assert [str(p) for p in source_files(project)] == ["m.c"]
    sync_sources(project, out)
    assert sorted(p.name for p in out.iterdir()) == [".kmod-py-sources", "m.c"]


def test_a_release_that_is_not_one_path_component_is_refused(tmp_path: Path) -> None:
    import pytest

    from kbuild_py.errors import UsageError
    from kbuild_py.paths import output_dir

    assert output_dir(tmp_path, "6.1.0-56-amd64") == tmp_path / ".kmod-py" / "6.1.0-56-amd64"
    for bad in ("", ".", "..", "../../victim", "6.1/x"):
        with pytest.raises(UsageError, match="not a plain name"):
            output_dir(tmp_path, bad)


def test_cli_kernel_and_kdir_together_are_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kbuild_py.cli import app

    (tmp_path / "Kbuild").write_text("obj-m := m.o\n")
    res = CliRunner().invoke(
        app, ["build", str(tmp_path), "--kdir", str(tmp_path), "--kernel", "debian:trixie"]
    )
    assert res.exit_code == 2 and "--kernel and --kdir both given" in res.output


def test_makefile_fatal_errors_are_diagnostics() -> None:
    # $(error ...) in the user's Kbuild, or Kbuild refusing M= with a space in it
    d = parse_diagnostic("/o/Kbuild:2: *** CONFIG_FOO is required.  Stop.", Path("/o"), Path("/p"))
    assert d and d.kind == "error" and d.text.startswith("/p/Kbuild:2: ***") and d.line == 2
    d = parse_diagnostic(
        "/usr/src/linux-headers-6.1.0-56-common/Makefile:157: *** building multiple external "
        "modules is not supported.  Stop."
    )
    assert d and d.kind == "error"


def test_a_source_removed_from_the_project_leaves_the_output_dir(tmp_path: Path) -> None:
    project, out = tmp_path / "p", tmp_path / "out"
    project.mkdir()
    (project / "Kbuild").write_text("obj-m := m.o\n")
    (project / "gone.h").write_text("#define GONE 1\n")
    (project / b"not-utf8-\xff.txt".decode("utf-8", "surrogateescape")).write_text("x")
    sync_sources(project, out)
    (out / "build.log").write_text("kmod-py's own file\n")
    (project / "gone.h").unlink()
    sync_sources(project, out)
    assert not (out / "gone.h").exists()  # a stale copy would hide the missing header
    assert (out / "Kbuild").is_file() and (out / "build.log").is_file()
