"""`train(cfg, run)`: a Trainer inside golf's run directory conventions (what train.py and the benchmarks call).

Around `ResumableTrainer.run` (golf/train/resumable.py) this adds what a submission does not need: the resume policy
(`cfg.resume`), the rank-0 Tracker (W&B, history.jsonl; the same W&B run continues on resume), metrics.json
(written only after the final checkpoint, so a run without it is an interrupted run), the after-training
callback, and leaving the process group.

Resume policy, decided from the run directory before anything is written:
- `resume=auto` (default): `resume.pt` and no `metrics.json` -> continue from it (history.jsonl is cut back to
  the resume step); `metrics.json` present -> one-line error, the run is finished; otherwise start fresh.
- `resume=never`: a directory that already holds a run (metrics.json, resume.pt, checkpoint.pt or
  history.jsonl) -> one-line error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.compliance import summary_values as compliance_summary
from golf.train.context import RunContext
from golf.train.dist import collective_errors, init_distributed, teardown
from golf.train.resumable import ResumableTrainer
from golf.train.resume import RESUME_NAME, Preempted, ResumeError, ResumePoint, check_same_run, load_resume
from golf.train.tracking import HISTORY_NAME, METRICS_NAME, Tracker, write_json

log = logging.getLogger("golf.train")

RUN_FILES = (METRICS_NAME, RESUME_NAME, CHECKPOINT_NAME, HISTORY_NAME)


def check_resume_policy(cfg, run_dir: str | Path) -> None:
    """The refusals of `cfg.resume` for `run_dir`, from file names alone (the torchrun parent checks them before
    starting the ranks). Raises ResumeError (one line)."""
    run_dir = Path(run_dir)
    if cfg.resume == "never":
        held = [n for n in RUN_FILES if (run_dir / n).exists()]
        if held:
            raise ResumeError(f"{run_dir} already holds a run ({', '.join(held)}) and resume=never; "
                              "use a new run directory")
    elif (run_dir / METRICS_NAME).exists():
        raise ResumeError(f"{run_dir} holds a finished run ({METRICS_NAME}); use a new run directory")


def resume_point_for(cfg, run_dir: str | Path) -> ResumePoint | None:
    """Apply `cfg.resume` to `run_dir` (see the module docstring). Raises ResumeError (one line)."""
    run_dir = Path(run_dir)
    check_resume_policy(cfg, run_dir)
    if cfg.resume == "never" or not (run_dir / RESUME_NAME).exists():
        return None
    point = load_resume(run_dir / RESUME_NAME)
    check_same_run(point.config, cfg, run_dir / RESUME_NAME)
    return point


def _keep_row(row: dict, step: int) -> bool:
    """A history row the resumed run will not log again: before `step`, or at `step` but not a validation (the
    resumed run validates at `step` when it is due, as the uninterrupted run did)."""
    at = row.get("step", 0)
    return at < step or (at == step and not any(k.startswith("val/") for k in row))


def _cut_history(run_dir: Path, step: int) -> None:
    """Drop the history.jsonl rows the resumed run logs again (all of them for a fresh start, step 0)."""
    path = run_dir / HISTORY_NAME
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.strip()]
    kept = [line for line in lines if _keep_row(json.loads(line), step)] if step > 0 else []
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def train(cfg, run: RunContext, clock: Callable[[], float] = time.perf_counter, tracker=None) -> dict:
    """Train (or continue) the run in `run.run_dir`; returns the final metrics on every rank.

    `tracker`: use this one instead of building the Tracker from `cfg.logger` (its W&B run is then not resumed).

    Raises Preempted (after the resume point is written and W&B is closed) when a stop signal arrived.
    """
    ctx = init_distributed(cfg.trainer.device, cfg.dist.timeout_s)
    run_dir = Path(run.run_dir)
    given = tracker
    tracker = None
    try:
        point = resume_point_for(cfg, run_dir)
        if ctx.is_main:
            _cut_history(run_dir, point.step if point else 0)
        tracker = given or Tracker(cfg.logger, run_dir, job_type="train", config=run.config, name=run.name,
                          group=run.group, tags=run.tags, active=ctx.is_main,
                          resume_id=str(point.trainer.get("wandb_id") or "") if point else "")
        trainer = ResumableTrainer(cfg, run, tracker, clock=clock)
        with collective_errors(ctx.rank, ctx.world_size, cfg.dist.timeout_s):
            metrics = trainer.run(point)
        if ctx.is_main:
            write_json(run_dir / METRICS_NAME, metrics)  # after checkpoint.pt: its presence means finished
            (run_dir / RESUME_NAME).unlink(missing_ok=True)
        tracker.summary({"val/bpb": metrics["val_bpb"], "val/loss": metrics["val_loss"], "params": metrics["params"],
                         "steps": metrics["steps"], "train_time_s": metrics["train_time_s"],
                         **compliance_summary(metrics["compliance"])})
        if run.after_train is not None:
            metrics = run.after_train(metrics, trainer.model, tracker)
        tracker.finish(0)
        teardown(barrier=True)
        return metrics
    except Preempted as stop:
        log.warning(f"preempted: {stop}")
        tracker.finish(stop.exit_code)
        teardown(barrier=True)
        if stop.chain is not None:
            stop.chain()  # e.g. submitit: requeue this job, then exit
        raise
    except BaseException:
        if tracker is not None:
            tracker.finish(1)
        raise
    finally:
        teardown()
