"""What a training job does around `golf.train.run.train`: its failure marker and its after-training work.

`after_train_for(cfg, run_dir)` builds the `RunContext.after_train` callback golf.train.run calls on every rank once
training is over, before the W&B run closes, so that everything lands in the same run:
  - under torchrun, the largest parameter difference between any rank and rank 0 (0.0 when DDP and the
    distributed Muon keep the replicas identical) -> metrics["rank_param_max_abs_diff"]; then every rank
    leaves the process group (the loop's own teardown becomes a no-op);
  - with `export_after=true`, rank 0 exports the checkpoint (golf.export_run.export_run: quantize, compress,
    budget check, round-trip eval) -> bytes_total, artifact_bytes, code_bytes, roundtrip_val_bpb, ...;
  - rank 0 rewrites metrics.json with those values and puts the challenge's numbers (val_bpb, val_loss,
    bytes_total, params, steps, train_time_s) into the W&B summary under their submission.json names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from golf.train.dist import teardown
from golf.train.tracking import METRICS_NAME, Tracker, write_json

log = logging.getLogger("golf.sweep")

SUMMARY_KEYS = ("val_bpb", "val_loss", "bytes_total", "artifact_bytes", "code_bytes", "params", "steps",
                "train_time_s", "ms_per_step", "roundtrip_val_bpb", "roundtrip_val_loss", "quant_gap_bpb",
                "rank_param_max_abs_diff")


@dataclass(frozen=True)
class JobFailed:
    """Return value of a sweep job that raised: the job is recorded as failed and the sweep goes on.

    Deliberately not float-castable: Optuna's sweeper then marks the trial FAIL and continues (a NaN would
    crash its `study.tell`), and Hydra's basic sweeper ignores return values. Picklable for submitit.
    """

    error_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobFailed:
        text = str(exc).strip().splitlines()
        return cls(type(exc).__name__, text[0] if text else "")


def rank_param_divergence(model: nn.Module) -> float:
    """Max |p_rank - p_rank0| over all parameters and ranks; 0.0 outside a process group. Collective."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 0.0
    worst = None
    for p in model.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        diff = (p.detach().float() - ref.float()).abs().max()
        worst = diff if worst is None else torch.maximum(worst, diff)
    if worst is None:
        return 0.0
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst.item())


def summary_values(metrics: dict) -> dict:
    """The metrics that go into the W&B summary under their flat (submission.json) names."""
    out = {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
    if metrics.get("compliance"):  # after export_after: the export's block (bytes included)
        from golf.train.compliance import summary_values as compliance_summary

        out.update(compliance_summary(metrics["compliance"]))
    return out


def after_train_for(cfg, run_dir: str | Path) -> Callable[[dict, nn.Module, Tracker], dict]:
    """The RunContext.after_train callback for a typed TrainRunConfig (see the module docstring)."""
    run_dir = Path(run_dir)

    def after_train(metrics: dict, model: nn.Module, tracker: Tracker) -> dict:
        metrics = dict(metrics)
        if metrics.get("world_size", 1) > 1:
            metrics["rank_param_max_abs_diff"] = rank_param_divergence(model)
            if metrics["rank_param_max_abs_diff"] > 0:
                log.warning(f"ranks hold different parameters: max |p - p_rank0| = "
                            f"{metrics['rank_param_max_abs_diff']:.3g}")
            # The collectives of training are over; leave the group now so rank 0's export evaluates alone
            # (evaluation all-reduces whenever a group exists, and the other ranks are about to exit).
            teardown(barrier=True)
        if not tracker.active:  # rank > 0: rank 0 exports and writes the records
            return metrics
        if cfg.export_after:
            metrics.update(_export(cfg, run_dir))
        write_json(run_dir / METRICS_NAME, metrics)
        tracker.summary(summary_values(metrics))
        return metrics

    return after_train


def _export(cfg, run_dir: Path) -> dict:
    """Export the job's checkpoint into <run_dir>/model.<scheme>+<codec>.golf; the byte and round-trip numbers for metrics."""
    from golf.device import pick_device
    from golf.export_run import export_run
    from golf.record import submission_code_bytes

    device = pick_device(cfg.trainer.device, int(os.environ.get("LOCAL_RANK", "0")))
    result = export_run(run_dir, cfg.quant, cfg.budget, cfg.eval, device, code_bytes=submission_code_bytes)
    out = {k: result[k] for k in ("bytes_total", "artifact_bytes", "code_bytes", "compliance") if k in result}
    if "val_bpb" in result:
        out.update(roundtrip_val_bpb=result["val_bpb"], roundtrip_val_loss=result["val_loss"],
                   quant_gap_bpb=result["quant_gap_bpb"])
    return out
