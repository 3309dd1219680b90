"""golf.bench.code_floor: the tracer sees the lines a program reaches; the floor drops exactly the others."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from golf.bench.code_floor import _Unreached, floor, reached_lines

PROGRAM = textwrap.dedent('''
    import sys

    def used(n):
        if n > 100:
            print("big")
            raise ValueError(f"n={n} is too big")
        return n + 1

    def never_called():
        return "unused text that only this function holds" * 3

    if __name__ == "__main__":
        print(used(1))
''')


def test_the_tracer_reports_the_lines_the_run_reached(tmp_path: Path):
    reached = reached_lines(PROGRAM, tmp_path)
    lines = PROGRAM.split("\n")
    hit = {lines[i - 1].strip() for i in reached}
    assert "return n + 1" in hit and "print(used(1))" in hit
    assert 'print("big")' not in hit and 'return "unused text that only this function holds" * 3' not in hit


def test_a_failing_run_is_reported_with_its_output(tmp_path: Path):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        reached_lines("print(1 / 0)\n", tmp_path)


def test_unreached_statements_go_and_raises_stay_only_when_asked(tmp_path: Path):
    reached = reached_lines(PROGRAM, tmp_path)
    kept = ast.unparse(_Unreached(reached, keep_raise=True).visit(ast.parse(PROGRAM)))
    assert "raise ValueError" in kept and 'print("big")' not in kept and "unused text" not in kept
    assert "return n + 1" in kept
    bare = ast.unparse(_Unreached(reached, keep_raise=False).visit(ast.parse(PROGRAM)))
    assert "raise" not in bare and "return n + 1" in bare


def test_the_floor_is_below_the_shipped_bytes(tmp_path: Path):
    config = {"quant": {"codec": "zlib"}, "budget": {"code_wrapper": "lzma", "code_text": "base85"}}
    result = floor(PROGRAM, config, 10_000, reached_lines(PROGRAM, tmp_path))
    assert result.reached_no_raise < result.reached < 10_000
    assert result.statements_reached < result.statements
