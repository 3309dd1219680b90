"""Train a golf model: compose (Hydra) -> validate -> golf.train.

    python train.py experiment=smoke                       # one CPU-sized run
    torchrun --standalone --nproc_per_node=8 train.py experiment=baseline
    python train.py experiment=baseline dist.nproc_per_node=8        # the same: re-launches itself under torchrun
    python train.py -m experiment=smoke seed=1,2,3          # a sweep under multirun/
    python train.py sweep=seeds experiment=baseline         # a preset sweep (conf/sweep/: grid, seeds, optuna)
    python train.py --cfg job                               # print the resolved config
    python train.py experiment=smoke hydra.run.dir=DIR      # again after SIGTERM/SIGUSR1: continues DIR (resume=auto)

Returns the submitted val_bpb (the round trip of the artifact with export_after=true, else the pre-quantization
score), so Hydra sweepers (Optuna) can minimize it. In a sweep, a job that fails returns a
JobFailed marker instead and the sweep goes on (golf.entry); see multirun/README.md for the outputs.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import register_configs
from golf.device import device_choice
from golf.entry import EntryContext, guarded_main, run_entry, run_group
from golf.io import run_lock
from golf.preflight import format_summary, preflight
from golf.summary import RunSummary
from golf.summary import format_summary as format_summary_block
from golf.sweep.job import after_train_for
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.config import TrainRunConfig
from golf.train.context import check_data
from golf.train.resume import Preempted
from golf.train.run import check_resume_policy, train

log = logging.getLogger("golf")

register_configs()


def _train(cfg: TrainRunConfig, ctx: EntryContext) -> float:
    _device_and_preflight(cfg, ctx)
    try:
        if needs_torchrun(cfg.dist):
            check_resume_policy(cfg, ctx.run_dir)  # one line here, not one per rank
            run_id = f"{ctx.run_dir.parent.name}_{ctx.run_dir.name}" if ctx.multirun else ctx.run_dir.name
            group = run_group(cfg.logger.group, cfg.experiment_name, cfg.sweep_name, ctx.multirun)
            result = run_under_torchrun(Path(__file__).resolve(), ctx.overrides, ctx.run_dir,
                                        cfg.dist.nproc_per_node, group, run_id)
            return result.get("roundtrip_val_bpb", result["val_bpb"])
        if os.environ.get("RANK", "0") != "0":  # torchrun ranks > 0 share rank 0's directory and lock
            metrics = train(cfg, ctx.run_context(cfg, after_train_for(cfg, ctx.run_dir)))
        else:
            with run_lock(ctx.run_dir, "train"):  # a second training into this directory exits with one line
                metrics = train(cfg, ctx.run_context(cfg, after_train_for(cfg, ctx.run_dir)))
    except Preempted as stop:  # the resume point is on disk: the same command (same run directory) continues it
        log.warning(f"exiting with status {stop.exit_code}: {stop}")
        sys.exit(stop.exit_code)
    if not ctx.multirun and os.environ.get("RANK", "0") == "0":
        print(format_summary_block(train_summary(cfg, metrics, ctx.run_dir)), flush=True)
    # Sweepers (Optuna) minimize what is submitted: the artifact's round-trip val_bpb when export_after ran.
    return metrics.get("roundtrip_val_bpb", metrics["val_bpb"])


def train_summary(cfg: TrainRunConfig, m: dict, run_dir: Path) -> RunSummary:
    """Summary of a training run: its pre-quantization score, and the artifact's when export_after ran."""
    rt = "roundtrip_val_bpb" in m
    return RunSummary(
        "train", run_dir, m.get("roundtrip_val_loss", m["val_loss"]), m.get("roundtrip_val_bpb", m["val_bpb"]),
        m.get("val_tokens"), cfg.eval.max_tokens, cfg.eval.mode,
        "artifact round trip" if rt else "checkpoint, pre-quantization", m.get("artifact_bytes"),
        None, m.get("code_bytes"), cfg.budget.target_bytes, m.get("train_time_s"),
        notes=[f"pre-quantization val_bpb {m['val_bpb']:.5f}"] if rt else [])


def _device_and_preflight(cfg: TrainRunConfig, ctx: EntryContext) -> None:
    """First lines of a run: the device chosen and why (a bad trainer.device fails here, one line, before any
    work), the data check (tokenizer, shard headers), then the preflight's one-line summary and its warnings
    (rank 0 only)."""
    device, why = device_choice(cfg.trainer.device, int(os.environ.get("LOCAL_RANK", "0")))
    if os.environ.get("RANK", "0") != "0" or ctx.multirun and cfg.dist.nproc_per_node > 1:
        return
    log.info(f"device: {device} ({why})")
    check_data(cfg)  # a missing tokenizer or shard: one line now, not after the preflight's seconds of work
    report = preflight(cfg, device="cuda" if needs_torchrun(cfg.dist) else device.type)
    log.info(format_summary(report))
    for w in report.warnings:
        log.warning(f"preflight warning: {w}")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, TrainRunConfig, _train)


if __name__ == "__main__":
    guarded_main(main)
