"""`kmod-py check` through the CLI, and modinfo parity over a whole Debian kernel package."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import Ran, installed_kmod_py, require, run_kmod_py

from kbuild_py.check.elf.modfile import read_module
from kbuild_py.report.check import modinfo_text

pytestmark = pytest.mark.headers


def check(*args: object) -> Ran:
    return run_kmod_py(["check", *args])


@pytest.fixture(scope="session")
def image(host_release: str):  # type: ignore[no-untyped-def]
    from kbuild_py.debian.linuximage import fetch_kernel

    return fetch_kernel(host_release)


def test_good_module_text_output(built_hello: Path, host_release: str, image) -> None:  # type: ignore[no-untyped-def]
    # `image` fetches the kernel package: its in-tree modules give sizeof(struct module),
    # so all 18 rules run (on a cold cache the size rule would be skipped).
    res = check(built_hello, "--kernel", host_release)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.startswith(f"filename:       {built_hello}\n")
    assert f"vermagic:       {read_module(built_hello).vermagic}\n" in out
    assert f"--- check: 18 rules against {host_release}" in out
    assert "result: ok" in out


def test_no_target_says_so(built_hello: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no kmod.toml here
    res = check(built_hello)
    assert res.exit_code == 0
    assert "target-free rules (no target kernel" in res.stdout


def test_target_from_kmod_toml(
    built_hello: Path, host_release: str, tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "kmod.toml").write_text(
        f'[module]\nname = "hello_module"\n[build]\nkernels = ["{host_release}"]\n'
    )
    monkeypatch.chdir(tmp_path)
    res = check(built_hello)
    assert res.exit_code == 0, res.output
    assert f"rules against {host_release}" in res.stdout


def test_failed_rules_exit_1(copies, mods, host_release: str) -> None:
    res = check(copies["stripped"])
    assert res.exit_code == 1
    assert (
        "ERROR    elf-symtab           hello_module: module has no symbols (stripped?)"
        in res.stdout
    )
    assert "result: FAILED (1 error)" in res.stdout
    res = check(mods["neg_prop"], "--kernel", host_release)
    assert res.exit_code == 1 and "Unknown symbol ktime_get (err -2)" in res.stdout


def test_extra_symbols(mods, host_release: str) -> None:
    assert check(mods["consumer"], "--kernel", host_release).exit_code == 1
    res = check(mods["consumer"], "--kernel", host_release, "--extra-symbols", mods["symvers"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("what", ["dir", "empty", "text", "truncated"])
def test_unreadable_exit_2_one_line(built_hello: Path, tmp_path: Path, what: str) -> None:
    target = {
        "dir": tmp_path,
        "empty": tmp_path / "e.ko",
        "text": tmp_path / "t.ko",
        "truncated": tmp_path / "cut.ko",
    }[what]
    if what == "empty":
        target.write_bytes(b"")
    elif what == "text":
        target.write_text("hello\n")
    elif what == "truncated":
        target.write_bytes(built_hello.read_bytes()[:3000])
    res = check(target)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {target}: ")
    assert "Traceback" not in res.output


def test_unreadable_wins_over_failed(copies, tmp_path: Path) -> None:
    empty = tmp_path / "e.ko"
    empty.write_bytes(b"")
    res = check(copies["stripped"], empty)
    assert res.exit_code == 2 and "checked 2: 0 ok, 1 failed, 1 unreadable" in res.stdout


def test_json(mods, copies, host_release: str, tmp_path: Path) -> None:
    empty = tmp_path / "e.ko"
    empty.write_bytes(b"")
    res = check(mods["neg_ns"], copies["xz"], empty, "--kernel", host_release, "--json")
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["targets"] == [host_release]
    assert doc["summary"] == {"modules": 3, "ok": 1, "failed": 1, "unreadable": 1}
    ns, xz, bad = doc["modules"]
    assert ns["ok"] is False and ns["findings"][0]["rule"] == "namespace"
    assert {"rule", "severity", "message", "hint"} == set(ns["findings"][0])
    assert xz["ok"] and xz["compression"] == "xz" and ["name", "hello_module"] in xz["modinfo"]
    assert bad["error"].endswith("is empty") and bad["ok"] is False


def test_junit(mods, built_hello: Path, host_release: str, tmp_path: Path) -> None:
    report = tmp_path / "check.xml"
    res = check(built_hello, mods["neg_wx"], "--kernel", host_release, "--junit", report)
    assert res.exit_code == 1
    root = ET.parse(report).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 2
    assert suites[0].get("failures") == "0" and suites[1].get("failures") == "1"
    failure = suites[1].find("testcase[@name='elf-wx']/failure")
    assert failure is not None and "WRITE|EXEC" in failure.get("message", "")


def test_field_like_modinfo(mods) -> None:
    parms = mods["parms"]
    for field in ("vermagic", "parm", "alias", "filename", "a_rather_long_key_name", "nope"):
        ours = check(parms, "-F", field)
        theirs = subprocess.run(
            ["modinfo", "-F", field, str(parms)], capture_output=True, text=True, timeout=60
        )
        assert ours.exit_code == 0
        assert ours.stdout == theirs.stdout, field


def test_list_rules() -> None:
    res = check("--list-rules")
    assert res.exit_code == 0
    assert re.search(r"(?m)^vermagic\s+error\s+target\s+", res.stdout)
    assert re.search(r"(?m)^elf-symtab\s+error\s+-\s+", res.stdout)


def test_recursive_directory_many_files(image, host_release: str) -> None:
    d = image.modules_dir / "kernel/net"
    res = check("-r", d, "--kernel", host_release, "-F", "name")
    assert res.exit_code == 0, res.stderr[-2000:]
    names = res.stdout.split()
    files = [p for p in sorted(d.rglob("*.ko"))]
    assert len(names) == len(files) > 100  # enough to use the worker processes


def test_console_script(built_hello: Path, host_release: str) -> None:
    exe = installed_kmod_py()
    proc = subprocess.run(
        [str(exe), "check", str(built_hello), "--kernel", host_release],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "result: ok" in proc.stdout


def test_modinfo_parity_whole_kernel_package(image) -> None:
    """kmod-py's modinfo block equals kmod's modinfo for every module of linux-image-<release>."""
    require(shutil.which("modinfo") is not None, "kmod's modinfo")
    files = [str(p) for p in image.module_files()]
    assert len(files) > 3000
    theirs: list[str] = []
    for i in range(0, len(files), 1000):  # one modinfo process per 1000 files
        out = subprocess.run(
            ["modinfo", *files[i : i + 1000]],
            capture_output=True,
            timeout=300,
            env={**os.environ, "LC_ALL": "C"},
        ).stdout
        theirs += re.split(rb"(?m)^(?=filename:)", out)[1:]
    assert len(theirs) == len(files)
    mismatched = []
    for path, block in zip(files, theirs, strict=True):
        ours = modinfo_text(read_module(path)).encode("utf-8", "surrogateescape")
        if ours != block:
            mismatched.append(path)
    assert mismatched == [], f"{len(mismatched)} of {len(files)} differ, e.g. {mismatched[:3]}"


def test_modinfo_parity_session_modules(mods, copies) -> None:
    paths = [mods[n] for n in ("parms", "neg_prop", "neg_ns", "consumer")] + [
        copies["xz"],
        copies["zst"],
    ]
    for p in paths:
        theirs = subprocess.run(["modinfo", str(p)], capture_output=True, timeout=60).stdout
        assert modinfo_text(read_module(p)).encode() == theirs, p


@pytest.mark.docker
def test_check_against_container_kernels(mods, debian_targets, host_release: str) -> None:
    """--kernel debian:SUITE reads the build tree out of the kernel-headers image: a module
    built for the host's 6.1 headers is refused by the newest Debian kernel (vermagic)."""
    newest = debian_targets["debian:trixie-backports"]
    res = check(mods["parms"], "--kernel", "debian:trixie-backports")
    assert res.exit_code == 1, res.output
    assert f"rules against {newest.release}" in res.stdout
    magic = read_module(mods["parms"]).vermagic
    assert (
        f"ERROR    vermagic             parms: version magic '{magic}'"
        f" should be '{newest.tree.vermagic}'"
    ) in res.stdout


def test_forked_workers_keep_order_and_results(mods, copies, tmp_path: Path) -> None:
    from kbuild_py.check.parallel import run_many

    empty = tmp_path / "e.ko"
    empty.write_bytes(b"")
    paths = [mods[n] for n in ("parms", "neg_wx", "consumer", "neg_common")]
    paths += [empty, copies["xz"], copies["stripped"]]
    one = list(run_many(paths, None, jobs=1))
    three = list(run_many(paths, None, jobs=3))
    assert [o.path for o in three] == [str(p) for p in paths]
    assert three == one


@pytest.mark.parametrize("where", ["missing-dir/report.xml", "."])
def test_junit_path_not_writable_is_refused_before_checking(tmp_path: Path, where: str) -> None:
    res = check(tmp_path / "x.ko", "--junit", tmp_path / where)
    assert res.exit_code == 2
    assert "cannot write --junit" in res.output
    assert "internal error" not in res.output


def test_reader_leaving_the_pipe_stops_quietly() -> None:
    """`kmod-py check ... | head`: no internal error, no traceback, exit 141 like a C tool."""
    proc = subprocess.Popen(
        [str(installed_kmod_py().parent / "python"), "-m", "kbuild_py", "check", "--list-rules"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == ""


def test_field_and_json_together_are_refused(built_hello: Path) -> None:
    res = check(built_hello, "-F", "license", "--json")
    assert res.exit_code == 2 and "-F and --json both given" in res.stderr


def test_extra_symbols_without_a_target_warns(
    built_hello: Path, host_kdir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no kmod.toml here: no target
    res = check(built_hello, "--extra-symbols", str(host_kdir / "Module.symvers"))
    assert res.exit_code == 0, res.output
    assert "--extra-symbols has no effect without a target kernel" in res.stderr
    res = check(
        built_hello, "--kdir", str(host_kdir), "--extra-symbols", str(host_kdir / "Module.symvers")
    )
    assert res.exit_code == 0 and "no effect" not in res.stderr
