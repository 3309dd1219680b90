"""Helpers for tests/test_trainer.py: a tiny typed run config, a deterministic clock, a tracker that sends a real
signal to its own process at a given step — and, run as a script (alone or under torchrun), one training leg:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/resume_worker.py RUN_DIR DATA_ROOT \
        [--stop-at K] [--cap]

It trains through golf.train.run.train (resume=auto: a RUN_DIR holding resume.pt is continued) and exits with
the Preempted exit code when stopped; rank 0 writes history.jsonl / metrics.json / checkpoint.pt as train.py does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from golf.train.config import LoggerConfig, TrainRunConfig
from golf.train.tracking import Tracker

TICK_S = 0.0625  # a binary fraction: clock sums are exact, whatever the clock origin


def tiny_config(data_root: Path, cap: bool = False, **groups) -> TrainRunConfig:
    """2-layer d64 model, 64-token sequences, 1,024 tokens/step, 14 steps, EMA + late QAT, fp32 CPU.

    cap=True: a 1.5 s wallclock cap on the TickClock (2 ticks = 0.125 s per step) stops training at step 11."""
    values = {
        "data": {"root": str(data_root)},
        "model": {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2},
        "trainer": {"train_seq_len": 64, "train_batch_tokens": 1024, "grad_accum_base": 2, "device": "cpu",
                    "compile": "off"},
        "schedule": {"iterations": 14, "warmup_steps": 1, "warmdown_iters": 4, "val_loss_every": 5,
                     "train_log_every": 1, "max_wallclock_seconds": 1.5 if cap else 0.0},
        "optim": {"muon_momentum_warmup_steps": 4},
        "averaging": {"name": "ema", "ema_decay": 0.75},
        "quant": {"keep_float_max_numel": 1024, "qat": {"enabled": True, "late_threshold": 0.6}},
        "eval": {"batch_tokens": 4096, "max_tokens": 4096},
        "logger": {"name": "none"},
    }
    for group, over in groups.items():
        values[group] = {**values.get(group, {}), **over} if isinstance(over, dict) else over
    return TrainRunConfig.from_dict(values)


class TickClock:
    """Deterministic stand-in for time.perf_counter: every call advances by TICK_S seconds."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.calls * TICK_S


class SignalAtStep(Tracker):
    """The run's real tracker (history.jsonl) that also sends `signum` to this process when step `at` is logged."""

    def __init__(self, run_dir: Path, at: int, signum: int = signal.SIGUSR1, active: bool = True):
        super().__init__(LoggerConfig(name="none"), run_dir, job_type="train", config={}, name="t", group="t",
                         tags=[], active=active)
        self.at, self.signum, self.sent = at, signum, False

    def log(self, metrics: dict, step: int) -> None:
        super().log(metrics, step)
        if self.active and step == self.at and "train/loss" in metrics and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def main(argv: list[str] | None = None) -> int:
    from golf.train.context import RunContext
    from golf.train.resume import Preempted
    from golf.train.run import train

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--stop-at", type=int, default=0)
    parser.add_argument("--cap", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = tiny_config(args.data_root, cap=args.cap)
    tracker = None
    if args.stop_at:
        tracker = SignalAtStep(args.run_dir, args.stop_at, active=os.environ.get("RANK", "0") == "0")
    try:
        train(cfg, RunContext(args.run_dir), clock=TickClock(), tracker=tracker)
    except Preempted as stop:
        return stop.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
