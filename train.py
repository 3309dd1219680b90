"""Train a golf model: compose (Hydra) -> validate -> golf.train.

    python train.py experiment=smoke                       # one CPU-sized run
    torchrun --standalone --nproc_per_node=8 train.py experiment=baseline
    python train.py experiment=baseline dist.nproc_per_node=8        # the same: re-launches itself under torchrun
    python train.py -m experiment=smoke seed=1,2,3          # a sweep under multirun/
    python train.py sweep=seeds experiment=baseline         # a preset sweep (conf/sweep/: grid, seeds, optuna)
    python train.py --cfg job                               # print the resolved config

Returns the final val_bpb, so Hydra sweepers (Optuna) can minimize it. In a sweep, a job that fails returns a
JobFailed marker instead and the sweep goes on (golf.entry); see multirun/README.md for the outputs.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import register_configs
from golf.entry import run_entry, run_group, run_name
from golf.sweep.job import after_train_for
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.config import TrainRunConfig
from golf.train.loop import RunInfo, train

register_configs()


def _train(cfg: TrainRunConfig, ctx: dict) -> float:
    group = run_group(cfg.logger.group, cfg.experiment_name, cfg.sweep_name, ctx["multirun"])
    if needs_torchrun(cfg.dist):
        run_id = f"{ctx['run_dir'].parent.name}_{ctx['run_dir'].name}" if ctx["multirun"] else ctx["run_dir"].name
        return run_under_torchrun(Path(__file__).resolve(), ctx["overrides"], ctx["run_dir"],
                                  cfg.dist.nproc_per_node, group, run_id)["val_bpb"]
    info = RunInfo(run_dir=ctx["run_dir"], name=run_name(ctx, cfg.experiment_name), group=group,
                   tags=ctx["tags"] + [f"experiment:{cfg.experiment_name}"], config=ctx["config"],
                   after_train=after_train_for(cfg, ctx["run_dir"]))
    return train(cfg, info)["val_bpb"]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, TrainRunConfig, _train)


if __name__ == "__main__":
    main()
