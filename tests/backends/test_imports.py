"""Imports point one way: no module of the hub imports, even late, one that imports it back.

A circle can hide in a function-local import (``hub.backends.redis`` and ``hub.ledger.redis``
once did), where importing either module alone still works; so the graph is read from the
source, counting imports inside functions too. Only ``if TYPE_CHECKING:`` blocks are left
out: they never run. Each backend and ledger module must also import on its own, first, in a
fresh interpreter, which a top-level circle breaks for one of its members.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((ROOT / "hub").rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, path: Path) -> set[str]:
    """The hub modules ``name`` imports, wherever in the file (a package's ``__init__`` that
    merely runs first is not counted: ``hub.media`` re-exports its own submodules)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(inner) for node in ast.walk(tree) if _type_checking_only(node) for inner in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # `from hub.backends import redis_link` imports a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    modules = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            modules.add(target)
    return modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def hub_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name, path) for name, path in MODULES.items()}


def test_no_import_cycle_among_hub_modules() -> None:
    assert cycles(hub_graph()) == []


def test_a_late_import_counts_and_a_type_only_one_does_not(tmp_path: Path) -> None:
    source = tmp_path / "late.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from hub.app import Hub\n"
                      "def build():\n    from hub.ledger.redis import RedisLedger\n")
    assert imported_modules("hub.backends.late", source) == {"hub.ledger.redis"}


def test_the_old_redis_circle_would_be_caught() -> None:
    graph = hub_graph()
    assert "hub.backends.redis_link" in graph["hub.ledger.redis"]
    graph["hub.backends.redis_link"].add("hub.ledger.redis")  # what a late import there would add
    assert ["hub.backends.redis_link", "hub.ledger.redis"] in cycles(graph)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(("hub.backends.", "hub.ledger."))))
def test_each_backend_and_ledger_module_imports_first_and_alone(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
