"""Every kernel users run (issue 12): security updates, bullseye's 5.10, arm64 built and
booted, struct-size known, one-line verdicts. Real Docker, Debian mirror and QEMU."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import require, run_kmod_py

from kbuild_py.debian import archive as debian
from kbuild_py.seams import qemu

MATRIX = ["debian:bookworm", "debian:bookworm/arm64", "debian:trixie", "debian:trixie/arm64"]


def check_json(ko: Path, spec: str) -> dict:
    res = run_kmod_py(["check", str(ko), "--kernel", spec, "--json"])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout)["modules"][0]


@pytest.mark.docker
@pytest.mark.headers
def test_host_built_module_for_the_current_bookworm_kernel_passes(
    built_hello, host_release, docker_client
) -> None:  # type: ignore[no-untyped-def]
    """The issue's first report: a module built for the host's 6.1.0-57 got 30 CRC errors
    against debian:bookworm, which ignored bookworm-security."""
    current = debian.current_release("bookworm")
    require(host_release == current,
            f"host headers of Debian's current bookworm kernel {current} (have {host_release};"
            " make test's setup installs linux-headers-amd64)")
    res = run_kmod_py(["check", str(built_hello), "--kernel", "debian:bookworm"])
    assert res.exit_code == 0, res.output
    assert f"--- check: 18 rules against {current}" in res.output
    assert "SKIPPED" not in res.output and "built for" not in res.output


@pytest.mark.docker
def test_module_struct_size_runs_against_trixie_and_a_wrong_kernel_gets_one_line(
    scaffold,  # type: ignore[no-untyped-def]
) -> None:
    project = scaffold("hello_module")
    res = run_kmod_py(["build", str(project), "--kernel", "debian:trixie"])
    assert res.exit_code == 0, res.output
    trixie = debian.current_release("trixie")
    ko = project / ".kmod-py" / trixie / "hello_module.ko"
    d = check_json(ko, "debian:trixie")
    assert d["ok"] and "module-struct-size" in d["rules_run"], d["rules_skipped"]
    # the same module against bookworm: one leading line, then grouped findings
    res = run_kmod_py(["check", str(ko), "--kernel", "debian:bookworm"])
    assert res.exit_code == 1, res.output
    bookworm = debian.current_release("bookworm")
    lines = res.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("--- check:"))
    assert lines[head + 1] == (
        f"built for {trixie}, target is {bookworm}: rebuild with "
        f"`kmod-py build --kernel {bookworm}`"
    )
    assert res.output.count("hint:") <= len(
        {ln.split()[1] for ln in lines if ln.startswith(("ERROR", "WARNING"))}
    )


@pytest.mark.docker
def test_bullseye_and_bookworm_arm64_build_and_check(scaffold) -> None:  # type: ignore[no-untyped-def]
    project = scaffold("hello_module")
    res = run_kmod_py([
            "build",
            str(project),
            "--kernel",
            "debian:bullseye",
            "--kernel",
            "debian:bookworm/arm64",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = {d["kernel"]: d for d in json.loads(res.stdout)}
    bullseye, arm = data["debian:bullseye"], data["debian:bookworm/arm64"]
    assert re.fullmatch(r"5\.10\.0-\d+-amd64", bullseye["release"])
    assert bullseye["compiler"].startswith("gcc-10 ")
    assert re.fullmatch(r"6\.1\.0-\d+-arm64", arm["release"])
    assert arm["release"] == debian.current_release("bookworm", "arm64")
    (mod,) = arm["modules"]
    assert mod["vermagic"] == f"{arm['release']} SMP mod_unload modversions aarch64"
    assert all(c["ok"] for d in data.values() for c in d["checks"])
    ko = project / ".kmod-py" / arm["release"] / "hello_module.ko"
    assert ko.read_bytes()[18:20] == b"\xb7\x00"  # e_machine EM_AARCH64
    d = check_json(ko, "debian:bookworm/arm64")
    assert d["ok"] and "elf-machine" in d["rules_run"] and "modversions" in d["rules_run"]
    assert "module-struct-size" in d["rules_run"], d["rules_skipped"]
    log = (project / ".kmod-py" / arm["release"] / "build.log").read_text()
    assert "ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc-12" in log


@pytest.mark.qemu
@pytest.mark.docker
def test_two_by_two_matrix_and_bullseye_boot_in_one_command(scaffold) -> None:  # type: ignore[no-untyped-def]
    """bookworm and trixie on amd64 and arm64, plus bullseye's 5.10: build, boot, load."""
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86_64 (qemu-system-x86)")
    require(
        shutil.which("qemu-system-aarch64") is not None, "qemu-system-aarch64 (qemu-system-arm)"
    )
    project = scaffold("hello_module")
    specs = ["debian:bullseye", *MATRIX]
    res = run_kmod_py(["test", str(project), *[a for s in specs for a in ("-k", s)], "-j", "2"]
    )
    assert res.exit_code == 0, res.output
    table = res.output[res.output.index("KERNEL ") :]
    for spec in specs:
        row = next(ln for ln in table.splitlines() if ln.startswith(spec + " "))
        assert re.search(r"\sPASS\s.*\stcg\s+ok\s+ok\s+OE$", row), row
    assert "5.10.0-" in table and re.search(r"6\.1\.0-\d+-arm64", table)
    assert re.search(r"6\.12\.\d+\+deb13-arm64", table)
    assert "TCG: arm64 guest on a x86_64 host" in res.output
