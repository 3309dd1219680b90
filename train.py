"""Train a golf model: compose (Hydra) -> validate -> golf.train.

    python train.py experiment=smoke                       # one CPU-sized run
    torchrun --standalone --nproc_per_node=8 train.py experiment=baseline
    python train.py experiment=baseline dist.nproc_per_node=8        # the same: re-launches itself under torchrun
    python train.py -m experiment=smoke seed=1,2,3          # a sweep under multirun/
    python train.py sweep=seeds experiment=baseline         # a preset sweep (conf/sweep/: grid, seeds, optuna)
    python train.py --cfg job                               # print the resolved config
    python train.py experiment=smoke hydra.run.dir=DIR      # again after SIGTERM/SIGUSR1: continues DIR (resume=auto)

Returns the final val_bpb, so Hydra sweepers (Optuna) can minimize it. In a sweep, a job that fails returns a
JobFailed marker instead and the sweep goes on (golf.entry); see multirun/README.md for the outputs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import register_configs
from golf.entry import EntryContext, run_entry, run_group
from golf.sweep.job import after_train_for
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.config import TrainRunConfig
from golf.train.resume import Preempted
from golf.train.run import check_resume_policy, train

register_configs()


def _train(cfg: TrainRunConfig, ctx: EntryContext) -> float:
    try:
        if needs_torchrun(cfg.dist):
            check_resume_policy(cfg, ctx.run_dir)  # one line here, not one per rank
            run_id = f"{ctx.run_dir.parent.name}_{ctx.run_dir.name}" if ctx.multirun else ctx.run_dir.name
            group = run_group(cfg.logger.group, cfg.experiment_name, cfg.sweep_name, ctx.multirun)
            return run_under_torchrun(Path(__file__).resolve(), ctx.overrides, ctx.run_dir, cfg.dist.nproc_per_node,
                                      group, run_id)["val_bpb"]
        return train(cfg, ctx.run_context(cfg, after_train_for(cfg, ctx.run_dir)))["val_bpb"]
    except Preempted as stop:  # the resume point is on disk: the same command (same run directory) continues it
        logging.getLogger("golf").warning(f"exiting with status {stop.exit_code}: {stop}")
        sys.exit(stop.exit_code)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, TrainRunConfig, _train)


if __name__ == "__main__":
    main()
