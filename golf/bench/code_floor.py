"""How small a generated train_gpt.py could get by bundling alone: `python -m golf.bench.record --floor PRESET`.

golf.record ships every statement a config *can* reach: CUDA paths, the checks of run-time input, the branches a
manifest value picks. This measurement runs the generated program at CPU scale (scale=cpu_tiny, 4 steps, 4,096
eval tokens, official data layout under --data-root) under a line tracer and counts what the file would weigh
with less:

- `reached`: every statement the run never reached removed (a function never called keeps only `pass`), the
  `raise` statements kept;
- `reached, no raise`: the same with every `raise` removed too.

Both are minified and wrapped exactly as shipped (golf.record.bundle.minify_flat, golf.record.wrapper.wrap_config).
Neither is a program anyone should ship: the CUDA branches alone forbid it. They are floors: the counted bytes no
tree shaking, folding or check removal can go under while the code that a CPU run executes stays as it is. A code
byte target below `reached, no raise` needs the executed core itself to shrink.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from golf.record.bundle import minify_flat
from golf.record.wrapper import wrap_config

CPU_SCALE = ("scale=cpu_tiny", "logger=none", "data.root=./data", "schedule.iterations=4", "eval.max_tokens=4096",
             "trainer.train_batch_tokens=4096")
"""The overrides of the CPU-scale run (the record tests' TINY)."""
TRACER = """
import json, os, runpy, sys, threading
script, out = os.path.abspath(sys.argv[1]), sys.argv[2]
reached = set()
def trace(frame, event, arg):
    if frame.f_code.co_filename != script:
        return None
    if event == "line":
        reached.add(frame.f_lineno)
    return trace
sys.argv = [script]
sys.settrace(trace)
threading.settrace(trace)
try:
    runpy.run_path(script, run_name="__main__")
finally:
    sys.settrace(None)
    with open(out, "w") as f:
        json.dump(sorted(reached), f)
"""
"""Runs a program as __main__ with a line tracer on its own file; writes the line numbers it reached as JSON."""


@dataclass
class Floor:
    """Counted code bytes (of the CPU-scale config's file) as shipped, and without what its run never reached."""

    shipped: int
    reached: int
    reached_no_raise: int
    statements: int
    statements_reached: int


def reached_lines(program: str, data_root: Path, timeout: float = 900) -> set[int]:
    """Line numbers of `program` (a flat readable program) that running it as __main__ reaches, in a temporary
    folder whose ./data links to `data_root`. Raises RuntimeError with the run's last output when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data").symlink_to(data_root.resolve(), target_is_directory=True)
        (folder / "train_gpt.py").write_text(program, encoding="utf-8")
        (folder / "tracer.py").write_text(TRACER, encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RUN_ID": "floor"}
        proc = subprocess.run([sys.executable, "tracer.py", "train_gpt.py", "reached.json"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"the CPU-scale run failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        return set(json.loads((folder / "reached.json").read_text()))


class _Unreached(ast.NodeTransformer):
    """Drops the statements of function bodies (and their nested blocks) that the run never reached."""

    def __init__(self, reached: set[int], keep_raise: bool):
        self.reached, self.keep_raise = reached, keep_raise

    def _keep(self, stmt: ast.stmt) -> bool:
        return (stmt.lineno in self.reached or isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                or (self.keep_raise and isinstance(stmt, ast.Raise)))

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if isinstance(node, (ast.Module, ast.ClassDef)):
            return node  # module and class bodies run at import: all reached
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, field, [s for s in block if self._keep(s)] or [ast.Pass()])
        return node


def floor(program: str, config: dict, shipped: int, reached: set[int]) -> Floor:
    """The Floor of `program` (flat readable, for plain `config`) given the lines its run reached."""
    def counted(keep_raise: bool) -> int:
        tree = _Unreached(reached, keep_raise).visit(ast.parse(program))
        return len(wrap_config(minify_flat(ast.unparse(tree)), config).encode("utf-8"))

    statements = [n for n in ast.walk(ast.parse(program)) if isinstance(n, ast.stmt)]
    return Floor(shipped, counted(True), counted(False), len(statements),
                 sum(s.lineno in reached for s in statements))
