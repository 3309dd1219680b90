"""The typed run config of a training run (`TrainRunConfig`) and the trainer, logger and dist schemas.

Hydra-free: this is the one shape of a run's config everywhere below the entry points — the trainer takes it,
the checkpoint stores `asdict(cfg)` and `load_checkpoint` returns it, the artifact manifest carries it as its
`run` section, export and eval read it back typed. `golf.config` only registers these schemas with Hydra and
converts a composed DictConfig into them (`to_typed`); `golf.schema.build_dataclass` does the same from plain
dicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from golf.data.config import DataConfig
from golf.device import DEVICES
from golf.errors import GolfError
from golf.eval.config import EvalConfig
from golf.model.config import ModelConfig
from golf.optim.config import OptimConfig, ScheduleConfig
from golf.quant.config import BudgetConfig, QuantConfig
from golf.schema import build_dataclass

SWITCHES = ("auto", "on", "off")
RESUME_POLICIES = ("auto", "never")
LOGGERS = ("wandb", "none")
LOADERS = ("sequential", "doc_packing", "shuffled", "coprime")
RUN_SECTION = "run"
"""Key of an artifact manifest's `extra` that holds TrainRunConfig.to_dict() (golf.export_core writes it,
golf.train.load reads it)."""
RETIRED_BUDGET_KEYS = frozenset({"code_paths", "code_mode"})


AVERAGING_NAMES: tuple[str, ...] = ("none", "ema", "swa", "lawa", "ema_lawa")


class AveragingConfigError(GolfError, ValueError):
    """An `averaging.*` config value is outside its allowed range."""


@dataclass
class AveragingConfig:
    """Weight averaging applied over training; the averaged weights replace the live ones at the end."""

    name: str = "none"
    """none, ema, swa, lawa, or ema_lawa (both composed: LAWA over snapshots of the EMA weights; seed 001
    "EMA + LAWA weight averaging")."""
    ema_decay: float = 0.997
    """EMA decay δ per optimizer step, 0 <= δ < 1 (records: 0.997; 0.9965 from 2026-04-09)."""
    swa_every: int = 50
    """SWA: snapshot every N optimizer steps (SWA_EVERY)."""
    swa_lr_threshold: float = 0.2
    """SWA: only snapshot while the LR multiplier is below this, in (0, 1] (0.5 in PR #162, 0.2 = tight SWA)."""
    lawa_k: int = 5
    """LAWA: number of latest snapshots averaged."""
    lawa_every: int = 200
    """LAWA: snapshot every N optimizer steps (LAWA_INTERVAL)."""

    def __post_init__(self) -> None:
        if self.name not in AVERAGING_NAMES:
            raise AveragingConfigError(f"averaging.name={self.name!r} must be one of {list(AVERAGING_NAMES)}")
        decay = self.ema_decay
        if not (isinstance(decay, (int, float)) and math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise AveragingConfigError(f"averaging.ema_decay={decay!r} must be in [0, 1)")
        threshold = self.swa_lr_threshold
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
            raise AveragingConfigError(f"averaging.swa_lr_threshold={threshold!r} must be in (0, 1]")
        for key in ("swa_every", "lawa_k", "lawa_every"):
            value = getattr(self, key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise AveragingConfigError(f"averaging.{key}={value!r} must be an integer >= 1")



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
    checkpoint_every_steps: int = 0
    """Write the resume point (<run_dir>/resume.pt, golf/train/resume.py) every N optimizer steps; 0 = off.
    SIGTERM/SIGUSR1/SIGUSR2 always write one at the next step boundary (issue #13)."""
    checkpoint_every_seconds: float = 0.0
    """Write the resume point when this much wall time (s) passed since the last one; 0 = off. Writing time is
    excluded from the training clock, like validation."""
    loader: str = "sequential"
    """Training batches: sequential (official DistributedTokenLoader, [B, seq_len] rows), doc_packing (one
    packed row per rank from the first BOS of each shard, 2026-04-27 record; golf.data.packing), shuffled (record
    04-09 ShuffledSequenceLoader) or coprime (record 03-29 coprime-stride multi-shard loader; golf.data.samplers)."""

    def __post_init__(self) -> None:
        if self.train_seq_len < 1 or self.train_batch_tokens < 1 or self.grad_accum_base < 1:
            raise ValueError("trainer.train_seq_len, train_batch_tokens and grad_accum_base must be >= 1")
        if self.device not in DEVICES:
            raise ValueError(f"trainer.device={self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.loader not in LOADERS:
            raise ValueError(f"trainer.loader={self.loader!r}; allowed: {', '.join(LOADERS)}")
        if self.compile not in SWITCHES:
            raise ValueError(f"trainer.compile={self.compile!r}; allowed: {', '.join(SWITCHES)}")
        every = self.checkpoint_every_steps
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError(f"trainer.checkpoint_every_steps={every!r} must be an integer >= 0 (0 = off)")
        secs = self.checkpoint_every_seconds
        if not (isinstance(secs, (int, float)) and math.isfinite(secs) and secs >= 0):
            raise ValueError(f"trainer.checkpoint_every_seconds={secs!r} must be a number >= 0 (0 = off)")


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


@dataclass
class DistConfig:
    """How many processes a run uses on its node (`dist.nproc_per_node`)."""

    nproc_per_node: int = 1
    """Processes (GPUs) per node. > 1 outside torchrun: the run re-launches itself under torchrun --standalone."""
    timeout_s: float = 120.0
    """Process-group timeout in seconds: a collective that waits longer (a stalled or dead peer rank) ends the
    job with one line naming the rank, instead of gloo/NCCL's 30-minute default. Keep it well under the
    challenge's 600 s limits, and above the longest gap between collectives (e.g. rank 0 writing files)."""

    def __post_init__(self) -> None:
        if not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1:
            raise ValueError(f"dist.nproc_per_node={self.nproc_per_node!r}; must be an integer >= 1")
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s < 1800):
            raise ValueError(f"dist.timeout_s={self.timeout_s!r}; must be in (0, 1800) seconds")


@dataclass
class TrainRunConfig:
    """Primary config of `train.py`: every group of a run, typed."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    experiment_name: str = "adhoc"
    """Name of the preset (W&B group unless logger.group is set)."""
    sweep_name: str = "adhoc"
    """Name of the sweep this run belongs to (multirun directory suffix)."""
    seed: int = 1337
    """Seeds python, numpy and torch."""
    dist: DistConfig = field(default_factory=DistConfig)
    """Processes per node; > 1 outside torchrun re-launches the run under torchrun (golf.sweep.launch)."""
    export_after: bool = False
    """Export the artifact right after training, in the same job (bytes_total into metrics.json and W&B)."""
    resume: str = "auto"
    """auto: a run directory holding an interrupted run (resume.pt, no metrics.json) is continued, same W&B run;
    never: a run directory that already holds a run is refused (issue #13)."""

    def __post_init__(self) -> None:
        if self.resume not in RESUME_POLICIES:
            raise ValueError(f"resume={self.resume!r}; allowed: {', '.join(RESUME_POLICIES)}")
        if self.export_after and not self.trainer.checkpoint:
            raise ValueError("export_after=true needs trainer.checkpoint=true (the export reads checkpoint.pt)")

    def to_dict(self) -> dict:
        """Plain JSON-serializable form (what checkpoints and artifact manifests store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, strict: bool = True) -> TrainRunConfig:
        """Typed config from its plain form. Raises ConfigError (one line naming the key).

        The retired keys budget.code_paths / budget.code_mode (code bytes are now the generated train_gpt.py,
        golf.record) are dropped, so checkpoints and artifacts written before still load."""
        budget = values.get("budget")
        if isinstance(budget, dict) and set(budget) & RETIRED_BUDGET_KEYS:
            values = {**values, "budget": {k: v for k, v in budget.items() if k not in RETIRED_BUDGET_KEYS}}
        return build_dataclass(cls, values, "", strict)
