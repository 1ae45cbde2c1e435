"""The shape a newcomer can read: no class in services/ over 300 lines, no function over 60 (issue 18's gates;
complexity and docstrings are checked by ruff in `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60


def _spans() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(SERVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                out.append((kind, f"{path.relative_to(SERVICES.parent)}:{node.lineno} {node.name}",
                            node.end_lineno - node.lineno + 1))
    return out


def test_no_class_over_300_lines() -> None:
    big = [(where, n) for kind, where, n in _spans() if kind == "class" and n > MAX_CLASS_LINES]
    assert not big, big


def test_no_function_over_60_lines() -> None:
    big = [(where, n) for kind, where, n in _spans() if kind == "function" and n > MAX_FUNCTION_LINES]
    assert not big, big
