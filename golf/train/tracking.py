"""Run records on rank 0: W&B (offline by default), a JSONL history and metrics.json in the run directory.

Files in a run directory: `history.jsonl` (one JSON object per logged step), `metrics.json` (final numbers).
Both are readable without W&B, which is what `golf.report` uses.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from golf.train.config import LoggerConfig

HISTORY_NAME = "history.jsonl"
METRICS_NAME = "metrics.json"
WANDB_LINK_NAME = "wandb_run.json"


def train_run_link(run_dir: str | Path) -> dict:
    """{"id", "group", "project"} of the training run's W&B run in `run_dir` ({} when it had none)."""
    try:
        return json.loads((Path(run_dir) / WANDB_LINK_NAME).read_text())
    except (OSError, ValueError):
        return {}


def git_sha(cwd: str | Path | None = None) -> str:
    """Current commit of the repository holding golf (with '-dirty' when there are local edits), or ''."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if sha and dirty else sha


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (tmp + rename), so a crash never leaves a half-written metrics file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per-process: sweep jobs may write concurrently
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'num_layers': 9}} -> {'model.num_layers': 9} (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    """Rank-0 sink for metrics. Inactive (every call a no-op) on other ranks.

    `log(metrics, step)` appends to history.jsonl and W&B; `summary(metrics)` sets W&B summary values;
    `finish()` closes W&B (always call it, also on failure, so the next sweep job starts clean).
    `resume_id` continues that W&B run (wandb.init(id=..., resume="allow")) when a run is resumed.
    """

    def __init__(self, cfg: LoggerConfig, run_dir: str | Path, *, job_type: str, config: dict, name: str,
                 group: str, tags: list[str], active: bool = True, resume_id: str = ""):
        self.active = active
        self.run_dir = Path(run_dir)
        self.run = None
        self.history_path = self.run_dir / HISTORY_NAME
        if not active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.name == "wandb":
            import wandb

            os.environ.setdefault("WANDB_MODE", cfg.mode)
            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project=cfg.project, entity=cfg.entity or None, group=cfg.group or group, job_type=job_type,
                name=name, tags=sorted(set(tags) | set(cfg.tags)), config={**flatten(config), "git_sha": git_sha()},
                dir=str(self.run_dir), reinit="finish_previous",
                **({"id": resume_id, "resume": "allow"} if resume_id else {}),
            )
            if job_type == "train":  # export/eval of this run join its group and reference its id
                write_json(self.run_dir / WANDB_LINK_NAME, {"id": self.run.id, "group": self.run.group or group,
                                                            "project": cfg.project})

    @property
    def run_id(self) -> str:
        """The W&B run id ('' without W&B): stored in resume points so a resumed run continues the same run."""
        return self.run.id if self.run is not None else ""

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.active:
            return
        with self.history_path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def choice_tags(choices: dict[str, str | None]) -> list[str]:
    """Hydra runtime choices -> W&B tags like 'model:baseline' (Hydra's own groups skipped)."""
    return sorted(f"{g}:{c}" for g, c in choices.items() if c and not g.startswith("hydra") and g != "local")


# W&B rejects tags longer than 64 characters.
MAX_TAG_CHARS = 64
# Overrides that only route a run (where it writes, which W&B group) and say nothing about the experiment.
PLUMBING_PREFIXES = ("hydra.", "hydra/", "logger.group=", "run_dir=", "path=")


def experiment_overrides(overrides: list[str]) -> list[str]:
    """The command-line / sweep overrides that change the experiment (routing overrides dropped)."""
    return [o for o in overrides if not o.startswith(PLUMBING_PREFIXES)]


def override_tags(overrides: list[str]) -> list[str]:
    """Swept and command-line values as W&B tags ('seed=2', 'optim.matrix_lr=0.04'), cut to 64 characters."""
    return [o[:MAX_TAG_CHARS] for o in experiment_overrides(overrides)]


def compact_override(override: str, digits: int = 4) -> str:
    """'optim.matrix_lr=0.01828204085025884' -> 'optim.matrix_lr=0.01828' for names and tables (not for tags,
    which must match the exact value); other overrides unchanged."""
    key, sep, value = override.partition("=")
    if not sep or "." not in value or len(value) <= digits + 3:
        return override
    try:
        return f"{key}={float(value):.{digits}g}"
    except ValueError:
        return override


def read_json(path: str | Path) -> dict:
    """Load a JSON object written by `write_json`."""
    return json.loads(Path(path).read_text())
