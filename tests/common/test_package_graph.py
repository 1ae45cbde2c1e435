"""Packages under services/ form a DAG: no import cycle between them, and services.common is a leaf.

A package is `services.<name>`; imports are read with ast (top-level and function-local alike),
so a lazy import inside a function counts as a dependency too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"


def _imported_modules(path: Path) -> set[str]:
    module_parts = list(path.relative_to(SERVICES.parent).with_suffix("").parts)
    package_parts = module_parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    packages = {p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists()}
    graph: dict[str, set[str]] = {name: set() for name in packages}
    for name in packages:
        for path in (SERVICES / name).rglob("*.py"):
            for module in _imported_modules(path):
                parts = module.split(".")
                if len(parts) > 1 and parts[0] == "services" and parts[1] in packages and parts[1] != name:
                    graph[name].add(parts[1])
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_between_packages():
    cycles = _cycles(package_graph())
    assert not cycles, "import cycles between packages: " + "; ".join(" -> ".join(c) for c in cycles)


def test_common_imports_no_other_package():
    assert package_graph()["common"] == set()


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_services_import_no_dev_tooling():
    """The image ships services/ only: nothing there may need devtools, tests or bench."""
    offenders = sorted(
        f"{path.relative_to(SERVICES.parent)}: {module}"
        for path in SERVICES.rglob("*.py")
        for module in _imported_modules(path)
        if module.split(".")[0] in ("devtools", "tests", "bench")
    )
    assert not offenders, offenders
