"""dkms.conf: read by a real bash (no kernel needed), planned by pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild_py.dkms.conf import ConfContext, DkmsConf, read_conf
from kbuild_py.dkms.plan import plan_dkms, ver_key
from kbuild_py.errors import ProjectError
from kbuild_py.seams.process import HostRunner


def read(tmp_path: Path, text: str, kernelver: str = "6.1.0-9-amd64", **kw: str) -> DkmsConf:
    (tmp_path / "dkms.conf").write_text(text)
    (tmp_path / "ksrc").mkdir(exist_ok=True)
    ctx = ConfContext(
        kernelver=kernelver,
        kernel_source_dir=str(tmp_path / "ksrc"),
        arch=kw.get("arch", "x86_64"),
        dkms_tree="/var/lib/dkms-x",
        source_tree="/usr/src-x",
        build_dir=str(tmp_path),
    )
    return read_conf(HostRunner(), ctx, tmp_path / "dkms.conf")


def plan(conf: DkmsConf, kernelver: str = "6.1.0-9-amd64", config=None, **kw):  # type: ignore[no-untyped-def]
    return plan_dkms(
        conf, kernelver=kernelver, kernel_source_dir="/k", build_dir="/b",
        config=config if config is not None else {"CONFIG_ACPI": "y"}, make_jobs=4, **kw,
    )


def test_bash_reads_arrays_variables_and_strips_cr(tmp_path: Path) -> None:
    conf = read(tmp_path, (
        'PACKAGE_NAME="foo"\r\nPACKAGE_VERSION=1.2\r\n'
        'echo "noise on stdout"\n'
        'MAKE[0]="make -C ${kernel_source_dir} M=${dkms_tree}/${module}/${module_version}/build"\n'
        'BUILT_MODULE_NAME[0]=a; BUILT_MODULE_NAME[3]="b c"\n'
        'for i in 1 2; do BUILT_MODULE_LOCATION[$i]=sub$i; done\n'
        'POST_BUILD=$(printf "x\\ty")\n'
        'CLEAN="line1\nline2 \\\\ back"\n'
    ))
    assert (conf.package_name, conf.package_version) == ("foo", "1.2")
    assert (conf.module, conf.module_version) == ("foo", "1.2")  # $module as dkms sets it
    assert conf.get("MAKE") == f"make -C {tmp_path}/ksrc M=/var/lib/dkms-x/foo/1.2/build"
    assert conf.array("BUILT_MODULE_NAME") == {0: "a", 3: "b c"}
    assert conf.array("BUILT_MODULE_LOCATION") == {1: "sub1", 2: "sub2"}
    assert conf.get("POST_BUILD") == "x\ty"
    assert conf.get("CLEAN") == "line1\nline2 \\ back"
    assert conf.messages == []  # stdout of the file is discarded, as dkms does


def test_module_variable_is_set_from_the_file_itself(tmp_path: Path) -> None:
    text = 'PACKAGE_NAME=m\nPACKAGE_VERSION=2\nMAKE="echo $module $module_version"\n'
    conf = read(tmp_path, text)
    assert conf.get("MAKE") == "echo m 2"


def test_kernel_config_is_visible_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ksrc").mkdir()
    (tmp_path / "ksrc/.config").write_text("CONFIG_VIDEO_DEV=m\n")
    conf = read(tmp_path, (
        'PACKAGE_NAME=v; PACKAGE_VERSION=1\n'
        'if [ -f $kernel_source_dir/.config ]; then . $kernel_source_dir/.config; fi\n'
        '[ "${CONFIG_VIDEO_DEV:-n}" = n ] && BUILD_EXCLUSIVE_KERNEL="REQUIRES CONFIG_VIDEO_DEV"\n'
        'BUILT_MODULE_NAME[0]=v\n'
    ))
    assert conf.get("BUILD_EXCLUSIVE_KERNEL") == ""


def test_make_match_picks_the_last_matching_command_with_bash_regex(tmp_path: Path) -> None:
    text = (
        'PACKAGE_NAME=p; PACKAGE_VERSION=1\n'
        'MAKE[0]="make old"\nMAKE[1]="make six"; MAKE_MATCH[1]="^6\\.[0-9]+"\n'
        'MAKE[2]="make sixone"; MAKE_MATCH[2]="^6\\.1\\."\n'
    )
    assert plan(read(tmp_path, text, "6.1.0-9-amd64"), "6.1.0-9-amd64").make == (
        "make -j4 KERNELRELEASE=6.1.0-9-amd64 sixone"
    )
    assert plan(read(tmp_path, text, "6.12.5"), "6.12.5").make.endswith(" six")
    assert plan(read(tmp_path, text, "5.10.0"), "5.10.0").make.endswith(" old")


def test_default_make_and_make_vars(tmp_path: Path) -> None:
    conf = read(tmp_path, 'PACKAGE_NAME=p; PACKAGE_VERSION=1\nDEST_MODULE_LOCATION=/extra\n')
    p = plan(conf, make_vars={"ccflags-y": "-I$(src)/inc -DX"})
    assert p.make == "make -j4 KERNELRELEASE=6.1.0-9-amd64 -C /k M=/b 'ccflags-y=-I$(src)/inc -DX'"
    assert [m.name for m in p.expected] == ["p"]  # one module: PACKAGE_NAME


def test_module_set_is_sparse_and_located(tmp_path: Path) -> None:
    conf = read(tmp_path, (
        'PACKAGE_NAME=p; PACKAGE_VERSION=1\n'
        'BUILT_MODULE_NAME[0]=a; BUILT_MODULE_LOCATION[0]=src\n'
        'BUILT_MODULE_NAME[2]=c; DEST_MODULE_LOCATION[2]=/extra\n'
    ))
    p = plan(conf)
    assert [m.relpath for m in p.expected] == ["src/a.ko", "c.ko"]
    assert p.problems == ["no BUILT_MODULE_NAME[1]"]


@pytest.mark.parametrize(("line", "kernel", "why"), [
    ('BUILD_EXCLUSIVE_KERNEL="^5\\."', "6.1.0-9-amd64", "BUILD_EXCLUSIVE_KERNEL"),
    ('BUILD_EXCLUSIVE_KERNEL_MIN="6.2"', "6.1.0-9-amd64", "older than BUILD_EXCLUSIVE_KERNEL_MIN"),
    ('BUILD_EXCLUSIVE_KERNEL_MAX="6.0.99"', "6.1.0-9-amd64", "newer than"),
    ('BUILD_EXCLUSIVE_ARCH="aarch64"', "6.1.0-9-amd64", "BUILD_EXCLUSIVE_ARCH"),
    ('BUILD_EXCLUSIVE_CONFIG="CONFIG_USB"', "6.1.0-9-amd64", "CONFIG_USB is not set"),
    ('BUILD_EXCLUSIVE_CONFIG="!CONFIG_ACPI"', "6.1.0-9-amd64", "CONFIG_ACPI is set"),
])
def test_build_exclusive_gives_the_reason(tmp_path: Path, line: str, kernel: str, why: str) -> None:
    conf = read(tmp_path, f"PACKAGE_NAME=p; PACKAGE_VERSION=1\n{line}\n", kernel)
    assert why in (plan(conf, kernel).excluded or "")


def test_build_exclusive_that_matches_builds(tmp_path: Path) -> None:
    conf = read(tmp_path, (
        'PACKAGE_NAME=p; PACKAGE_VERSION=1\nBUILD_EXCLUSIVE_KERNEL="^6\\.1\\."\n'
        'BUILD_EXCLUSIVE_ARCH="x86_64|i.86"\nBUILD_EXCLUSIVE_CONFIG="CONFIG_ACPI !CONFIG_USB"\n'
        'BUILD_EXCLUSIVE_KERNEL_MIN=3.9\n'
    ))
    assert plan(conf).excluded is None


def test_patch_match_and_directive_warnings(tmp_path: Path) -> None:
    conf = read(tmp_path, (
        'PACKAGE_NAME=p; PACKAGE_VERSION=1\nPATCH[0]=all.patch\n'
        'PATCH[1]=old.patch; PATCH_MATCH[1]="^4\\."\nPATCH[2]=six.patch; PATCH_MATCH[2]="^6"\n'
        'STRIP[0]=no; AUTOINSTALL=yes; DEST_MODULE_LOCATION[0]=/extra\nCLEAN=true\n'
    ))
    p = plan(conf)
    assert p.patches == ["all.patch", "six.patch"]
    assert p.warnings == ["dkms.conf: STRIP is not applied by kmod-py build"]
    assert p.install_time == ["AUTOINSTALL", "DEST_MODULE_LOCATION"]
    assert p.clean == ""  # CLEAN=true: nothing to run


def test_clang_kernel_gets_llvm(tmp_path: Path) -> None:
    conf = read(tmp_path, 'PACKAGE_NAME=p; PACKAGE_VERSION=1\nMAKE="KDIR=x make all"\n')
    p = plan(conf, config={"CONFIG_CC_IS_CLANG": "y"})
    assert p.make == "KDIR=x make all LLVM=1"  # no leading make: no -j/KERNELRELEASE, as dkms


def test_syntax_error_is_reported_not_raised(tmp_path: Path) -> None:
    conf = read(tmp_path, 'PACKAGE_NAME=p; PACKAGE_VERSION=1\nif then fi\n')
    assert conf.package_name == "p" or conf.messages  # bash reports, dkms carries on
    assert any("syntax error" in m for m in conf.messages)


def test_a_hanging_conf_times_out(tmp_path: Path) -> None:
    (tmp_path / "dkms.conf").write_text("PACKAGE_NAME=p\nsleep 30\n")
    ctx = ConfContext("6.1", "/k", "x86_64", "/d", "/s", str(tmp_path))
    with pytest.raises(ProjectError, match="longer than 1 s"):
        read_conf(HostRunner(), ctx, tmp_path / "dkms.conf", timeout=1)


def test_ver_key_orders_versions_like_dkms() -> None:
    assert ver_key("2.6.9-1cvs200409091247") == "002.006.009-001cvs200409091247"
    assert ver_key("6.1.0-9-amd64") < ver_key("6.12.0") and ver_key("3.9") < ver_key("6.1")
