"""--make-var and kmod.toml make_vars: any make name, kmod-py's own names refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild_py.errors import UsageError
from kbuild_py.project.config import load_project
from kbuild_py.project.makevars import parse_make_vars


def test_make_names_that_are_not_identifiers_are_accepted() -> None:
    assert parse_make_vars(["ccflags-y=-I/x -DY=1", "KCFLAGS=-g", "CONFIG_FOO=m", "W=1"]) == {
        "ccflags-y": "-I/x -DY=1", "KCFLAGS": "-g", "CONFIG_FOO": "m", "W": "1",
    }
    assert parse_make_vars(["EMPTY="]) == {"EMPTY": ""}


@pytest.mark.parametrize("bad", ["A B=1", "=1", "X:Y=1", "noequals", "$(X)=1"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_make_vars([bad])


@pytest.mark.parametrize("owned", ["M", "KBUILD_EXTMOD", "SUBDIRS", "O", "KERNELRELEASE"])
def test_kmod_py_owned_names_are_refused_with_a_reason(owned: str) -> None:
    with pytest.raises(UsageError, match="set by kmod-py: "):
        parse_make_vars([f"{owned}=/elsewhere"])


@pytest.mark.parametrize("name", ["M", "A B"])
def test_kmod_toml_make_vars_are_validated_the_same_way(tmp_path: Path, name: str) -> None:
    (tmp_path / "kmod.toml").write_text(f'[build]\nmake_vars = {{ "{name}" = "x" }}\n')
    with pytest.raises(UsageError, match="build.make_vars"):
        load_project(tmp_path)
    (tmp_path / "kmod.toml").write_text('[build]\nmake_vars = { "ccflags-y" = "-DX" }\n')
    assert load_project(tmp_path).make_vars == {"ccflags-y": "-DX"}
