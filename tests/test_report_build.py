"""kmod-py build --junit and the GitHub step summaries of build and test (fake runner at the
process seam; the gitlab-ci-local pipeline test reads the same reports from real builds)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from kbuild_py.build.plan import BuildOptions
from kbuild_py.build.run import build_all
from kbuild_py.check.model import Finding, ModuleReport
from kbuild_py.report import build as rb
from kbuild_py.report.table import append_step_summary, markdown_table
from tests.test_build_run import FakeRunner, project, target


def two_kernels(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = project(tmp_path)
    ok = target(tmp_path, FakeRunner(["  CC [M]  m.o"], 0, "m.ko"), "6.1.0-9-amd64")
    bad_lines = [f"{p}/.kmod-py/6.12.0-1-amd64/m.c:1:1: error: boom",
                 f"{p}/.kmod-py/6.12.0-1-amd64/m.c:2:1: error: bang", "make: *** [x] Error 2"]
    bad = target(tmp_path, FakeRunner(bad_lines, 2), "6.12.0-1-amd64")
    return p, build_all(p, [ok, bad], BuildOptions(run_checks=False, expected_modules=["m"]),
                        jobs=1)


def test_junit_one_case_per_kernel_and_module_with_first_errors(tmp_path: Path) -> None:
    p, results = two_kernels(tmp_path)
    root = ET.fromstring(rb.to_junit(results, p, ["m"]))
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["6.1.0-9-amd64 (6.1.0-9-amd64)",
                                              "6.12.0-1-amd64 (6.12.0-1-amd64)"]
    (ok,) = suites[0].findall("testcase")
    assert ok.get("name") == "m (6.1.0-9-amd64)" and ok.find("failure") is None
    (bad,) = suites[1].findall("testcase")  # not built: the module kmod.toml names
    assert bad.get("name") == "m (6.12.0-1-amd64)"
    failure = bad.find("failure")
    assert failure is not None and failure.get("type") == "build"
    assert failure.get("message") == f"{p}/m.c:1:1: error: boom (make exit 2)"
    assert f"{p}/m.c:2:1: error: bang" in (failure.text or "")
    assert "full log:" in (failure.text or "")


def test_junit_check_errors_fail_the_module_and_infra_errors_are_errors(tmp_path: Path) -> None:
    p, results = two_kernels(tmp_path)
    ok = results[0]
    ok.reports = [ModuleReport(ok.modules[0], None, [
        Finding("vermagic", "error", "version magic 'x' should be 'y'"),
        Finding("taint", "info", "taints O")], ran=["vermagic", "taint"])]
    results[1].error = "image kmod-py/kernel:6.12.0-1-amd64 could not be built"
    results[1].expected = []
    root = ET.fromstring(rb.to_junit(results, p))
    cases = root.findall("testsuite/testcase")
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "check"
    assert failure.get("message") == "check: [vermagic] version magic 'x' should be 'y'"
    assert "rules run: vermagic, taint" in (cases[0].findtext("system-out") or "")
    error = cases[1].find("error")
    assert error is not None and "could not be built" in error.get("message", "")
    assert cases[1].get("name") == "module (6.12.0-1-amd64)"  # no .ko, no kmod.toml names
    assert root.get("failures") == "1" and root.get("errors") == "1"


def test_cli_build_junit_file_is_checked_before_building(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kbuild_py.cli import app

    p = project(tmp_path)
    res = CliRunner().invoke(app, ["build", str(p), "--junit", str(tmp_path / "no/such/x.xml")])
    assert res.exit_code == 2 and "cannot write --junit" in res.output


def test_step_summary_markdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, results = two_kernels(tmp_path)
    md = rb.step_summary(results)
    assert md.startswith("### kmod-py build\n\n| kernel | release | result |")
    assert "| 6.1.0-9-amd64 | 6.1.0-9-amd64 | ✅ ok | 0 | m.ko |" in md
    assert "| 6.12.0-1-amd64 | 6.12.0-1-amd64 | ❌ FAILED |" in md
    assert f"{p}/m.c:1:1: error: boom" in md
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary(md) is False
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert append_step_summary(md) and append_step_summary("second\n")
    assert summary.read_text() == "earlier step\n" + md + "\n" + "second\n\n"


def test_markdown_table_escapes_pipes() -> None:
    expected = "| a | b |\n| --- | --- |\n| x\\|y | z w |"
    assert markdown_table(["a", "b"], [["x|y", "z\nw"]]) == expected


def test_test_step_summary_from_real_logs() -> None:
    from kbuild_py.boot import run as tr
    from kbuild_py.report import test as report_test
    from tests.test_boot_run import _result

    results = [_result("6.1-crc-dep.log", "kmodpy_crc"), _result("6.1-oops.log", "kmodpy_oops"),
               tr.TestResult("image:x", "7.0-amd64", "error", error="no kernel image")]
    md = report_test.step_summary(results)
    assert md.startswith("### kmod-py test\n\n| kernel | release | result |")
    assert "| debian:bookworm | 6.1.0-56-amd64 | ✅ PASS | 4.2 s | tcg | ok | ok | OE |" in md
    assert "❌ FAIL" in md and "NULL pointer" in md
    assert "**7.0-amd64**: no kernel image" in md


class _Terminal:
    """A stream that says it is a terminal (what rich and LiveView test for)."""

    def __init__(self) -> None:
        import io

        self.buf = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return self.buf.write(s)

    def flush(self) -> None:
        pass


def test_live_view_off_a_terminal_prints_the_plain_lines(tmp_path: Path) -> None:
    import io

    p, results = two_kernels(tmp_path)
    out = io.StringIO()
    view = rb.LiveView(p, True, False, out)
    view.line(results[0].target, "  CC [M]  m.o")
    view.done(results[0])
    view.close()
    text = out.getvalue()
    assert text.startswith("[6.1.0-9-amd64]   CC [M]  m.o\n") and "\x1b" not in text


def test_live_view_on_a_terminal_draws_a_live_area_and_keeps_diagnostics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    p, results = two_kernels(tmp_path)
    term = _Terminal()
    view = rb.LiveView(p, True, False, term)  # type: ignore[arg-type]
    assert view._live is not None
    view.line(results[1].target, "  CC [M]  m.o")
    assert view._running["6.12.0-1-amd64"][1] == "CC [M]  m.o"  # the area's latest step
    view.line(results[1].target, f"{p}/.kmod-py/6.12.0-1-amd64/m.c:1:1: error: boom")
    view.done(results[1])
    assert not view._running
    view.close()
    assert view._live is None
    text = term.buf.getvalue()
    assert "[6.12.0-1-amd64] m.c:1:1: error: boom" in text
    assert "kernel 6.12.0-1-amd64" in text  # the outcome block


def test_tables_on_a_terminal_are_drawn_by_rich() -> None:
    from kbuild_py.report.table import table

    plain = table(["RULE", "SEVERITY"], [["x [bold]y[/]", "error"]])
    assert plain == "RULE          SEVERITY\n------------  --------\nx [bold]y[/]  error"
    drawn = table(["RULE", "SEVERITY"], [["x [bold]y[/]", "error"]], _Terminal())  # type: ignore[arg-type]
    assert "x [bold]y[/]" in drawn and "─" in drawn  # cells are data, never markup
