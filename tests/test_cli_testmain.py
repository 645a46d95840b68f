"""`kmod-py test` without typer (kbuild_py.cli.testmain): the plain forms of its options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kbuild_py.cli.testmain import parse_fast


def test_plain_forms_parse() -> None:
    opts = parse_fast(["proj", "-k", "debian:bookworm", "--kernel=debian:trixie/arm64", "-j", "2",
                       "--ko", "a.ko", "-p", "x=1", "--timeout", "30", "--json", "-v",
                       "-m", "a", "--module", "b", "--make-var", "W=1"])
    assert opts is not None
    assert opts["path"] == Path("proj") and opts["kernel"] == ["debian:bookworm",
                                                               "debian:trixie/arm64"]
    assert opts["ko"] == [Path("a.ko")] and opts["param"] == ["x=1"]
    assert opts["module"] == ["a", "b"] and opts["make_var"] == ["W=1"]
    assert opts["jobs"] == 2 and opts["timeout"] == 30.0 and opts["as_json"] and opts["verbose"]
    assert parse_fast([]) == {
        "path": Path("."), "kernel": None, "ko": None, "param": None, "module": None,
        "make_var": None, "script": None,
        "timeout": None, "jobs": 1, "accel": "auto", "as_json": False, "junit": None,
        "mirror": None, "verbose": False, "sig_enforce": False, "sign": False, "no_wait": False,
    }  # fmt: skip
    enforced = parse_fast(["--ko", "m.ko", "--sig-enforce"])
    assert enforced is not None and enforced["sig_enforce"] and not enforced["sign"]
    flags = parse_fast(["--sign", "--no-wait"])
    assert flags is not None and flags["sign"] and flags["no_wait"] and not flags["sig_enforce"]


def test_fast_path_knows_every_option_of_the_test_command() -> None:
    """An option added to `kmod-py test` must be added to the typer-free fast path too (and
    to test_plain_forms_parse's expected dict): same option names, same parameters."""
    import typer.main

    from kbuild_py.cli import app, testmain

    test = typer.main.get_command(app).commands["test"]  # type: ignore[attr-defined]
    typer_options = {opt: p.name for p in test.params if p.param_type_name == "option"
                     for opt in p.opts if p.name != "help"}
    fast = {opt: name for opt, (name, _, _) in testmain._OPTIONS.items()}
    assert fast == typer_options
    default = parse_fast([])
    assert default is not None
    assert set(default) == {p.name for p in test.params}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["-h"], ["--", "p"], ["a", "b"], ["-j", "two"], ["--timeout", "x"],
     ["--kernel"], ["--json=1"], ["--accel"], ["-j", "1", "-j", "2"], ["--bogus"], [""]],
)  # fmt: skip
def test_anything_unusual_goes_to_typer(args: list[str]) -> None:
    assert parse_fast(args) is None


def test_the_console_script_does_not_import_typer_for_plain_test_lines(tmp_path: Path) -> None:
    """A prebuilt module that is not a module: the same exit 2 and message, without building
    typer's commands."""
    bad = tmp_path / "bad.ko"
    bad.write_text("not a module")
    code = ("import sys, runpy; sys.argv = ['kmod-py', 'test', '--ko', sys.argv[1]]\n"
            "try:\n    runpy.run_module('kbuild_py', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    print('exit', e.code, 'kbuild_py.cli.test' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert "not an ELF kernel module" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "exit 2 False"  # typer's command was never built
