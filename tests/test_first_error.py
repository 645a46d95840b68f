"""The real first error reaches the per-kernel summary and --json `errors` (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_kmod_py

from kbuild_py.build.run import parse_diagnostic

LKMPG_HELLO1 = """#include <linux/kernel.h>
#include <linux/module.h>
int init_module(void) { pr_info("Hello world 1.\\n"); return 0; }
void cleanup_module(void) { pr_info("Goodbye world 1.\\n"); }
MODULE_LICENSE("GPL");
"""


@pytest.mark.parametrize(("line", "kind", "tool"), [
    ("hello1.o: error: objtool: init_module(): Magic init_module() function name is "
     "deprecated, use module_init(fn) instead", "error", "objtool"),
    ("m.o: warning: objtool: f()+0x1: call without frame pointer", "warning", "objtool"),
    ('ERROR: modpost: "foo" [/p/m.ko] undefined!', "error", "modpost"),
    ("/p/core/Module.symvers: No such file or directory", "error", "file"),
])
def test_tool_diagnostics_are_parsed(line: str, kind: str, tool: str) -> None:
    d = parse_diagnostic(line)
    assert d is not None and (d.kind, d.tool) == (kind, tool)


@pytest.mark.docker
@pytest.mark.slow
def test_objtool_error_on_7x_is_the_first_error(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "hello1.c").write_text(LKMPG_HELLO1)
    (tmp_path / "Kbuild").write_text("obj-m += hello1.o\n")
    res = run_kmod_py(["build", tmp_path, "--kernel", "debian:trixie-backports", "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout[res.stdout.index("[\n"):])[0]
    assert doc["result"] == "FAILED"
    assert "objtool: init_module(): Magic init_module() function name is deprecated" in (
        doc["errors"][0]
    )
    # the human summary leads with it too
    summary = res.output[res.output.index("build failed (make exit"):]
    assert "objtool: init_module()" in summary.splitlines()[1]
