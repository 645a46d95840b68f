"""The layout's rules, read from the source: the project import graph has no cycles, model
modules import nothing else of kmod-py, the foundation imports only itself, only cli/ imports
typer, and an import inside a function outside cli/ says why it is lazy.

Every import counts, including those inside function bodies; imports under
`if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "kbuild_py"
# trust.fs (contained writes, locks) imports only errors: paths.output_dir stands on it
FOUNDATION = {"kbuild_py", "kbuild_py.errors", "kbuild_py.paths", "kbuild_py.licenses",
              "kbuild_py.progress",
              "kbuild_py.trust", "kbuild_py.trust.fs"}
MODELS = {"kbuild_py.check.model", "kbuild_py.images.model", "kbuild_py.kernels.spec"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import that can run."""
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, in_func)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno, in_func) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                # `from pkg import module` imports the module; `from mod import name`, mod
                out.append((full if full in MODULES else node.module, node.lineno, in_func))
        func = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, in_func or func)

    visit(ast.parse(path.read_text()), False)
    return out


GRAPH = {
    name: sorted({m for m, _, _ in imports(path) if m in MODULES and m != name})
    for name, path in MODULES.items()
}


def test_every_module_is_seen() -> None:
    assert "kbuild_py.check.engine" in MODULES and "kbuild_py.cli" in MODULES
    assert GRAPH["kbuild_py.check.engine"], "the parser found no imports: it is broken"


def test_every_project_import_names_a_module() -> None:
    """An import of a module that moved away fails here, not only when its command runs."""
    sources = [*MODULES.values(), *sorted(PKG.parent.glob("tests/*.py")),
               *sorted(PKG.parent.glob("bench/*.py"))]
    missing = [
        f"{path.relative_to(PKG.parent)}:{line} imports {mod}"
        for path in sources
        for mod, line, _ in imports(path)
        if mod.startswith("kbuild_py.") and mod not in MODULES
    ]
    assert not missing, "\n".join(missing)


def test_project_import_graph_is_acyclic() -> None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in GRAPH[node]:
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep, stack)
        stack.pop()
        state[node] = 2

    for name in GRAPH:
        if name not in state:
            dfs(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_model_modules_import_nothing_else_of_the_project(model: str) -> None:
    assert model in MODULES
    assert GRAPH[model] == [], f"{model} imports {GRAPH[model]}"


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_foundation_imports_only_foundation(name: str) -> None:
    assert set(GRAPH[name]) <= FOUNDATION, f"{name} imports {GRAPH[name]}"


def test_only_cli_imports_typer() -> None:
    users = {
        name
        for name, path in MODULES.items()
        for m, _, _ in imports(path)
        if m == "typer" or m.startswith(("typer.", "click"))
    }
    assert users and all(u == "kbuild_py.cli" or u.startswith("kbuild_py.cli.") for u in users)


def test_lazy_project_imports_outside_cli_say_why() -> None:
    """An import of kmod-py inside a function (outside cli/, whose command bodies import
    lazily by design) carries a comment naming start-up: it must not dodge a cycle."""
    unexplained = []
    for name, path in MODULES.items():
        if name == "kbuild_py.cli" or name.startswith("kbuild_py.cli."):
            continue
        lines = path.read_text().splitlines()
        for mod, line, in_func in imports(path):
            if in_func and mod in MODULES:
                above = " ".join(lines[max(0, line - 4): line - 1])
                if "start-up" not in above:
                    unexplained.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
    assert not unexplained, "\n".join(unexplained)
