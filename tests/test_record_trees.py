"""golf.record.trees.walk visits exactly what ast.walk visits, in the same order (the generator's passes rely on
the order: the first match wins in several of them)."""

from __future__ import annotations

import ast
from pathlib import Path

from golf.record.trees import walk

GOLF = Path(__file__).resolve().parents[1] / "golf"


def _same(tree: ast.AST) -> bool:
    return [id(n) for n in walk(tree)] == [id(n) for n in ast.walk(tree)]


def test_walk_matches_ast_walk_on_every_golf_module():
    modules = sorted(GOLF.rglob("*.py"))
    assert len(modules) > 100
    for path in modules:
        assert _same(ast.parse(path.read_text(encoding="utf-8"))), path


def test_walk_skips_optional_fields_never_set_and_starts_anywhere():
    bare = ast.Call(func=ast.Name(id="f"), args=[ast.Constant(1), ast.Name(id="x")], keywords=[])
    assert _same(bare) and [type(n).__name__ for n in walk(bare)] == ["Call", "Name", "Constant", "Name"]
    function = ast.parse("def f(a, *, b=2):\n    return [a for a in range(b) if a]\n").body[0]
    assert _same(function) and _same(function.body[0])
