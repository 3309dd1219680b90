"""Multi-process jobs inside a sweep: a job that asks for N processes re-runs itself under torchrun.

Hydra's launchers start one process per job. A job with `dist.nproc_per_node=N > 1` that is not already under
torchrun (no RANK in its environment) runs

    python -m torch.distributed.run --standalone --nproc_per_node=N train.py <its overrides>
        logger.group=<its group> hydra.run.dir=<its job dir> hydra.output_subdir=null hydra.mode=RUN

with GOLF_RUN_ID set, waits, reads <job dir>/metrics.json and hands val_bpb back to the sweeper, so Optuna and
the summary work unchanged (the pattern of Lightning-AI/pytorch-lightning#18145 and #5629). The job directory
is shared: the parent keeps its `.hydra/` (the children write none), every rank logs to train_rank<r>.log.
`--standalone` gives each job its own rendezvous port, so parallel jobs on one node do not collide.

Preemption: SIGTERM/SIGUSR1/SIGUSR2 reaching this parent are passed to torchrun as SIGTERM (torchrun forwards it
to the ranks, which write resume.pt at the next step boundary and exit); once torchrun is gone the parent hands
the signal to the handler installed before (submitit: requeue) and raises Preempted. Started again (a requeued
job), the ranks continue the run directory (resume=auto).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from golf.errors import GolfError
from golf.train.config import DistConfig
from golf.train.resume import RESUME_NAME, Preempted, StopSignals
from golf.train.tracking import METRICS_NAME, read_json

log = logging.getLogger("golf.sweep")


class TorchrunJobError(GolfError):
    """The torchrun re-launch of a job failed (non-zero exit or no metrics.json); the message names the dir."""


def needs_torchrun(dist: DistConfig) -> bool:
    """True when the run asks for more than one process and is not already a torchrun worker."""
    return dist.nproc_per_node > 1 and "RANK" not in os.environ


def torchrun_command(script: str | Path, overrides: list[str], job_dir: Path, nproc: int, group: str) -> list[str]:
    """The argv that re-runs `script` under torchrun with the job's overrides, writing into `job_dir`.

    `hydra.mode=RUN` undoes a sweep preset's `hydra.mode: MULTIRUN`; `hydra.output_subdir=null` keeps the
    parent's `.hydra/`; `logger.group` carries the sweep's W&B group into the child (it runs in RUN mode).
    """
    plumbing = [f"logger.group={_quote(group)}", f"hydra.run.dir={_quote(str(job_dir))}",
                "hydra.output_subdir=null", "hydra.mode=RUN"]
    kept = [o for o in overrides if not o.startswith(("logger.group=", "hydra.run.dir=", "hydra.mode="))]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(script), *kept, *plumbing]


def run_under_torchrun(script: str | Path, overrides: list[str], job_dir: str | Path, nproc: int, group: str,
                       run_id: str, result: str | Path | None = None, log_glob: str = "train_rank*.log") -> dict:
    """Run the job under torchrun, wait, and return the JSON its rank 0 wrote.

    result: that JSON file (default <job_dir>/metrics.json; eval.py passes its eval.json, export.py its
    export.json); log_glob: the ranks' log files in job_dir, searched for the error line on failure.
    Output streams to this process's stdout/stderr (rank 0 prints, every rank logs to its file).
    Raises TorchrunJobError when torchrun exits non-zero or leaves no result file.
    """
    job_dir = Path(job_dir).absolute()
    cmd = torchrun_command(script, overrides, job_dir, nproc, group)
    log.info(f"dist.nproc_per_node={nproc}: running {' '.join(cmd[1:])}")
    env = {**os.environ, "GOLF_RUN_ID": run_id}
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.time()
    proc = subprocess.Popen(cmd, env=env)
    forwarded = False
    with StopSignals() as stop:
        while proc.poll() is None:
            if stop.received and not forwarded:
                proc.send_signal(signal.SIGTERM)  # torchrun passes SIGTERM on to every rank
                forwarded = True
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    if stop.received and (job_dir / RESUME_NAME).is_file() and not (job_dir / METRICS_NAME).is_file():
        preempted = Preempted(stop.received, -1, job_dir / RESUME_NAME)
        preempted.chain = stop.previous_handler(stop.received)
        if preempted.chain is not None:
            preempted.chain()  # e.g. submitit: requeue this job; the requeued job resumes the run directory
        raise preempted
    if proc.returncode != 0:
        last = last_error_line(job_dir, log_glob)
        raise TorchrunJobError(f"torchrun ({nproc} processes) exited with status {proc.returncode} in {job_dir}"
                               + (f": {last}" if last else f"; see {log_glob} there"))
    result_path = Path(result) if result else job_dir / METRICS_NAME
    if not result_path.is_file() or result_path.stat().st_mtime < started - 1.0:  # a stale file is no result
        raise TorchrunJobError(f"torchrun finished but wrote no {result_path.name} in {result_path.parent}")
    return read_json(result_path)


def last_error_line(job_dir: Path, log_glob: str = "train_rank*.log") -> str:
    """The last 'error: ...' line the ranks logged in `job_dir` (the child's one-line GolfError), or ''."""
    found = ""
    for path in sorted(job_dir.glob(log_glob)):
        for line in path.read_text(errors="replace").splitlines():
            if "error: " in line:
                found = line.split("error: ", 1)[1].strip()
    return found


def _quote(value: str) -> str:
    """Quote an override value for Hydra's grammar when it holds characters outside a plain path."""
    plain = all(c.isalnum() or c in "/._-" for c in value)
    if plain:
        return value
    if "'" in value or "\\" in value:
        raise TorchrunJobError(f"cannot pass {value!r} to torchrun as a Hydra override (quote or backslash)")
    return f"'{value}'"
