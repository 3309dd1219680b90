"""`--measure`: time real training steps of a config on this machine's GPU (golf.bench's loop, no W&B)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from golf.errors import GolfError


class MeasureError(GolfError, RuntimeError):
    """--measure cannot run here (no GPU)."""


def measure(overrides: list[str], steps: int = 20, allow_cpu: bool = False) -> dict:
    """Train `steps` timed steps of `overrides` (after the priming steps) on one GPU; ms/step measured here and
    scaled to 8 GPUs by the batch share (ideal data parallelism). Raises MeasureError without CUDA
    (`allow_cpu=True` runs the same path on the CPU, for tests)."""
    if not torch.cuda.is_available() and not allow_cpu:
        raise MeasureError("--measure needs a CUDA GPU; the estimate above stands")
    from golf.bench.train import ensure_bench_data
    from golf.preflight.compose import compose_train_config
    from golf.train.context import RunContext
    from golf.train.run import train

    ensure_bench_data()
    cfg = compose_train_config([*overrides, "logger=none", "trainer.checkpoint=false", "schedule.val_loss_every=0",
                                f"schedule.iterations={steps}", "schedule.max_wallclock_seconds=0",
                                "schedule.train_log_every=0", "eval.max_tokens=65536"])
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(cfg, RunContext(Path(tmp), "preflight-measure", "preflight"))
    ms = float(metrics["ms_per_step"])
    world = 1
    ms8 = ms * world / 8.0
    cap = float(cfg.schedule.max_wallclock_seconds) or 600.0
    return {"ms_per_step": ms, "steps": int(metrics["steps"]), "world_size": world,
            "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "ms_per_step_8gpu": ms8,
            "steps_in_cap_8gpu": int(cap * 1000.0 / ms8)}
