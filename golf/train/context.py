"""What a training run needs besides its config: its context (`RunContext`), a null tracker, and the checks and
seeding done before the model is built (official train_gpt.py semantics). Used by golf.train.trainer."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from golf.data.loader import shard_files
from golf.data.shards import read_header
from golf.data.tokenizer import load_tokenizer
from golf.errors import ConfigError


@dataclass
class RunContext:
    """What the entry point knows about a run besides its config."""

    run_dir: Path
    name: str = "run"
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    """Resolved config as plain containers (logged to W&B)."""
    after_train: Callable | None = None
    """(metrics, model, tracker) -> metrics, on every rank after training, before the W&B run closes
    (golf.sweep.job: export inside the job, rank consistency check, W&B summary)."""


class NullTracker:
    """The tracker of a run without logging: every call is a no-op."""

    active = False
    run_id = ""

    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def grad_accum_steps_for(cfg, world_size: int) -> int:
    """grad_accum_base // world_size, validated so the global batch is the same for every world size."""
    t = cfg.trainer
    if t.grad_accum_base % world_size:
        raise ConfigError(f"trainer.grad_accum_base={t.grad_accum_base} must be divisible by world_size={world_size}")
    accum = t.grad_accum_base // world_size
    step_unit = world_size * accum * t.train_seq_len
    if t.train_batch_tokens % step_unit:
        raise ConfigError(
            f"trainer.train_batch_tokens={t.train_batch_tokens} must be divisible by world_size x grad_accum_steps x "
            f"train_seq_len = {world_size} x {accum} x {t.train_seq_len} = {step_unit}")
    return accum


def check_vocab(cfg) -> None:
    """model.vocab_size and data.vocab_size must equal the tokenizer's vocabulary (official L808-811)."""
    sp = load_tokenizer(cfg.data.resolve_tokenizer_path(), None)
    n = int(sp.vocab_size())
    for key, value in (("model.vocab_size", cfg.model.vocab_size), ("data.vocab_size", cfg.data.vocab_size)):
        if value != n:
            raise ConfigError(f"{key}={value} does not match the tokenizer's vocab_size={n} "
                              f"({cfg.data.resolve_tokenizer_path()})")


def check_data(cfg) -> None:
    """The data a run of `cfg` reads, checked the way the trainer reads it, in its order: the tokenizer loads and
    its vocab_size matches (`check_vocab`), then the validation and the training shard globs each match files
    whose 1,024-byte headers are valid. Reads headers only (a few KB per shard). train.py calls it before the
    preflight so that a missing or broken file costs one line, not seconds of preflight first.

    Raises:
        TokenizerError, ConfigError, NoShardsFoundError, ShardError: the trainer's own errors and lines.
    """
    check_vocab(cfg)
    for pattern in (cfg.data.val_glob(), cfg.data.train_glob()):
        for path in shard_files(pattern):
            read_header(path)  # emptiness is the loader's to judge: sequential refuses it, coprime skips it


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
