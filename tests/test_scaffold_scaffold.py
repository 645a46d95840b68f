"""kmod-py new: templates (golden files), name and license rules, never losing user data."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbuild_py.cli import app
from kbuild_py.errors import UsageError
from kbuild_py.scaffold.scaffold import GPL_COMPATIBLE, ModuleSpec, render, scaffold_module

GOLDEN = Path(__file__).parent / "golden" / "hello_module"
runner = CliRunner()


def test_rendered_files_match_golden() -> None:
    files = render(
        ModuleSpec(
            "hello_module", author="Ada Lovelace <ada@example.org>", description="Says hello"
        )
    )
    assert sorted(files) == sorted(p.name for p in GOLDEN.iterdir())
    for name, text in files.items():
        assert text == (GOLDEN / name).read_text(), f"{name} differs from its golden file"


def test_makefile_uses_kbuild_m_form_never_subdirs() -> None:
    mk = render(ModuleSpec("hello_module"))["Makefile"]
    assert "KDIR ?= /lib/modules/$(shell uname -r)/build" in mk
    assert "$(MAKE) -C $(KDIR) M=$(CURDIR) modules" in mk
    assert "SUBDIRS" not in mk
    for target in ("all:", "modules:", "clean:", "modules_install:", "help:"):
        assert target in mk


def test_c_source_shape() -> None:
    c = render(ModuleSpec("hello_module"))["hello_module.c"]
    assert '#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt' in c
    assert "static int __init hello_module_mod_init(void)" in c
    assert "static void __exit hello_module_mod_exit(void)" in c
    assert 'pr_info("loaded\\n")' in c and 'pr_info("unloaded\\n")' in c
    for macro in ("MODULE_LICENSE", "MODULE_AUTHOR", "MODULE_DESCRIPTION", "MODULE_VERSION"):
        assert macro in c


def test_strings_are_escaped_for_c_and_toml(tmp_path: Path) -> None:
    spec = ModuleSpec("quoted", author='A "B" \\ C', description='say "hi"')
    files = render(spec)
    assert 'MODULE_AUTHOR("A \\"B\\" \\\\ C");' in files["quoted.c"]
    data = tomllib.loads(files["kmod.toml"])
    assert data["module"]["author"] == 'A "B" \\ C'
    assert data["module"]["description"] == 'say "hi"'


def test_kmod_toml_is_valid_and_complete() -> None:
    data = tomllib.loads(render(ModuleSpec("hello_module"))["kmod.toml"])
    assert data["module"]["name"] == "hello_module"
    assert data["module"]["license"] == "GPL"
    assert data["build"]["kernels"] == []
    assert data["build"]["make_vars"] == {"W": "1"}


def test_gitignore_covers_kbuild_outputs() -> None:
    gi = render(ModuleSpec("m"))[".gitignore"].split()
    for pat in (
        "*.o",
        "*.ko",
        "*.mod",
        "*.mod.c",
        ".*.cmd",
        "Module.symvers",
        "modules.order",
        ".module-common.o",
        ".kmod-py/",
    ):
        assert pat in gi


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("hello-module", "hello_module"),
        ("9lives", "_9lives"),
        ("int", "C keyword"),
        ("x" * 56, "at most 55"),
        ("", "empty"),
        ("a b", "a_b"),
    ],
)
def test_bad_names_are_refused_with_hint(tmp_path: Path, name: str, needle: str) -> None:
    with pytest.raises(UsageError) as exc:
        scaffold_module(ModuleSpec(name), tmp_path)
    assert needle in exc.value.message + (exc.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_55_character_name_is_accepted(tmp_path: Path) -> None:
    assert scaffold_module(ModuleSpec("m" * 55), tmp_path).path.is_dir()


def test_cli_hyphen_name_hint_and_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["new", "hello-module", "--dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "error: invalid module name 'hello-module'" in res.stderr
    assert "hint: use hello_module" in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lic", GPL_COMPATIBLE)
def test_gpl_compatible_licenses_accepted(tmp_path: Path, lic: str) -> None:
    res = scaffold_module(ModuleSpec("m", license=lic), tmp_path)
    assert f'MODULE_LICENSE("{lic}");' in (res.path / "m.c").read_text()
    assert res.warnings == []


def test_proprietary_needs_flag_and_warns(tmp_path: Path) -> None:
    res = runner.invoke(app, ["new", "m", "--dir", str(tmp_path), "--license", "Proprietary"])
    assert res.exit_code == 2 and "--allow-proprietary" in res.stderr
    assert not (tmp_path / "m").exists()
    res = runner.invoke(
        app, ["new", "m", "--dir", str(tmp_path), "--license", "Proprietary", "--allow-proprietary"]
    )
    assert res.exit_code == 0, res.output
    assert "taints the kernel (P)" in res.stderr and "Unknown symbol" in res.stderr
    assert 'MODULE_LICENSE("Proprietary")' in (tmp_path / "m" / "m.c").read_text()


def test_license_is_case_sensitive(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        scaffold_module(ModuleSpec("m", license="gpl"), tmp_path)


def test_existing_nonempty_dir_untouched_without_force(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "m.c").write_text("my precious code\n")
    res = runner.invoke(app, ["new", "m", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "--force" in res.stderr
    assert [p.name for p in d.iterdir()] == ["m.c"]
    assert (d / "m.c").read_text() == "my precious code\n"


def test_force_rewrites_only_generated_files(tmp_path: Path) -> None:
    d = scaffold_module(ModuleSpec("m"), tmp_path).path
    (d / "Kbuild").write_text("obj-m := broken.o\n")
    (d / "helper.c").write_text("int x;\n")
    (d / "notes").mkdir()
    (d / "notes" / "todo.txt").write_text("keep me")
    before = (d / "helper.c").stat().st_mtime_ns
    res = runner.invoke(app, ["new", "m", "--dir", str(tmp_path), "--force"])
    assert res.exit_code == 0, res.output
    assert (d / "Kbuild").read_text().count("obj-m := m.o") == 1
    assert (d / "helper.c").read_text() == "int x;\n"
    assert (d / "helper.c").stat().st_mtime_ns == before
    assert (d / "notes" / "todo.txt").read_text() == "keep me"
    assert "kept 2 file(s)" in res.stdout


def test_empty_existing_dir_is_used(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert (scaffold_module(ModuleSpec("m"), tmp_path).path / "m.c").is_file()


def test_name_collides_with_a_file(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("data")
    with pytest.raises(UsageError):
        scaffold_module(ModuleSpec("m"), tmp_path)
    assert (tmp_path / "m").read_text() == "data"


def test_cli_new_creates_every_file(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["new", "hello_module", "--dir", str(tmp_path), "--author", "A", "--description", "D"]
    )
    assert res.exit_code == 0, res.output
    d = tmp_path / "hello_module"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["hello_module.c", "Kbuild", "Makefile", "kmod.toml", ".gitignore", "README.md",
         "dkms.conf"]
    )
    assert 'MODULE_AUTHOR("A");' in (d / "hello_module.c").read_text()


def test_description_cannot_end_the_header_comment() -> None:
    c = render(ModuleSpec("cmt", description="ends */ early\nand more"))["cmt.c"]
    header_end = c.index("*/")
    assert header_end > c.index("Load:"), "'*/' in the description closed the comment early"
    assert 'MODULE_DESCRIPTION("ends */ early and more");' in c


def test_force_with_a_generated_name_not_a_file_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "blocked"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    (dest / "dkms.conf").mkdir()  # the last generated file is a directory
    with pytest.raises(UsageError, match="nothing was written"):
        scaffold_module(ModuleSpec("blocked"), tmp_path, force=True)
    assert sorted(p.name for p in dest.iterdir()) == ["dkms.conf", "notes.txt"]


def test_cli_file_system_refusal_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    res = CliRunner().invoke(app, ["new", "x", "--dir", str(tmp_path / "afile" / "sub")])
    assert res.exit_code == 2
    assert "Not a directory" in res.output and "internal error" not in res.output
