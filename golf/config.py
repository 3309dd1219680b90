"""Hydra glue: schema registration, DictConfig -> typed conversion and the run-directory resolver.

Every config group has one dataclass schema, defined next to the component it configures; the run config
`TrainRunConfig` lives in the core (golf/train/config.py), which imports no Hydra. `register_configs()` stores
them in Hydra's ConfigStore as `base_<group>`; each YAML option starts with `defaults: [base_<group>]`, so composition type-checks values. `to_typed()` then rejects keys the
schema does not know (Hydra accepts `+model.modle_dim=3` silently) and runs every `__post_init__` rule.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from golf.data.config import DataConfig
from golf.errors import ConfigError
from golf.eval.config import EvalConfig
from golf.model.config import ModelConfig
from golf.optim.config import OptimConfig, ScheduleConfig
from golf.quant.config import BudgetConfig, QuantConfig
from golf.schema import build_dataclass, field_types
from golf.train.config import AveragingConfig, DistConfig, LoggerConfig, TrainerConfig, TrainRunConfig

T = TypeVar("T")


@dataclass
class ExportRunConfig:
    """Primary config of `export.py`: quantize + compress a run's checkpoint and check the byte budget."""

    run_dir: str = MISSING
    """Training run directory holding checkpoint.pt and config.json."""
    out: str = ""
    """Artifact path; empty = <run_dir>/model.<scheme>+<codec>.golf (golf.export_run.artifact_name)."""
    roundtrip_eval: bool = True
    """Re-load the written artifact, evaluate it and report the quantization gap."""
    quant: QuantConfig = field(default_factory=QuantConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    device: str = "auto"
    """auto, cpu or cuda."""
    non_record: bool = False
    """Allow calibrating on training data here, after training (GPTQ Hessians when the run stored none,
    budget.fit_metric=loss). The rules count calibration as training time, so such an export is marked
    `calibration: after_training` / fail in its compliance block. Also `--non-record` on the command line."""
    dist: DistConfig = field(default_factory=DistConfig)
    """dist.nproc_per_node > 1 re-launches export under torchrun; dist.timeout_s bounds every collective."""


@dataclass
class EvalRunConfig:
    """Primary config of `eval.py`: score a checkpoint, an artifact or a run directory on the val shards."""

    path: str = MISSING
    """checkpoint.pt, an artifact (.golf) or a run directory (its artifact if present, else its checkpoint)."""
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    device: str = "auto"
    """auto, cpu or cuda."""
    out: str = ""
    """Where to write eval.json; empty = next to the scored file."""
    dist: DistConfig = field(default_factory=DistConfig)
    """dist.nproc_per_node > 1 re-launches eval under torchrun; dist.timeout_s bounds every collective."""


GROUPS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig,
    "averaging": AveragingConfig, "quant": QuantConfig, "budget": BudgetConfig, "eval": EvalConfig, "logger": LoggerConfig,
    "trainer": TrainerConfig,
}


def run_id() -> str:
    """An id shared by all ranks of one launch, used to name the run directory.

    GOLF_RUN_ID if set; else torchrun's TORCHELASTIC_RUN_ID (random per `--standalone` launch); else, under
    torchrun without a rendezvous id, the start time of the launcher process (the same parent for every local
    rank); else the current time. Never `${now:}` per rank: ranks resolve it at different instants (hydra#2070).
    """
    if os.environ.get("GOLF_RUN_ID"):
        return os.environ["GOLF_RUN_ID"]
    stamp = "%Y-%m-%d_%H-%M-%S"
    if "RANK" in os.environ:
        elastic = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        parent = _process_start(os.getppid())
        if parent is not None:
            return parent.strftime(stamp) + f"_p{os.getppid()}"
        if elastic != "none":
            return elastic
    return _dt.datetime.now().strftime(stamp)


def _process_start(pid: int) -> _dt.datetime | None:
    """Wall-clock start time of a process from /proc (Linux), or None."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return _dt.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def register_configs() -> None:
    """Store every group schema as `base_<group>` and the primaries as `<entry>_schema` (idempotent)."""
    cs = ConfigStore.instance()
    for group, schema in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)
    cs.store(name="train_schema", node=TrainRunConfig)
    cs.store(name="export_schema", node=ExportRunConfig)
    cs.store(name="eval_schema", node=EvalRunConfig)
    if not OmegaConf.has_resolver("golf_run_id"):
        OmegaConf.register_new_resolver("golf_run_id", run_id, use_cache=True)
    if not OmegaConf.has_resolver("golf_dir_of"):
        OmegaConf.register_new_resolver("golf_dir_of", lambda p: str(p if Path(p).is_dir() else Path(p).parent))
    if not OmegaConf.has_resolver("golf_rank"):
        OmegaConf.register_new_resolver("golf_rank", lambda: os.environ.get("RANK", "0"))
    if not OmegaConf.has_resolver("golf_rank_suffix"):  # eval.log on rank 0, eval_rank1.log on rank 1, ...
        OmegaConf.register_new_resolver("golf_rank_suffix",
                                        lambda: "" if os.environ.get("RANK", "0") == "0" else f"_rank{os.environ['RANK']}")


def _unknown_keys(node: Any, schema: Any, prefix: str) -> list[tuple[str, list[str]]]:
    """Keys present in `node` that the dataclass `schema` does not declare, with the allowed names."""
    if not (dataclasses.is_dataclass(schema) and isinstance(node, DictConfig)):
        return []
    hints = field_types(schema)
    bad: list[tuple[str, list[str]]] = []
    for key in node.keys():
        if key == "hydra":
            continue
        if key not in hints:
            bad.append((f"{prefix}{key}", sorted(hints)))
        elif dataclasses.is_dataclass(hints[key]):
            bad += _unknown_keys(node._get_node(key), hints[key], f"{prefix}{key}.")
    return bad


def to_typed(cfg: DictConfig, schema: type[T]) -> T:
    """Validate a composed config and return it as the typed dataclass tree.

    Raises ConfigError (one line) for an unknown key, a missing required value or a failed field rule.
    """
    bad = _unknown_keys(cfg, schema, "")
    if bad:
        key, allowed = bad[0]
        raise ConfigError(f"unknown config key '{key}'; allowed here: {', '.join(allowed)}")
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    return build_dataclass(schema, plain, "", strict=False)  # unknown keys were reported above, with the path
