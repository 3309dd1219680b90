"""Glue between Hydra and golf: validate the composed config, describe the run, report user errors.

The entrypoints (train.py, export.py, eval.py) call `run_entry`, which is the only place that knows about
HydraConfig: their body gets the typed config and a typed `EntryContext` (run_dir, overrides, tags, ...). User errors (GolfError: bad config, data, artifact, budget) print one line `error: ...` and exit
with status 2 in a single run. Inside a multirun every exception of a job is logged to the job's log file and
turned into a `JobFailed` return value: the sweep goes on with the other jobs, the golf_sweep callback records
the job as failed (status.json, summary.json) and Optuna marks the trial FAIL (hydra#1465, #2551).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from golf.config import to_typed
from golf.errors import GolfError
from golf.io import atomic_write_bytes
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
        message = " ".join(str(exc).split("\n"))  # one line, whatever the message holds
        if ctx.output_subdir is None or isinstance(exc, TorchrunJobError):
            # a launcher owns this directory (we are its torchrun child), or the ranks' logs hold the story
            log.error(f"error: {message}")
            sys.exit(2)
        _remove_hydra_outputs()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _job_failed(exc: Exception) -> JobFailed:
    """Log a sweep job's exception to its log file (traceback unless it is a user error) and mark it failed."""
    if isinstance(exc, GolfError):
        log.error(f"error: {exc}")
    else:
        log.exception(f"job failed: {type(exc).__name__}: {exc}")
    return JobFailed.from_exception(exc)


class OutputGuard(Callback):
    """Hydra callback (``hydra.callbacks.golf_outputs`` in every entry point's YAML): before Hydra touches the run
    directory, remember what is already there, so a run that fails on bad input removes only what it created.

    Remembered: whether the run directory existed, the bytes of the files in its Hydra output subdir (Hydra
    overwrites them before the task starts) and the size of the job's log file (Hydra appends to it).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _SNAPSHOT.clear()
        try:
            run_dir = Path(str(config.hydra.run.dir)).absolute()
        except OmegaConfBaseException:
            return  # e.g. eval.py without path=: Hydra's run_job raises it again, guarded_main prints one line
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(run_dir)  # what run_job sets next; the log filename uses it
        subdir = run_dir / config.hydra.output_subdir if config.hydra.output_subdir else None
        log_file = OmegaConf.select(config, "hydra.job_logging.handlers.file.filename", default=None)
        log_path = Path(str(log_file)).absolute() if log_file else None
        _SNAPSHOT.update(
            run_dir=run_dir, existed=run_dir.is_dir(), subdir=subdir,
            locks={p.name for p in run_dir.glob(".golf-*.lock")},
            products={n for n in RUN_PRODUCTS if (run_dir / n).exists()},
            subdir_files=({p.name: p.read_bytes() for p in subdir.iterdir() if p.is_file()}
                          if subdir is not None and subdir.is_dir() else None),
            log=log_path, log_size=log_path.stat().st_size if log_path is not None and log_path.is_file() else None,
        )


_SNAPSHOT: dict[str, Any] = {}
RUN_PRODUCTS = ("metrics.json", "resume.pt", "checkpoint.pt", "history.jsonl", "model.golf", "export.json",
                "eval.json")
"""Files a run, export or eval leaves behind; a failing invocation that created one keeps its log and .hydra."""


def _remove_hydra_outputs() -> None:
    """Undo what this invocation wrote for a run that failed on bad input, and nothing else: lock files it
    created; unless it already left a run product (RUN_PRODUCTS: e.g. a resume point), also the lines it appended
    to the log (the log itself when it created it), its .hydra copy (restored to the previous run's when there was
    one) and the run directory when this invocation created it and left it empty. Checkpoints, artifacts and
    reports are never touched. Without an OutputGuard snapshot (the callback is not configured) nothing is
    removed."""
    snap = dict(_SNAPSHOT)
    if not snap:
        return
    run_dir = snap["run_dir"]
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and snap["log"] is not None and Path(h.baseFilename) == snap["log"]:
            root.removeHandler(h)
            h.close()
    if run_dir.is_dir():
        for p in run_dir.glob(".golf-*.lock"):
            if p.name not in snap["locks"]:
                p.unlink(missing_ok=True)
    if any((run_dir / n).exists() and n not in snap["products"] for n in RUN_PRODUCTS):
        return  # this invocation trained and left a resumable state: its log and .hydra tell that story
    log_path = snap["log"]
    if log_path is not None and log_path.is_file():
        if snap["log_size"] is None:
            log_path.unlink(missing_ok=True)
        else:
            os.truncate(log_path, snap["log_size"])
    subdir = snap["subdir"]
    if subdir is not None and subdir.is_dir():
        if snap["subdir_files"] is None:
            shutil.rmtree(subdir, ignore_errors=True)
        else:
            for p in subdir.iterdir():
                if p.is_file() and p.name not in snap["subdir_files"]:
                    p.unlink()
            for name, data in snap["subdir_files"].items():
                if not (subdir / name).is_file() or (subdir / name).read_bytes() != data:
                    atomic_write_bytes(subdir / name, data)
    if not snap["existed"] and run_dir.is_dir():
        shutil.rmtree(run_dir / "wandb", ignore_errors=True)  # the tracker's, when it started before the error
        if not any(run_dir.iterdir()):
            run_dir.rmdir()


def hydra_error_line(exc: BaseException) -> str | None:
    """One line for an error Hydra or OmegaConf raised while composing a config (bad override, type error,
    missing preset, missing mandatory value), naming the key; None for anything else."""
    chain = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(isinstance(x, HydraException | OmegaConfBaseException) for x in chain):
        return None
    for x in chain:
        if isinstance(x, MissingMandatoryValue) or "Missing mandatory value" in str(x):
            key = str(x).split("Missing mandatory value:", 1)[-1].strip().splitlines()[0].strip() or "?"
            return f"missing required config value '{key}' (set it on the command line: {key}=...)"
    for x in chain:
        if isinstance(x, MissingConfigException):
            first = str(x).strip().splitlines()[0]
            options = [o for o in getattr(x, "options", None) or [] if not o.startswith("base_")]  # schemas
            return first + (f"; available: {', '.join(options)}" if options else "")
    first = [str(x).strip().splitlines()[0] for x in chain if str(x).strip() and "$VALUE" not in str(x)]
    if isinstance(exc, OverrideParseException):
        return f"cannot parse override: {first[0]}"
    text = ": ".join(dict.fromkeys(first))  # 'Error merging override k=v: Value 'v' ... could not be converted'
    key = next((getattr(x, "full_key", None) for x in chain if getattr(x, "full_key", None)), None)
    return text if key is None or key in text else f"{text} (key '{key}')"


def guarded_main(main: Callable[[], Any]) -> Any:
    """Run a ``@hydra.main`` function so that Hydra's own multi-line errors (composition, override parsing,
    missing presets, missing mandatory values such as eval.py's ``path``) print one line and exit 2."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        return main()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises instead of printing; we print one line
    try:
        return main()
    except Exception as exc:
        line = hydra_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def _quiet_non_main_ranks() -> None:
    """Only rank 0 prints to the console under torchrun; every rank keeps its own log file."""
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
