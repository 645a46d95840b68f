"""`kmod-py check` without typer (kbuild_py.cli.checkmain): same arguments, same results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import installed_kmod_py

from kbuild_py.cli.checkmain import parse_fast


def test_plain_forms_parse() -> None:
    opts = parse_fast(["a.ko", "--kernel", "R", "-r", "d1", "--recursive=d2", "--json", "b.ko"])
    assert opts is not None
    assert opts["files"] == ["a.ko", "b.ko"] and opts["kernel"] == "R" and opts["as_json"]
    assert opts["recursive"] == [Path("d1"), Path("d2")] and opts["kdir"] is None
    assert parse_fast([]) == {
        "files": None, "as_json": False, "kernel": None, "field": None, "kdir": None,
        "junit": None, "recursive": [], "extra_symbols": [], "cert": [], "verbose": False,
    }  # fmt: skip
    assert parse_fast(["a.ko", "-v"])["verbose"] is True  # type: ignore[index]
    assert parse_fast(["a.ko", "--verbose"])["verbose"] is True  # type: ignore[index]
    assert parse_fast(["a.ko", "--cert", "c.der", "--cert=d.pem"])["cert"] == [  # type: ignore[index]
        Path("c.der"),
        Path("d.pem"),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"], ["-h"], ["--list-rules"], ["--", "a.ko"], ["-"], ["--kernel"], ["-k", "-x"],
        ["--kernel", "a", "--kernel", "b"], ["--json=1"], ["--kdir="], ["-kR"], ["--bogus"],
        [""], ["--kern", "R"],
    ],
)  # fmt: skip
def test_anything_unusual_goes_to_typer(args: list[str]) -> None:
    assert parse_fast(args) is None


def _run(args: list[str], typer_path: bool) -> subprocess.CompletedProcess[bytes]:
    if typer_path:  # the same command line through typer (the package's app object)
        code = "import sys\nfrom kbuild_py.cli import app\napp(sys.argv[1:], prog_name='kmod-py')"
        argv = [str(installed_kmod_py().parent / "python"), "-c", code, "check", *args]
    else:
        argv = [str(installed_kmod_py()), "check", *args]
    return subprocess.run(argv, capture_output=True, timeout=120)


@pytest.mark.headers
@pytest.mark.parametrize("case", ["good", "unreadable", "usage", "json"])
def test_same_output_and_exit_as_typer(built_hello: Path, host_release: str, tmp_path: Path,
                                       case: str) -> None:  # fmt: skip
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"not an elf")
    args = {
        "good": [str(built_hello), "--kernel", host_release],
        "unreadable": [str(built_hello), str(bad)],
        "usage": ["--kernel", host_release, "--kdir", str(tmp_path), str(built_hello)],
        "json": ["--json", str(built_hello)],
    }[case]
    fast, slow = _run(args, False), _run(args, True)
    assert fast.returncode == slow.returncode
    assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr)
    assert fast.returncode == {"good": 0, "unreadable": 2, "usage": 2, "json": 0}[case]


@pytest.mark.headers
def test_fast_path_does_not_import_typer(built_hello: Path) -> None:
    code = (
        "import sys\nsys.argv = ['kmod-py', 'check', sys.argv[1]]\nfrom kbuild_py.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TYPER', 'typer' in sys.modules, 'pydantic' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(built_hello)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert "TYPER False False" in out.stderr, out.stderr
