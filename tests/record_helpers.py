"""Helpers of the record tests: compose a preset at CPU scale, run golf's own train -> export, run a generated
train_gpt.py in an interpreter that cannot import golf, hydra, omegaconf, wandb or tqdm."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from hydra import compose, initialize_config_dir

from golf.config import register_configs, to_typed
from golf.record.specialize import simplify
from golf.train.config import TrainRunConfig

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("golf", "hydra", "omegaconf", "wandb", "tqdm")
GUARD = (
    "import runpy,sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None  # import -> ImportError, find_spec -> None: as if not installed\n"
    "script = sys.argv[1]\nsys.argv = sys.argv[1:]\n"
    "runpy.run_path(script, run_name='__main__')\n"
)
TINY = ["scale=cpu_tiny", "logger=none", "data.root=./data", "schedule.iterations=4", "eval.max_tokens=4096",
        "trainer.train_batch_tokens=4096"]
FINAL = re.compile(r"final_\S+_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)")


def fold_once(fold, source: str) -> tuple[str, bool]:
    """`source` (dedented) after one `fold([tree])` of golf.record's folds and the simplifier: (the program,
    whether the fold changed it)."""
    tree = ast.parse(textwrap.dedent(source))
    changed = fold([tree])
    return ast.unparse(ast.fix_missing_locations(simplify(tree))), bool(changed)


def run_program(source: str, expr: str):
    """`expr` evaluated in the namespace that running `source` (dedented) leaves."""
    scope: dict = {}
    exec(compile(textwrap.dedent(source), "<p>", "exec"), scope)
    return eval(expr, scope)


def preset(name: str, *overrides: str) -> TrainRunConfig:
    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return to_typed(compose("train", overrides=[f"experiment={name}", *TINY, *overrides]), TrainRunConfig)


def data_dir(parent: Path, data_root: Path) -> Path:
    """A working directory whose ./data is the official layout over `data_root`."""
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "data").symlink_to(data_root, target_is_directory=True)
    return parent


def run_guarded(script: Path, cwd: Path, env: dict[str, str] | None = None, nproc: int = 1,
                timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `script` as a submission would run: cwd outside the repo, no PYTHONPATH, golf & co. blocked."""
    guard = cwd / "_guard.py"
    guard.write_text(GUARD)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GOLF_DATA_DIR")}
    full = {**base, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1", **(env or {})}
    if nproc == 1:
        cmd = [sys.executable, "-I", str(guard), str(script)]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", str(guard), str(script)]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def final_line(stdout: str) -> tuple[float, float]:
    m = FINAL.search(stdout)
    assert m, f"no final_..._roundtrip_exact line in:\n{stdout[-3000:]}"
    return float(m.group(1)), float(m.group(2))
