"""Check reports in text: the built-for line, findings of one rule grouped (pure)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from kbuild_py.check.model import Finding, ModuleReport
from kbuild_py.report.check import built_for_line, findings_text, report_dict

HINT = "rebuild the module against the target kernel's headers (kmod-py build --kernel T)"


def crc_findings(n: int) -> list[Finding]:
    return [
        Finding(
            "modversions",
            "error",
            f"m: disagrees about version of symbol sym{i}",
            f"module has 0x{i:08x}, T exports 0x{i + 1:08x}: {HINT}",
        )
        for i in range(n)
    ]


def report(
    findings: list[Finding],
    vermagic: str = "6.1.0-57-amd64 SMP preempt mod_unload ",
    target: str = "6.12.117+deb13-amd64",
) -> ModuleReport:
    module = SimpleNamespace(
        vermagic=vermagic, name="m", modinfo=[], signature=None, compression=None
    )
    return ModuleReport(
        Path("m.ko"),
        module,
        findings,
        target=target,  # type: ignore[arg-type]
        ran=["vermagic", "modversions"],
    )


def test_a_module_for_another_kernel_gets_one_leading_line() -> None:
    r = report(crc_findings(2))
    assert built_for_line(r) == (
        "built for 6.1.0-57-amd64, target is 6.12.117+deb13-amd64: "
        "rebuild with `kmod-py build --kernel 6.12.117+deb13-amd64`"
    )
    lines = findings_text(r).splitlines()
    assert lines[1] == built_for_line(r)
    assert built_for_line(report([], target="6.1.0-57-amd64")) is None
    assert built_for_line(report([], target=None)) is None  # type: ignore[arg-type]


def test_thirty_crc_findings_are_grouped_with_one_hint() -> None:
    text = findings_text(report(crc_findings(30)))
    assert text.count("disagrees about version") == 3
    assert "… and 27 more like these (30 in all; --verbose or --json lists every one)" in text
    assert text.count("hint:") == 1 and f"hint: {HINT}\n" in text
    assert "result: FAILED (30 errors)" in text


def test_verbose_and_json_keep_every_finding() -> None:
    r = report(crc_findings(30))
    text = findings_text(r, verbose=True)
    assert text.count("disagrees about version") == 30 and text.count("hint:") == 30
    assert len(report_dict(r)["findings"]) == 30
    assert report_dict(r)["built_for"] == "6.1.0-57-amd64"


def test_a_few_findings_stay_as_they_are() -> None:
    text = findings_text(report(crc_findings(4)))
    assert text.count("disagrees about version") == 4 and "more like these" not in text
    assert text.count("hint:") == 4
