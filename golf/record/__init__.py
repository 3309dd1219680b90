"""A golf run -> a challenge record folder (`python -m golf.record RUN_OR_SWEEP_DIR`).

`submission_code_bytes(cfg)` is the one count of a submission's code: the bytes of the train_gpt.py generated
for `cfg` as shipped (golf.record.bundle). export.py's budget report, the preflight and the record folder all
use it.
"""

from __future__ import annotations

from dataclasses import replace

from golf.export_core import portable
from golf.record.bundle import Bundle, build
from golf.train.config import TrainRunConfig

BAKED_SEED = 1337
"""Seed baked into the generated file (the official default); a seed run sets SEED=<s>, so the file, and its
byte count, is one per configuration."""


def submission_config(cfg: TrainRunConfig) -> dict:
    """The plain config baked into train_gpt.py: the run's, with the data in the official layout and the seed
    set to BAKED_SEED (SEED, DATA_PATH, TOKENIZER_PATH override them at run time)."""
    return replace(portable(cfg), seed=BAKED_SEED).to_dict()


def submission_bundle(cfg: TrainRunConfig) -> Bundle:
    """The generated train_gpt.py (shipped and readable forms, module list) for `cfg`. Raises BundleError."""
    return build(submission_config(cfg))


def submission_code_bytes(cfg: TrainRunConfig) -> int:
    """Counted code bytes of `cfg`'s submission: the size of its generated train_gpt.py as shipped."""
    return submission_bundle(cfg).code_bytes


__all__ = ["BAKED_SEED", "submission_bundle", "submission_code_bytes", "submission_config"]
