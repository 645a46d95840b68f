"""kmod-py build on dkms.conf and multi-directory projects, on the host's real headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_kmod_py

pytestmark = pytest.mark.headers

MOD_C = """#include <linux/module.h>
#include "{header}"
static int __init {name}_init(void) {{ return VALUE_{name}; }}
static void __exit {name}_exit(void) {{ }}
module_init({name}_init);
module_exit({name}_exit);
MODULE_LICENSE("GPL");
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def two_dir_project(root: Path, dkms_conf: str | None) -> Path:
    """core/ and extra/ share ../include; each is its own Kbuild directory."""
    files = {
        "include/shared.h": "#define VALUE_core 0\n#define VALUE_extra 0\n",
        "core/Kbuild": "ccflags-y += -I$(src)/../include\nobj-m := core.o\n",
        "core/core.c": MOD_C.format(name="core", header="shared.h"),
        "extra/Kbuild": "obj-m := extra.o\n",
        "extra/extra.c": MOD_C.format(name="extra", header="../include/shared.h"),
        "Makefile": (
            "all:\n\t$(MAKE) -C $(KDIR) M=$(CURDIR)/core modules\n"
            "\t$(MAKE) -C $(KDIR) M=$(CURDIR)/extra modules\n"
        ),
    }
    if dkms_conf is not None:
        files["dkms.conf"] = dkms_conf
    return write(root, files)


def build_json(path: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    res = run_kmod_py(["build", path, "--json", *args])
    assert res.stdout.strip().startswith("["), res.output
    return res.exit_code, json.loads(res.stdout)[0]


CONF = """PACKAGE_NAME="twodir"
PACKAGE_VERSION="1.0"
MAKE[0]="make KDIR=$kernel_source_dir all"
BUILT_MODULE_NAME[0]=core
BUILT_MODULE_LOCATION[0]=core
BUILT_MODULE_NAME[1]=extra
BUILT_MODULE_LOCATION[1]=extra/
DEST_MODULE_LOCATION[0]=/extra
DEST_MODULE_LOCATION[1]=/extra
"""


def test_dkms_conf_make_runs_chained_makes_in_the_whole_tree(
    tmp_path: Path, host_release: str
) -> None:
    project = two_dir_project(tmp_path / "p", CONF)
    before = sorted(project.rglob("*"))
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 0, doc
    assert (doc["package"], doc["version"], doc["result"]) == ("twodir", "1.0", "ok")
    assert sorted(Path(m["path"]).name for m in doc["modules"]) == ["core.ko", "extra.ko"]
    assert doc["expected"] == ["core", "extra"] and doc["missing"] == []
    log = (project / ".kmod-py" / host_release / "build.log").read_text()
    assert "make -j" in log and f"KERNELRELEASE={host_release}" in log
    assert sorted(p for p in project.rglob("*") if ".kmod-py" not in p.parts) == before


def test_missing_expected_module_fails_and_is_named(tmp_path: Path, host_release: str) -> None:
    conf = CONF + "BUILT_MODULE_NAME[2]=ghost\nDEST_MODULE_LOCATION[2]=/extra\n"
    project = two_dir_project(tmp_path / "p", conf)
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 1 and doc["result"] == "FAILED"
    assert doc["missing"] == ["ghost"]
    assert "ghost" in doc["error"]


def test_excluded_kernel_is_not_a_failure(tmp_path: Path, host_release: str) -> None:
    project = two_dir_project(tmp_path / "p", CONF + 'BUILD_EXCLUSIVE_KERNEL="^2\\.6\\."\n')
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 0 and doc["result"] == "excluded", doc
    assert "BUILD_EXCLUSIVE_KERNEL" in doc["excluded"] and doc["modules"] == []
    res = run_kmod_py(["build", project, "--kernel", host_release])
    assert "excluded, not built: BUILD_EXCLUSIVE_KERNEL" in res.output


def test_patch_and_pre_build_touch_only_the_copy(tmp_path: Path, host_release: str) -> None:
    project = two_dir_project(tmp_path / "p", CONF + (
        'PATCH[0]=value.patch\nPRE_BUILD="gen.sh arg1"\nPOST_BUILD=missing.sh\n'
    ))
    write(project, {
        "patches/value.patch": (
            "--- a/include/shared.h\n+++ b/include/shared.h\n@@ -1,2 +1,2 @@\n"
            "-#define VALUE_core 0\n+#define VALUE_core (0 + GENERATED)\n"
            " #define VALUE_extra 0\n"
            "--- /dev/null\n+++ b/include/added.h\n@@ -0,0 +1 @@\n+#define ADDED 1\n"
        ),
        "gen.sh": '#!/bin/sh\necho "#define GENERATED $(($# - 1))" > include/generated.h\n'
                  'echo "ccflags-y += -include $PWD/include/generated.h" >> core/Kbuild\n',
    })
    (project / "gen.sh").chmod(0o755)
    for _ in range(2):  # a second build patches a fresh copy again, not the patched one
        rc, doc = build_json(project, "--kernel", host_release)
        assert rc == 0, (doc["errors"], doc["error"])
    assert "VALUE_core 0" in (project / "include/shared.h").read_text()
    assert not (project / "include/generated.h").exists()
    assert not (project / "include/added.h").exists()  # a file the patch creates: copy only
    base = project / ".kmod-py" / host_release
    copy = base / "dkms" / "twodir" / "1.0" / "build"  # $dkms_tree/<module>/<version>/build
    assert "GENERATED" in (copy / "include/shared.h").read_text()
    assert "not executable" in (base / "build.log").read_text()  # POST_BUILD missing.sh


def test_kmod_toml_root_copies_the_tree_for_a_module_below(
    tmp_path: Path, host_release: str
) -> None:
    project = two_dir_project(tmp_path / "p", None)
    (project / "kmod.toml").write_text('[module]\nname = "core"\n')
    rc, doc = build_json(project / "core", "--kernel", host_release)
    assert rc == 0, doc["errors"]
    assert [Path(m["path"]).name for m in doc["modules"]] == ["core.ko"]
    assert (project / ".kmod-py" / host_release / "core/core.ko").is_file()


def test_top_dir_without_kbuild_lists_module_dirs(tmp_path: Path) -> None:
    project = two_dir_project(tmp_path / "p", None)
    res = run_kmod_py(["build", project])
    assert res.exit_code == 2
    assert "module directories below it" in res.output
    assert "core" in res.output and "extra" in res.output
    assert f"kmod-py build {project}/core" in res.output


def test_make_that_builds_nothing_is_a_failure(tmp_path: Path, host_release: str) -> None:
    project = write(tmp_path / "p", {
        "dkms.conf": 'PACKAGE_NAME=n\nPACKAGE_VERSION=1\nMAKE="true"\n',
    })
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 1 and doc["error"] == "make succeeded but built no module", doc


PROVIDER_C = """#include <linux/module.h>
int provider_value(void) { return 0; }
EXPORT_SYMBOL_GPL(provider_value);
MODULE_LICENSE("GPL");
"""
USER_C = """#include <linux/module.h>
int provider_value(void);
static int __init user_init(void) { return provider_value(); }
module_init(user_init);
MODULE_LICENSE("GPL");
"""


def test_modules_of_one_project_use_each_others_exports(
    tmp_path: Path, host_release: str
) -> None:
    project = write(tmp_path / "p", {
        "Kbuild": "obj-m := provider.o user.o\n", "provider.c": PROVIDER_C, "user.c": USER_C,
    })
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 0, [f for c in doc["checks"] for f in c["findings"]]
    assert all(c["ok"] for c in doc["checks"]) and len(doc["checks"]) == 2


def test_extra_symbols_reach_make_and_the_check(tmp_path: Path, host_release: str) -> None:
    provider = write(tmp_path / "provider", {"Kbuild": "obj-m := provider.o\n",
                                             "provider.c": PROVIDER_C})
    user = write(tmp_path / "user", {"Kbuild": "obj-m := user.o\n", "user.c": USER_C})
    assert build_json(provider, "--kernel", host_release)[0] == 0
    symvers = provider / ".kmod-py" / host_release / "Module.symvers"
    rc, doc = build_json(user, "--kernel", host_release)
    assert rc == 1 and any("provider_value" in e for e in doc["errors"]), doc["errors"]
    rc, doc = build_json(user, "--kernel", host_release, "--extra-symbols", str(symvers))
    assert rc == 0 and doc["checks"][0]["ok"], doc
    # the same through KBUILD_EXTRA_SYMBOLS as a make variable
    rc, doc = build_json(user, "--kernel", host_release,
                         "--make-var", f"KBUILD_EXTRA_SYMBOLS={symvers}")
    assert rc == 0 and doc["checks"][0]["ok"], doc


def test_scaffolded_project_round_trips_with_a_real_dkms(
    scaffold, host_release: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import dkmscorpus
    from conftest import require

    require(shutil.which("dkms") is not None, "dkms (apt-get install dkms)")
    project = scaffold("roundtrip_mod", version="1.2.3")
    conf = (project / "dkms.conf").read_text()
    assert "PACKAGE_NAME='roundtrip_mod'" in conf and "PACKAGE_VERSION='1.2.3'" in conf
    rc, mods = dkmscorpus.dkms_build(project, host_release, tmp_path / "dkms")
    assert (rc, mods) == (0, {"roundtrip_mod"})
    # kmod-py following the same dkms.conf builds the same module
    toml = project / "kmod.toml"
    toml.write_text(toml.read_text().replace("follow_dkms_conf = false", "follow_dkms_conf = true"))
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 0 and (doc["package"], doc["version"]) == ("roundtrip_mod", "1.2.3"), doc
    assert [Path(m["path"]).name for m in doc["modules"]] == ["roundtrip_mod.ko"]
    assert doc["warnings"] == []  # W=1 from dkms.conf's MAKE, and still no warning


def test_warning_count_does_not_depend_on_what_make_recompiled(
    tmp_path: Path, host_release: str
) -> None:
    project = write(tmp_path / "w", {
        "Kbuild": "obj-m := w.o\nw-y := a.o b.o\n",
        "a.c": '#include <linux/module.h>\nint unused_a(void) { return 0; }\n'
               'static int __init a_init(void) { return 0; }\nmodule_init(a_init);\n'
               'MODULE_LICENSE("GPL");\n',
        "b.c": "int b_value(void);\nint b_value(void) { int x; return 0; }\n",
    })
    first = build_json(project, "--kernel", host_release)[1]
    assert len(first["warnings"]) >= 1 and first["warnings_earlier"] == 0, first["warnings"]
    again = build_json(project, "--kernel", host_release)[1]  # nothing recompiled
    assert again["warnings"] == first["warnings"] and again["warnings_earlier"] == len(
        first["warnings"])
    (project / "b.c").write_text("int b_value(void);\nint b_value(void) { return 0; }\n")
    fixed = build_json(project, "--kernel", host_release)[1]  # b.c recompiled, clean now
    assert not any("b.c" in w for w in fixed["warnings"]), fixed["warnings"]


@pytest.mark.docker
def test_dkms_conf_project_builds_in_a_container(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Only the copy is mounted: ../include and the chained makes must work inside it, and
    dkms.conf is read by the container's bash against the container's kernel tree."""
    project = two_dir_project(tmp_path / "p", CONF + (
        'if [ -f "$kernel_source_dir/include/config/auto.conf" ]; then '
        'BUILD_EXCLUSIVE_CONFIG="CONFIG_MODULES"; fi\n'
    ))
    rc, doc = build_json(project, "--kernel", "debian:bookworm")
    assert rc == 0, (doc["error"], doc["errors"])
    assert doc["where"] != "host" and doc["package"] == "twodir"
    assert sorted(Path(m["path"]).name for m in doc["modules"]) == ["core.ko", "extra.ko"]


def test_failing_pre_build_shows_its_last_lines(tmp_path: Path, host_release: str) -> None:
    project = two_dir_project(tmp_path / "p", CONF + 'PRE_BUILD="configure --fast"\n')
    write(project, {"configure": '#!/bin/sh\necho "checking for libfoo... no"\nexit 3\n'})
    (project / "configure").chmod(0o755)
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 1 and doc["error"] == "dkms.conf PRE_BUILD failed (exit 3)", doc
    assert doc["tail"] == ["checking for libfoo... no"]
    assert doc["ignored_directives"] == ["DEST_MODULE_LOCATION"]
    res = run_kmod_py(["build", project, "--kernel", host_release])
    assert "  | checking for libfoo... no" in res.output


def test_make_line_that_finds_in_the_dkms_build_dir(tmp_path: Path, host_release: str) -> None:
    """xtables-addons' form: `find $dkms_tree/<module>/<version>/build ... -exec mv` must see
    the files, so that path is the copy itself, not a link to it."""
    conf = (
        'PACKAGE_NAME="twodir"\nPACKAGE_VERSION="1.0"\n'
        'BDIR="$dkms_tree/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"\n'
        "MAKE=\"make KDIR=$kernel_source_dir all ; find ${BDIR} -name '*.ko' "
        "-exec mv -v {} ${BDIR} \\\\;\"\n"
        'BUILT_MODULE_NAME[0]=core\nBUILT_MODULE_NAME[1]=extra\n'
        'DEST_MODULE_LOCATION[0]=/updates\nDEST_MODULE_LOCATION[1]=/updates\n'
    )
    project = two_dir_project(tmp_path / "p", conf)
    rc, doc = build_json(project, "--kernel", host_release)
    assert rc == 0, (doc["error"], doc["errors"], doc["tail"])
    assert sorted(Path(m["path"]).parent.name for m in doc["modules"]) == ["build", "build"]
