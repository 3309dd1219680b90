"""Hydra glue of the preflight: compose a TrainRunConfig from overrides (conf/ of this checkout)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from golf.config import register_configs, to_typed
from golf.train.config import TrainRunConfig

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_train_config(overrides: list[str]) -> TrainRunConfig:
    """Validated TrainRunConfig of `python train.py <overrides>` (raises ConfigError on a bad key/value)."""
    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside train.py's @hydra.main (same conf/ search path)
        return to_typed(compose("train", overrides=list(overrides)), TrainRunConfig)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_typed(compose("train", overrides=list(overrides)), TrainRunConfig)


def record_config(rec) -> TrainRunConfig:
    """The TrainRunConfig golf uses for a RecordConfig (preset + overrides)."""
    return compose_train_config([f"experiment={rec.preset}", *rec.overrides])
