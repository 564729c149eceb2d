"""The import graph of rayling is layered: the public modules stand on ``rayling._private``,
never the reverse, and no module imports one that imports it back (directly or around a
longer loop). Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rayling"
ALLOWED_FROM_PRIVATE = {"rayling.exceptions"}  # every layer may raise rayling's errors


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The rayling modules that module ``name`` (in ``path``) imports."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                # "from pkg import mod" imports the module; "from mod import name" the module.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _is_private(module: str) -> bool:
    return module == "rayling._private" or module.startswith("rayling._private.")


def test_private_modules_never_import_public_ones():
    graph = import_graph()
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph.items() if _is_private(module)
                   for target in targets
                   if not _is_private(target) and target not in ALLOWED_FROM_PRIVATE)
    assert not wrong, "private modules importing public ones:\n  " + "\n  ".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "modules that import each other (directly or in a loop):\n  " + \
        "\n  ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_cycles_and_function_level_imports(tmp_path):
    """The two checks above would catch what they look for."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from .. import api\n    from .x import y\n")
    known = {"rayling.api", "rayling._private.x", "rayling._private.m"}
    assert _imports("rayling._private.m", module, known) == {"rayling.api", "rayling._private.x"}
