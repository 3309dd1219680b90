"""Hydra callback that records sweep jobs: registered in conf/train.yaml as `hydra.callbacks.golf_sweep`.

on_job_end (runs in the job's process: the sweep's own for the basic launcher, the worker for submitit)
    writes <job_dir>/status.json — `completed`, or `failed` with the error when the job returned a JobFailed
    marker (golf.entry catches the job's exception) or raised — then refreshes the sweep's summary, so a
    summary exists even if the sweep itself dies later (e.g. an Optuna search whose trials all failed).
on_job_start / on_job_end (basic launcher: the sweep's process) log "sweep: job k/N" with elapsed time and an
    ETA from the mean job time (N from the sweep's parameters; Optuna: n_trials; unknown -> k only).
on_multirun_end (the sweep's process, after the sweeper finished)
    writes the final summary.json / summary.md, prints where they are, and — with `fail_on_job_failure`
    (default true) — exits with status 1 when a job failed, after every job ran (Hydra's own semantics,
    hydra#1465, without hiding the other jobs' results).
Single (non-multirun) runs are not touched.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from golf.sweep.job import JobFailed
from golf.sweep.progress import SweepProgress, expected_jobs
from golf.sweep.records import COMPLETED, FAILED, SUMMARY_MD, write_status
from golf.sweep.summary import write_summary

log = logging.getLogger("golf.sweep")


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


class SweepCallback(Callback):
    """Writes status.json per job and summary.json/md per sweep (see the module docstring)."""

    def __init__(self, fail_on_job_failure: bool = True) -> None:
        self.fail_on_job_failure = fail_on_job_failure
        self._progress = SweepProgress()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._progress = SweepProgress(expected_jobs(config))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            log.info(self._progress.start())

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        value = job_return._return_value
        if job_return.status == JobStatus.FAILED:
            status, error, number = FAILED, f"{type(value).__name__}: {value}", None
        elif isinstance(value, JobFailed):
            status, error, number = FAILED, str(value), None
        else:
            status, error = COMPLETED, ""
            number = float(value) if isinstance(value, int | float) else None
        write_status(job_dir, status, list(job_return.overrides or []), error, number)
        log.info(self._progress.end(status))
        try:
            write_summary(Path(config.hydra.sweep.dir).absolute())
        except Exception as exc:  # never let bookkeeping fail a job that trained
            log.warning(f"could not refresh the sweep summary: {exc}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        summary = write_summary(sweep_dir)
        best = summary["best"]
        log.info(f"sweep summary: {sweep_dir / SUMMARY_MD} ({summary['n_completed']} completed, "
                 f"{summary['n_failed']} failed, {summary['n_incomplete']} incomplete)"
                 + (f"; best job {best['job']} val_bpb {best['val_bpb']:.5f} ({best['score']})" if best else ""))
        bad = summary["n_failed"] + summary["n_incomplete"]
        if bad and self.fail_on_job_failure:
            print(f"error: {bad} of {summary['n_jobs']} sweep jobs did not complete; see {sweep_dir / SUMMARY_MD}",
                  file=sys.stderr)
            sys.exit(1)
