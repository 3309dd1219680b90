"""Glue between Hydra and golf: validate the composed config, describe the run, report user errors.

The entrypoints (train.py, export.py, eval.py) call `run_entry`, which is the only place that knows about
HydraConfig: their body gets the typed config and a typed `EntryContext` (run_dir, overrides, tags, ...). User errors (GolfError: bad config, data, artifact, budget) print one line `error: ...` and exit
with status 2 in a single run. Inside a multirun every exception of a job is logged to the job's log file and
turned into a `JobFailed` return value: the sweep goes on with the other jobs, the golf_sweep callback records
the job as failed (status.json, summary.json) and Optuna marks the trial FAIL (hydra#1465, #2551).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from golf.config import to_typed
from golf.errors import GolfError
from golf.sweep.job import JobFailed
from golf.sweep.launch import TorchrunJobError
from golf.train.context import RunContext
from golf.train.tracking import choice_tags, compact_override, experiment_overrides, override_tags

log = logging.getLogger("golf")


@dataclass
class EntryContext:
    """What Hydra knows about the current job, typed: the second argument of every entry point's body."""

    run_dir: Path
    choices: dict[str, str | None]
    """Hydra group choices (model -> baseline, ...)."""
    overrides: list[str]
    """Command-line / sweep overrides of this job."""
    multirun: bool
    job_num: int | None
    output_subdir: str | None
    """Hydra's output subdir (.hydra), None when a launcher owns the directory (torchrun children)."""
    config: dict = field(default_factory=dict)
    """The resolved config as plain containers (logged to W&B), without the hydra node."""
    tags: list[str] = field(default_factory=list)
    """W&B tags: group choices and swept values."""

    def run_context(self, cfg, after_train=None) -> RunContext:
        """The typed RunContext of a training job (name from the overrides, group, tags + experiment tag)."""
        return RunContext(run_dir=self.run_dir, name=run_name(self, cfg.experiment_name),
                          group=run_group(cfg.logger.group, cfg.experiment_name, cfg.sweep_name, self.multirun),
                          tags=self.tags + [f"experiment:{cfg.experiment_name}"], config=self.config,
                          after_train=after_train)


def hydra_context() -> EntryContext:
    """Run directory, Hydra group choices, overrides and mode of the current Hydra job."""
    hc = HydraConfig.get()
    return EntryContext(run_dir=Path(hc.runtime.output_dir), choices=dict(hc.runtime.choices),
                        overrides=list(hc.overrides.task), multirun=hc.mode == RunMode.MULTIRUN,
                        job_num=hc.job.get("num", None), output_subdir=hc.output_subdir)


def run_name(ctx: EntryContext, fallback: str) -> str:
    """Readable run name from the command-line overrides (e.g. 'model.num_layers=11,seed=2')."""
    return ",".join(compact_override(o) for o in experiment_overrides(ctx.overrides))[:120] or fallback


def run_group(logger_group: str, experiment_name: str, sweep_name: str, multirun: bool) -> str:
    """W&B group: logger.group if set, else the sweep's name inside a multirun, else the experiment's."""
    return logger_group or (sweep_name if multirun else experiment_name)


def run_entry(cfg: DictConfig, schema: type, body: Callable[[Any, EntryContext], Any]) -> Any:
    """Validate `cfg` against `schema`, then call body(typed_cfg, EntryContext). Returns body's result."""
    ctx = hydra_context()
    _quiet_non_main_ranks()
    try:
        typed = to_typed(cfg, schema)
        ctx.config = OmegaConf.to_container(cfg, resolve=True)
        ctx.config.pop("hydra", None)
        swept = [o for o in ctx.overrides if o.split("=", 1)[0].lstrip("+~") not in ctx.choices]
        ctx.tags = choice_tags(ctx.choices) + override_tags(swept)  # group choices are tagged once
        return body(typed, ctx)
    except Exception as exc:
        if ctx.multirun:
            return _job_failed(exc)
        if not isinstance(exc, GolfError):
            raise
        if ctx.output_subdir is None or isinstance(exc, TorchrunJobError):
            # a launcher owns this directory (we are its torchrun child), or the ranks' logs hold the story
            log.error(f"error: {exc}")
            sys.exit(2)
        _remove_hydra_outputs()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _job_failed(exc: Exception) -> JobFailed:
    """Log a sweep job's exception to its log file (traceback unless it is a user error) and mark it failed."""
    if isinstance(exc, GolfError):
        log.error(f"error: {exc}")
    else:
        log.exception(f"job failed: {type(exc).__name__}: {exc}")
    return JobFailed.from_exception(exc)


def _remove_hydra_outputs() -> None:
    """Undo what Hydra wrote for a run that failed on bad input: its config copy, its log file, and the run
    directory itself when nothing else is in it. Checkpoints and artifacts are never touched."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if any((run_dir / n).exists() for n in ("metrics.json", "resume.pt", "checkpoint.pt", "history.jsonl")):
        return  # the directory holds an earlier run (e.g. refused by resume=never): its log and .hydra stay
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == run_dir:
            root.removeHandler(h)
            h.close()
            Path(h.baseFilename).unlink(missing_ok=True)
    if hc.output_subdir:
        shutil.rmtree(run_dir / hc.output_subdir, ignore_errors=True)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _quiet_non_main_ranks() -> None:
    """Only rank 0 prints to the console under torchrun; every rank keeps its own log file."""
    import os

    if os.environ.get("RANK", "0") != "0":
        root = logging.getLogger()
        for h in list(root.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                root.removeHandler(h)


def require_override(key: str, usage: str, argv: list[str] | None = None) -> None:
    """Exit with one line (status 2) when the mandatory override `key=` is missing from the command line,
    before Hydra resolves a run directory from it (which would otherwise fail with a long traceback).
    Hydra's own flags (--help, --cfg, -m, ...) are left to Hydra."""
    args = sys.argv[1:] if argv is None else argv
    if any(a.startswith("-") for a in args) or any(a.split("=", 1)[0].lstrip("+~") == key for a in args):
        return
    print(f"error: missing {key}=; usage: {usage}", file=sys.stderr)
    sys.exit(2)
