"""kmod-py build on the host against real Debian kernel headers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from checkdata import snapshot_into
from conftest import Ran, installed_kmod_py, run_kmod_py

pytestmark = pytest.mark.headers


def build(project: Path, *args: str) -> Ran:
    return run_kmod_py(["build", project, *args])


def test_scaffolded_module_builds_clean_with_w1(scaffold, host_release: str) -> None:
    project = scaffold("hello_module")
    res = build(project, "--kernel", host_release)
    assert res.exit_code == 0, res.output
    ko = project / ".kmod-py" / host_release / "hello_module.ko"
    assert ko.is_file()
    assert "warning" not in res.output.lower(), res.output  # W=1 from kmod.toml, zero warnings
    assert "W=1" in (ko.parent / "build.log").read_text().splitlines()[1]
    assert f"vermagic: {host_release} SMP" in res.output
    assert "check hello_module.ko: passed" in res.output
    assert "CC [M]  hello_module.o" in res.output
    # the user's tree holds no build output
    assert not list(project.glob("*.o")) and not list(project.glob("*.ko"))


@pytest.mark.parametrize("name", ["kobject", "rcu", "mt"])
def test_names_of_kernel_functions_build(scaffold, host_release: str, name: str) -> None:
    # NAME_init would clash with kobject_init(), rcu_init(), mt_init() in the kernel headers.
    res = build(scaffold(name), "--kernel", host_release)
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output.lower(), res.output


def test_plain_make_works_without_kmod_py(scaffold, host_kdir: Path) -> None:
    project = scaffold("plain_mod")
    proc = subprocess.run(
        ["make", f"KDIR={host_kdir}"], cwd=project, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / "plain_mod.ko").is_file()
    subprocess.run(
        ["make", f"KDIR={host_kdir}", "clean"],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert not (project / "plain_mod.ko").exists()


def test_syntax_error_fails_with_diagnostic_first(scaffold, host_release: str) -> None:
    project = scaffold("broken")
    src = project / "broken.c"
    src.write_text(src.read_text().replace('pr_info("loaded\\n");', 'pr_info("loaded\\n")'))
    res = build(project, "--kernel", host_release)
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    fail_at = next(i for i, ln in enumerate(lines) if "build failed" in ln)
    assert f"{project}/broken.c:" in lines[fail_at + 1] and "error:" in lines[fail_at + 1]
    assert f"full log: {project}/.kmod-py/{host_release}/build.log" in res.output


def test_existing_multi_module_directory(tmp_path: Path, host_release: str) -> None:
    d = tmp_path / "drivers"
    d.mkdir()
    (d / "Makefile").write_text(
        "obj-m := alpha.o beta.o\nbeta-y := beta_main.o beta_util.o\n"
        "all:\n\t$(MAKE) -C /lib/modules/$(shell uname -r)/build M=$(CURDIR) modules\n"
    )
    common = '#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'
    (d / "alpha.c").write_text(
        common + "static int __init a_init(void) { return 0; }\nmodule_init(a_init);\n"
    )
    (d / "beta_util.c").write_text(
        '#include <linux/kernel.h>\n#include "beta.h"\nint beta_value(void) { return 42; }\n'
    )
    (d / "beta.h").write_text("int beta_value(void);\n")
    (d / "beta_main.c").write_text(
        common + '#include "beta.h"\n'
        "static int __init b_init(void) { return beta_value() - 42; }\n"
        "module_init(b_init);\n"
    )
    res = build(d, "--kernel", host_release, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [Path(m["path"]).name for m in doc[0]["modules"]] == ["alpha.ko", "beta.ko"]
    assert all(m["vermagic"].startswith(host_release + " ") for m in doc[0]["modules"])
    assert doc[0]["ok"] is True


def test_missing_build_tree_is_exit_2_with_fixes(scaffold, tmp_path: Path) -> None:
    project = scaffold("m")
    res = build(project, "--kdir", str(tmp_path / "nowhere"))
    assert res.exit_code == 2
    assert "no build tree" in res.stderr and "apt-get install linux-headers-" in res.stderr
    res = build(project, "--kdir", str(tmp_path))
    assert res.exit_code == 2 and "not a prepared kernel build tree" in res.stderr


def test_not_a_module_dir_is_exit_2(tmp_path: Path) -> None:
    res = build(tmp_path)
    assert res.exit_code == 2 and "not an out-of-tree module" in res.stderr


def test_bad_make_var_is_exit_2(scaffold) -> None:
    res = build(scaffold("m"), "--make-var", "novalue")
    assert res.exit_code == 2 and "NAME=VALUE" in res.stderr


def test_compiler_mismatch_is_reported(scaffold, host_release: str, host_kdir: Path) -> None:
    from conftest import require

    from kbuild_py.build.plan import kernel_compiler_program
    from kbuild_py.kernels.buildtree import BuildTree

    kernel_cc = kernel_compiler_program(BuildTree.open(host_kdir).cc_version_text)
    require(
        kernel_cc is not None and shutil.which(kernel_cc) is not None,
        "the kernel's own compiler (e.g. gcc-12 for bookworm headers)",
    )
    res = build(scaffold("m"), "--kernel", host_release)
    assert "compiler differs" not in res.stderr  # the kernel's compiler is picked by default
    res = build(scaffold("m2"), "--kernel", host_release, "--make-var", "CC=gcc")
    assert "the compiler differs from the one used to build kernel" in res.stderr
    assert f"kernel built by: {kernel_cc}" in res.stderr


def test_kdir_build_then_check_against_other_vermagic(
    scaffold, host_kdir: Path, tmp_path: Path
) -> None:
    project = scaffold("vm")
    res = build(project, "--kdir", str(host_kdir))
    assert res.exit_code == 0, res.output
    from kbuild_py.kernels.buildtree import BuildTree

    other = snapshot_into(BuildTree.open(host_kdir), tmp_path / "other")
    uts = other.path / "include/generated/utsrelease.h"
    uts.write_text('#define UTS_RELEASE "6.1.0-99-amd64"\n')
    conf = other.path / "include/config/auto.conf"
    conf.write_text(conf.read_text().replace("CONFIG_MODULE_UNLOAD=y", ""))
    ko = next((project / ".kmod-py").rglob("vm.ko"))
    res = run_kmod_py(["check", ko, "--kdir", other.path])
    assert res.exit_code == 1, res.output
    assert "version magic" in res.output and "should be" in res.output


def test_console_script_and_python_m(scaffold, host_release: str) -> None:
    exe = installed_kmod_py()
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("kmod-py ")
    project = scaffold("cs")
    proc = subprocess.run(
        [str(exe.parent / "python"), "-m", "kbuild_py", "build", str(project),
         "--kernel", host_release],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [str(exe), "build", str(project), "--kernel", "0.0.1-nope"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # notes may come first (e.g. a suite skipped because its Release expired), then the error
    lines = proc.stderr.splitlines()
    first_error = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert all(line.startswith("note: ") for line in lines[:first_error]), proc.stderr


def test_modules_using_each_others_exports_pass_check(tmp_path: Path, host_release: str) -> None:
    d = tmp_path / "pair"
    d.mkdir()
    (d / "Kbuild").write_text("obj-m := provider.o user.o\n")
    head = '#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'
    (d / "provider.c").write_text(
        head + "int provider_value(void) { return 7; }\nEXPORT_SYMBOL_GPL(provider_value);\n"
    )
    (d / "user.c").write_text(
        head + "int provider_value(void);\n"
        "static int __init u_init(void) { return provider_value() - 7; }\n"
        "module_init(u_init);\n"
    )
    res = build(d, "--kernel", host_release)
    assert res.exit_code == 0, res.output
    assert "Unknown symbol" not in res.output
    assert res.output.count("check ") == 2
