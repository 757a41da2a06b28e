"""The shape of the engine's code: no function in `ncverify/` longer than 60 lines of code
(its docstring, blank lines and comments not counted; decorators are not part of it).  A longer
function does several things, and each of them deserves a name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ncverify"
MAX_LINES = 60


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of code of a function from its `def` to its end, less its docstring."""
    skip: set[int] = set()
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            skip = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    count = 0
    for number in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        text = lines[number - 1].strip()
        if number not in skip and text and not text.startswith("#"):
            count += 1
    return count


def functions() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(PACKAGE.parent)}::{node.name}"
                found.append((name, node.name, code_lines(node, lines)))
    return found


def test_the_counter_counts_code_not_docstrings() -> None:
    source = (
        'def f(x):\n    """Doc.\n\n    More doc."""\n    # a comment\n\n    y = x\n    return y\n'
    )
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert code_lines(node, source.splitlines()) == 3  # def, y = x, return y


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [f"{name} ({lines} lines)" for name, _, lines in functions() if lines > MAX_LINES]
    assert functions() and not long, f"longer than {MAX_LINES} lines of code: {long}"
