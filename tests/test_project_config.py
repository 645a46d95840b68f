"""kmod.toml parsing and module-directory detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild_py.errors import ProjectError, UsageError
from kbuild_py.kernels.select import choose_specs
from kbuild_py.project.config import find_module_dir, load_project


def test_no_file_is_a_plain_project(tmp_path: Path) -> None:
    p = load_project(tmp_path)
    assert p.has_file is False and p.kernels == [] and p.make_vars == {}


def test_full_file(tmp_path: Path) -> None:
    (tmp_path / "kmod.toml").write_text(
        '[module]\nmodules = ["a", "b"]\nlicense = "GPL"\n'
        '[build]\nkernels = ["debian:bookworm", "host"]\nmake_vars = { W = 1, LLVM = "1" }\n'
        '[test]\nparams = { debug = true }\nscript = "s.sh"\ntimeout = 30\n'
    )
    p = load_project(tmp_path)
    assert p.modules == ["a", "b"]
    assert p.kernels == ["debian:bookworm", "host"]
    assert p.make_vars == {"W": "1", "LLVM": "1"}
    assert p.test_params == {"debug": "1"}
    assert p.test_script == "s.sh" and p.test_timeout == 30.0


@pytest.mark.parametrize(
    "text",
    [
        "[module\n",
        "build = 3\n",
        "[build]\nkernels = [1]\n",
        "[build]\nmake_vars = [1]\n",
        '[test]\ntimeout = "x"\n',
        "[test]\ntimeout = 0\n",
        "[test]\ntimeout = -5\n",
        "[test]\ntimeout = true\n",
        "[test]\nscript = 3\n",
    ],
)
def test_invalid_files_are_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "kmod.toml").write_text(text)
    with pytest.raises(ProjectError) as exc:
        load_project(tmp_path)
    assert "kmod.toml" in exc.value.message


def test_module_dir_detection(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not an out-of-tree module"):
        find_module_dir(tmp_path)
    (tmp_path / "Makefile").write_text("all:\n\techo hi\n")
    with pytest.raises(UsageError):
        find_module_dir(tmp_path)
    (tmp_path / "Makefile").write_text("obj-m += foo.o\n")
    assert find_module_dir(tmp_path) == tmp_path.resolve()
    (tmp_path / "Makefile").unlink()
    (tmp_path / "Kbuild").write_text("obj-m := foo.o\n")
    assert find_module_dir(tmp_path) == tmp_path.resolve()
    with pytest.raises(UsageError, match="no such directory"):
        find_module_dir(tmp_path / "missing")


def test_choose_specs() -> None:
    assert choose_specs([], []) == ["host"]
    assert choose_specs([], ["debian:trixie"]) == ["debian:trixie"]
    assert choose_specs(["a", "b", "a"], ["c"]) == ["a", "b"]


def test_two_specs_for_one_release_build_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from kbuild_py.kernels import resolve as kernels
    from kbuild_py.kernels.select import resolve_targets

    releases = {
        "debian:bookworm": "6.1.0-50-amd64",
        "6.1.0-50-amd64": "6.1.0-50-amd64",
        "debian:trixie": "6.12.117+deb13-amd64",
    }

    class T:
        def __init__(self, spec: str) -> None:
            self.spec, self.release = spec, releases[spec]

    monkeypatch.setattr(kernels, "resolve_spec", lambda spec, **kw: T(spec))
    said: list[str] = []
    targets = resolve_targets(
        ["debian:bookworm", "6.1.0-50-amd64", "debian:trixie"], None, progress=said.append
    )
    assert [t.spec for t in targets] == ["debian:bookworm", "debian:trixie"]
    assert said == ["6.1.0-50-amd64 is 6.1.0-50-amd64, already targeted as debian:bookworm"]


def test_a_path_with_spaces_is_refused(tmp_path: Path) -> None:
    mod = tmp_path / "with space" / "m"
    mod.mkdir(parents=True)
    (mod / "Kbuild").write_text("obj-m := m.o\n")
    with pytest.raises(UsageError, match="white space"):
        find_module_dir(mod)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('[build]\nkernals = ["debian:trixie"]\n', "did you mean 'kernels'?"),
        ("[biuld]\n", "did you mean [build]?"),
        ('[test]\nscirpt = "x"\n', "did you mean 'script'?"),
        ("[other]\n", "known tables"),
    ],
)
def test_misspelt_keys_are_refused(tmp_path: Path, text: str, hint: str) -> None:
    (tmp_path / "kmod.toml").write_text(text)
    with pytest.raises(ProjectError) as exc:
        load_project(tmp_path)
    assert hint in (exc.value.hint or "")


def test_sign_table(tmp_path: Path) -> None:
    from kbuild_py.errors import ProjectError
    from kbuild_py.project.config import load_project

    (tmp_path / "kmod.toml").write_text(
        '[sign]\nkey = "keys/mok.key"\ncert = "keys/mok.der"\nhash = "sha512"\nstrip = true\n'
    )
    p = load_project(tmp_path)
    assert p.sign == {
        "key": "keys/mok.key", "cert": "keys/mok.der", "hash": "sha512", "strip": True
    }  # fmt: skip
    for bad, why in (
        ('[sign]\nkey = "k"\n', "needs both key and cert"),
        ("[sign]\nstrip = 1\n", "sign.strip must be true or false"),
        ('[sign]\nkeys = "k"\n', "unknown key 'keys' in \\[sign\\]"),
    ):
        (tmp_path / "kmod.toml").write_text(bad)
        with pytest.raises(ProjectError, match=why):
            load_project(tmp_path)


def test_sign_settings_from_the_project(tmp_path: Path) -> None:
    from kbuild_py.signing import keys
    from kbuild_py.signing.service import settings_for

    pair = keys.KeyPair(tmp_path / "keys/mok.key", tmp_path / "keys/mok.der", "options")
    keys.keygen(pair)
    table = {"key": "keys/mok.key", "cert": "keys/mok.der", "hash": "sha512", "strip": True}
    s = settings_for(None, None, None, False, table, tmp_path)
    assert s.pair.origin == "kmod.toml" and s.pair.key == pair.key
    assert s.hash_algo == "sha512" and s.strip
    given = settings_for(pair.key, pair.cert, "sha256", False, table, tmp_path)
    assert given.pair.origin == "options" and given.hash_algo == "sha256"
