"""JUnit XML, the one writer: suites of cases, each passed or with a failure, an error or a
skip, and its output. Counts are derived from the cases; text that XML 1.0 cannot carry
(control characters from a console log, ANSI colour codes) is cleaned on the way out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from xml.etree import ElementTree as ET

# C0 controls but tab/newline/return, non-characters, and lone surrogates (undecodable bytes
# of a file name, kept by surrogateescape): none of them can be in an XML 1.0 document
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Outcome:
    kind: Literal["failure", "error", "skipped"]
    message: str
    type: str | None = None
    text: str = ""


@dataclass
class Case:
    classname: str
    name: str
    time: float | None = None
    outcome: Outcome | None = None  # None: passed
    output: str | None = None  # <system-out>


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)
    time: float | None = None


def clean(text: str) -> str:
    """Text an XML 1.0 document can hold: colour codes dropped, control characters '?'."""
    return _NOT_XML.sub("?", _ANSI.sub("", text))


def _counts(cases: Sequence[Case]) -> dict[str, str]:
    kinds = [c.outcome.kind for c in cases if c.outcome is not None]
    return {"tests": str(len(cases)), "failures": str(kinds.count("failure")),
            "errors": str(kinds.count("error")), "skipped": str(kinds.count("skipped"))}


def _suite(parent: ET.Element | None, s: Suite) -> ET.Element:
    attrs = {"name": clean(s.name), **_counts(s.cases)}
    if s.time is not None:
        attrs["time"] = f"{s.time:.2f}"
    el = ET.Element("testsuite", attrs) if parent is None else ET.SubElement(
        parent, "testsuite", attrs)
    for c in s.cases:
        case = ET.SubElement(el, "testcase", {"classname": clean(c.classname),
                                              "name": clean(c.name)})
        if c.time is not None:
            case.set("time", f"{c.time:.2f}")
        if c.outcome is not None:
            o = ET.SubElement(case, c.outcome.kind, {"message": clean(c.outcome.message)})
            if c.outcome.type:
                o.set("type", c.outcome.type)
            if c.outcome.text:
                o.text = clean(c.outcome.text)
        if c.output is not None:
            ET.SubElement(case, "system-out").text = clean(c.output)
    return el


def _text(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def suites_xml(name: str, suites: Sequence[Suite]) -> str:
    """<testsuites name=...> with totals, a <testsuite> per suite."""
    all_cases = [c for s in suites for c in s.cases]
    root = ET.Element("testsuites", {"name": clean(name), **_counts(all_cases)})
    for s in suites:
        _suite(root, s)
    return _text(root)


def suite_xml(suite: Suite) -> str:
    """A single <testsuite> as the document's root."""
    return _text(_suite(None, suite))
