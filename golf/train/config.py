"""Trainer and logger schemas (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEVICES = ("auto", "cpu", "cuda")
SWITCHES = ("auto", "on", "off")
LOGGERS = ("wandb", "none")
LOADERS = ("sequential", "doc_packing")


@dataclass
class TrainerConfig:
    """Batch geometry, device and compilation of a training run."""

    train_seq_len: int = 1024
    """Tokens per training sequence (also the standard validation window)."""
    train_batch_tokens: int = 524_288
    """Global tokens per optimizer step, summed over ranks and micro-steps."""
    grad_accum_base: int = 8
    """grad_accum_steps = grad_accum_base // world_size (official: 8), so the global batch is world-size free."""
    device: str = "auto"
    """auto (cuda if available), cpu or cuda."""
    compile: str = "auto"
    """torch.compile the model: auto (on for CUDA, off for CPU), on, off."""
    checkpoint: bool = True
    """Save checkpoint.pt (model, optimizer, step) in the run directory at the end."""
    loader: str = "sequential"
    """Training batches: sequential (official DistributedTokenLoader, [B, seq_len] rows) or doc_packing (one
    packed row per rank from the first BOS of each shard, 2026-04-27 record; golf.data.packing)."""

    def __post_init__(self) -> None:
        if self.train_seq_len < 1 or self.train_batch_tokens < 1 or self.grad_accum_base < 1:
            raise ValueError("trainer.train_seq_len, train_batch_tokens and grad_accum_base must be >= 1")
        if self.device not in DEVICES:
            raise ValueError(f"trainer.device={self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.loader not in LOADERS:
            raise ValueError(f"trainer.loader={self.loader!r}; allowed: {', '.join(LOADERS)}")
        if self.compile not in SWITCHES:
            raise ValueError(f"trainer.compile={self.compile!r}; allowed: {', '.join(SWITCHES)}")


@dataclass
class LoggerConfig:
    """Experiment tracking. Rank 0 alone talks to W&B; runs are offline unless WANDB_MODE=online."""

    name: str = "wandb"
    """wandb or none."""
    project: str = "golf"
    """W&B project."""
    entity: str = ""
    """W&B entity (team/user); empty = the default of the logged-in account."""
    group: str = ""
    """W&B group; empty = the experiment (or sweep) name."""
    mode: str = "offline"
    """W&B mode when WANDB_MODE is unset: offline, online or disabled."""
    tags: list[str] = field(default_factory=list)
    """Extra tags, added to the ones derived from the Hydra choices (model:baseline, quant:int8, ...)."""

    def __post_init__(self) -> None:
        if self.name not in LOGGERS:
            raise ValueError(f"logger.name={self.name!r}; allowed: {', '.join(LOGGERS)}")
        if self.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode={self.mode!r}; allowed: offline, online, disabled")
