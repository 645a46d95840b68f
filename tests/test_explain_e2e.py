"""API drift explained end to end: real builds against Debian's 6.1 (host headers), 6.12 and
7.x (kernel-headers images), through `kmod-py explain` and `kmod-py build`.

The modules are the suite's own (tests/data/explain/drift_old.c is written for 6.1,
drift_new.c for 7.x) plus a real Debian -dkms package (vpoll-dkms). Each drift is checked
against when it happened upstream: a kernel older than the threshold must show the old
declaration, a newer one the new declaration, and the change must sit between the two
adjacent kernels at hand, whatever other kernels this machine has headers for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dkmscorpus  # noqa: E402
from conftest import require  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.headers]
DATA = Path(__file__).parent / "data" / "explain"

# name -> (first version with the new form, kind/signature before, kind/signature after);
# None: absent. Thresholds are upstream facts; the kernels here are 6.1, 6.12 and 7.x.
DRIFT: dict[str, tuple[tuple[int, int], tuple[str, str] | None, tuple[str, str] | None]] = {
    # function arguments changed + macro turned function (6.4)
    "class_create": (
        (6, 4),
        ("macro", "#define class_create(owner, name)"),
        ("function", "struct class * __must_check class_create(const char *name);"),
    ),
    # function removed (6.8)
    "strlcpy": ((6, 8), ("function", "size_t strlcpy(char *, const char *, size_t);"), None),
    # function removed (after 6.12: timer_delete_sync is its replacement in the headers)
    "del_timer_sync": (
        (6, 13),
        ("inline function", "static inline int del_timer_sync(struct timer_list *timer)"),
        None,
    ),
    # macro arguments changed (6.4): a constant-defining macro
    "DEFINE_SEMAPHORE": (
        (6, 4),
        ("macro", "#define DEFINE_SEMAPHORE(name)"),
        ("macro", "#define DEFINE_SEMAPHORE(_name, _n)"),
    ),
    # constant removed (6.12)
    "no_llseek": ((6, 12), ("macro", "#define no_llseek NULL"), None),
    # timer setup helper removed (after 6.12; renamed timer_container_of)
    "from_timer": (
        (6, 13),
        ("macro", "#define from_timer(var, callback_timer, timer_fieldname)"),
        None,
    ),
    # return type changed (6.3): gcc says "void value not ignored", naming no function
    "cpufreq_unregister_driver": (
        (6, 3),
        ("function", "int cpufreq_unregister_driver(struct cpufreq_driver *driver_data);"),
        ("function", "void cpufreq_unregister_driver(struct cpufreq_driver *driver_data);"),
    ),
    # return type changed in an ops table (6.11)
    "struct platform_driver.remove": (
        (6, 11),
        ("member", "int (*remove)(struct platform_device *);"),
        ("member", "void (*remove)(struct platform_device *);"),
    ),
    # ops member's argument type changed (6.2), assigned at run time in vpoll-dkms
    "struct class.devnode": (
        (6, 2),
        ("member", "char *(*devnode)(struct device *dev, umode_t *mode);"),
        ("member", "char *(*devnode)(const struct device *dev, umode_t *mode);"),
    ),
    # ops member signature changed (6.12)
    "struct hid_driver.report_fixup": (
        (6, 12),
        (
            "member",
            "__u8 *(*report_fixup)(struct hid_device *hdev, __u8 *buf, unsigned int *size);",
        ),
        (
            "member",
            "const __u8 *(*report_fixup)(struct hid_device *hdev, __u8 *buf, unsigned int *size);",
        ),
    ),
}


# In real -dkms sources only (tp-smapi, v4l2loopback); changed after 6.12, by 7.x (the exact
# release lies between the kernels this suite has).
DRIFT.update(
    {
        "strncpy": (
            (6, 13),
            ("function", "extern char * strncpy(char *,const char *, __kernel_size_t);"),
            None,
        ),
        "v4l2_fh_add": (
            (6, 13),
            ("function", "void v4l2_fh_add(struct v4l2_fh *fh);"),
            ("function", "void v4l2_fh_add(struct v4l2_fh *fh, struct file *filp);"),
        ),
        "v4l2_fh_del": (
            (6, 13),
            ("function", "void v4l2_fh_del(struct v4l2_fh *fh);"),
            ("function", "void v4l2_fh_del(struct v4l2_fh *fh, struct file *filp);"),
        ),
    }
)
# What drift_old.c (the suite's 6.1-era module) runs into.
OLD_MODULE = [
    "class_create",
    "strlcpy",
    "del_timer_sync",
    "DEFINE_SEMAPHORE",
    "no_llseek",
    "from_timer",
    "struct platform_driver.remove",
    "struct hid_driver.report_fixup",
    "cpufreq_unregister_driver",
]


KMOD_PY = ""  # the installed kmod-py (the kmod_py_bin fixture)


@pytest.fixture(autouse=True)
def _installed_kmod_py(kmod_py_bin: Path) -> None:
    global KMOD_PY
    KMOD_PY = str(kmod_py_bin)


def kmod_py(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KMOD_PY, *args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


def _version(k: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(x) for x in k["version"].split("."))


def check_drift(item: dict[str, Any], name: str) -> None:
    """Every kernel shows the declaration of its side of the threshold; the one change sits
    between the newest kernel before it and the oldest after it, with that guard."""
    threshold, old, new = DRIFT[name]
    assert item["verdict"] == "drift", item
    for k in item["kernels"]:
        want = old if _version(k)[:2] < threshold else new
        d = k["declaration"]
        got = (d["kind"], d["signature"]) if d else None
        assert got == want, (name, k["release"], got)
        if d:
            assert d["file"].startswith(("include/", "arch/")) and d["line"] > 0
    before = [k for k in item["kernels"] if _version(k)[:2] < threshold]
    after = [k for k in item["kernels"] if _version(k)[:2] >= threshold]
    assert before and after, "the suite needs a kernel on each side"
    (change,) = item["changes"]
    assert change["before"]["release"] == before[-1]["release"]
    assert change["after"]["release"] == after[0]["release"]
    a, b, c = _version(after[0])
    assert change["guard"] == f"#if LINUX_VERSION_CODE >= KERNEL_VERSION({a}, {b}, {min(c, 255)})"
    assert change["after"]["version_code"] == (a << 16) + (b << 8) + min(c, 255)
    assert change["what"] == ("removed" if new is None else "changed")


def _project(tmp_path: Path, source: str) -> Path:
    project = tmp_path / Path(source).stem
    project.mkdir()
    shutil.copy(DATA / source, project / source)
    (project / "Kbuild").write_text(f"obj-m := {Path(source).stem}.o\n")
    return project


@pytest.fixture(scope="module")
def kernels(debian_targets, host_release: str) -> list[str]:  # type: ignore[no-untyped-def]
    """6.1 on the host, 6.12 and 7.x in their kernel-headers images."""
    return [host_release, "debian:trixie", "debian:trixie-backports"]


def _explain(project: Path, kernels: list[str], *extra: str) -> list[dict[str, Any]]:
    args = [a for k in kernels for a in ("--kernel", k)]
    proc = kmod_py("explain", str(project), *args, *extra, "--json", cwd=project)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_a_61_module_on_612_and_7x(tmp_path: Path, kernels: list[str], debian_targets) -> None:  # type: ignore[no-untyped-def]
    project = _project(tmp_path, "drift_old.c")
    reports = _explain(project, kernels)
    by_kernel = {r["kernel"]: r for r in reports}
    assert [r["built"] for r in reports] == [False, False, False]  # the typo fails everywhere
    on_7x = {e["name"]: e for e in by_kernel["debian:trixie-backports"]["explanation"]}
    for name in OLD_MODULE:
        check_drift(on_7x[name], name)
    assert on_7x["class_create"]["message"].startswith("drift_old.c:")
    # errors of the module's own making: named, compared, and left unexplained
    for own in ("drift_helpr", "drift_sem"):
        assert on_7x[own]["verdict"] == "unknown"
        assert all(k["absent"] for k in on_7x[own]["kernels"])
    on_61 = by_kernel[kernels[0]]["explanation"]
    assert [(e["name"], e["verdict"]) for e in on_61] == [("drift_helpr", "unknown")]
    # 6.12 fails on what changed up to 6.12 only
    on_612 = {
        e["name"] for e in by_kernel["debian:trixie"]["explanation"] if e["verdict"] == "drift"
    }
    assert on_612 == {n for n in OLD_MODULE if DRIFT[n][0] <= (6, 12)}


def test_a_7x_module_on_61(tmp_path: Path, kernels: list[str], debian_targets) -> None:  # type: ignore[no-untyped-def]
    project = _project(tmp_path, "drift_new.c")
    reports = _explain(project, kernels)
    assert [r["built"] for r in reports] == [False, False, True]
    on_61 = {e["name"]: e for e in reports[0]["explanation"]}
    assert on_61["class_create"]["kind"] == "macro"  # 6.1's macro rejects one argument
    check_drift(on_61["class_create"], "class_create")
    check_drift(on_61["DEFINE_SEMAPHORE"], "DEFINE_SEMAPHORE")
    check_drift(on_61["struct platform_driver.remove"], "struct platform_driver.remove")
    added = on_61["timer_container_of"]
    assert added["verdict"] == "drift" and added["changes"][-1]["what"] == "added"
    (k7,) = [k for k in added["kernels"] if k["release"] == debian_targets[kernels[2]].release]
    assert k7["declaration"]["signature"].startswith("#define timer_container_of(var,")
    assert reports[2]["explanation"] == []  # builds on 7.x: nothing to explain


def test_text_output_and_explain_with(tmp_path: Path, debian_targets) -> None:  # type: ignore[no-untyped-def]
    """One kernel built, another named only for comparison (--explain-with)."""
    project = _project(tmp_path, "drift_old.c")
    proc = kmod_py(
        "explain",
        "--kernel",
        "debian:trixie-backports",
        "--explain-with",
        "debian:bookworm",
        cwd=project,
    )
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    r61 = debian_targets["debian:bookworm"].release
    r7 = debian_targets["debian:trixie-backports"].release
    assert f"kernel {r7} (debian:trixie-backports): build failed (make exit 2)" in out
    assert f"{r61} (6.1." in out  # the bookworm image's headers are compared too
    assert "class_create (function) at drift_old.c:63" in out
    assert "include/linux/device/class.h:226  struct class * __must_check class_create(" in out
    assert "no kernel at hand declares" in out and "drift_helpr (drift_old.c:70)" in out
    assert not (project / ".kmod-py" / r61).exists()  # compared, never built


def test_real_debian_dkms_source_vpoll(tmp_path: Path, kernels: list[str], debian_targets) -> None:  # type: ignore[no-untyped-def]
    """vpoll-dkms (Debian bookworm) builds on 6.1 and breaks on 7.x on class_create."""
    try:
        src = dkmscorpus.fetch("vpoll-dkms")  # the -dkms corpus: apt-get download, cached
    except dkmscorpus.CorpusUnavailable as err:
        require(False, f"the -dkms corpus ({err})")
    project = tmp_path / "vpoll"
    shutil.copytree(src, project)
    reports = _explain(project, [kernels[0], kernels[2]])
    assert [r["built"] for r in reports] == [True, False]
    found = {e["name"]: e for e in reports[1]["explanation"]}
    check_drift(found["class_create"], "class_create")
    check_drift(found["struct class.devnode"], "struct class.devnode")
    assert found["class_create"]["message"].startswith("vpoll.c:")


def test_build_shows_the_explanation_under_the_failed_kernel(
    tmp_path: Path, debian_targets
) -> None:  # type: ignore[no-untyped-def]
    project = _project(tmp_path, "drift_old.c")
    proc = kmod_py("build", "--kernel", "debian:trixie-backports", "--json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)
    found = {e["name"]: e for e in result["explanation"]}
    check_drift(found["strlcpy"], "strlcpy")
    check_drift(found["struct hid_driver.report_fixup"], "struct hid_driver.report_fixup")
    # the live view (stderr under --json) prints it under the kernel's result, before the log
    err = proc.stderr
    head = err.index(f"kernel {result['release']} (debian:trixie-backports")
    assert head < err.index("  explain: compared with the headers of") < err.index("  full log:")
    assert "  no_llseek (identifier) at drift_old.c:56" in err
    off = kmod_py(
        "build", "--kernel", "debian:trixie-backports", "--json", "--no-explain", cwd=project
    )
    assert off.returncode == 1 and json.loads(off.stdout)[0]["explanation"] == []
    assert "explain:" not in off.stderr


@pytest.mark.parametrize(
    ("package", "drifts", "unexplained"),
    [
        ("tp-smapi-dkms", ["DEFINE_SEMAPHORE", "strncpy"], []),
        (
            "v4l2loopback-dkms",
            ["strlcpy", "del_timer_sync", "v4l2_fh_add", "v4l2_fh_del"],
            ["setup_timer"],  # gone since 4.15: no kernel at hand declares it
        ),
    ],
)
def test_real_debian_dkms_sources_on_7x(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    host_release: str,
    debian_targets,
    package: str,
    drifts: list[str],
    unexplained: list[str],
) -> None:
    try:
        src = dkmscorpus.fetch(package)
    except dkmscorpus.CorpusUnavailable as err:
        require(False, f"the -dkms corpus ({err})")
    project = tmp_path / package
    shutil.copytree(src, project)
    (report,) = _explain(
        project,
        ["debian:trixie-backports"],
        "--explain-with",
        host_release,
        "--explain-with",
        "debian:trixie",
    )
    assert not report["built"]
    found = {e["name"]: e for e in report["explanation"]}
    for name in drifts:
        check_drift(found[name], name)
    assert [
        n for n, e in found.items() if e["verdict"] == "unknown" and e["kind"] != "identifier"
    ] == unexplained
