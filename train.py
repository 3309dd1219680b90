"""Train a golf model: compose (Hydra) -> validate -> golf.train.

    python train.py experiment=smoke                       # one CPU-sized run
    torchrun --standalone --nproc_per_node=8 train.py experiment=baseline
    python train.py -m experiment=smoke seed=1,2,3          # a sweep under multirun/
    python train.py --cfg job                               # print the resolved config

Returns the final val_bpb, so Hydra sweepers (Optuna) can minimize it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from golf.config import TrainRunConfig, register_configs
from golf.entry import run_entry, run_name
from golf.train.loop import RunInfo, train

register_configs()


def _train(cfg: TrainRunConfig, ctx: dict) -> float:
    info = RunInfo(run_dir=ctx["run_dir"], name=run_name(ctx, cfg.experiment_name),
                   group=cfg.logger.group or (cfg.sweep_name if ctx["multirun"] else cfg.experiment_name),
                   tags=ctx["tags"] + [f"experiment:{cfg.experiment_name}"], config=ctx["config"])
    return train(cfg, info)["val_bpb"]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, TrainRunConfig, _train)


if __name__ == "__main__":
    main()
