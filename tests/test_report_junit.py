"""The one JUnit writer (report.junit): counts derived from the cases, XML 1.0-safe text."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from kbuild_py.report import junit


def test_suites_counts_and_outcomes() -> None:
    suites = [
        junit.Suite("k1", [junit.Case("c", "ok", 1.0, None, "fine"),
                           junit.Case("c", "bad", 2.0, junit.Outcome("failure", "boom", "build",
                                                                     "line 1\nline 2"))], 3.0),
        junit.Suite("k2", [junit.Case("c", "infra", None, junit.Outcome("error", "no daemon")),
                           junit.Case("c", "skip", None, junit.Outcome("skipped", "excluded"))]),
    ]
    root = ET.fromstring(junit.suites_xml("kmod-py build", suites))
    assert root.tag == "testsuites" and root.get("name") == "kmod-py build"
    assert [root.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["4", "1", "1", "1"]
    k1, k2 = root.findall("testsuite")
    assert (k1.get("tests"), k1.get("failures"), k1.get("time")) == ("2", "1", "3.00")
    assert k2.get("time") is None and k2.get("errors") == "1" and k2.get("skipped") == "1"
    bad = k1.findall("testcase")[1].find("failure")
    assert bad is not None and bad.get("type") == "build" and bad.text == "line 1\nline 2"
    assert k1.findall("testcase")[0].findtext("system-out") == "fine"


def test_text_xml_cannot_carry_is_cleaned() -> None:
    case = junit.Case("c", "n", outcome=junit.Outcome("failure", "\x1b[31mred\x1b[0m \x00"),
                      output="console \x07 bell")
    text = junit.suite_xml(junit.Suite("s", [case]))
    root = ET.fromstring(text)  # would raise on a raw control character
    assert root.tag == "testsuite"
    assert root.find("testcase/failure").get("message") == "red ?"
    assert root.findtext("testcase/system-out") == "console ? bell"
