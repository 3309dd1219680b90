"""Checkpoints: model + optimizer state + step + the typed run config, loadable without unpickling objects.

The file is a `torch.save` of plain containers (tensors, numbers, strings, lists, dicts); loading uses
`torch.load(weights_only=True)`, which refuses any other pickled object. The run config is stored as the JSON
text of `TrainRunConfig.to_dict()` and read back typed. Writes are atomic (tmp + fsync + rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from golf.errors import ConfigError, GolfError
from golf.train.config import TrainRunConfig

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "golf-checkpoint-v1"


class CheckpointError(GolfError):
    """A checkpoint is missing, truncated, not a golf checkpoint or holds disallowed objects."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns."""

    model: dict[str, torch.Tensor]
    """The model's state dict (CPU tensors)."""
    optimizers: list[dict]
    """Each optimizer's state dict, in build order."""
    step: int
    """Optimizer steps completed."""
    config: TrainRunConfig
    """The run's typed config."""


def atomic_torch_save(payload: dict, path: Path) -> Path:
    """`torch.save(payload)` to a temp file beside `path`, fsync, rename over `path`, fsync the directory.

    Readers see the previous file or the new one, never a mix; on failure the temp file is removed and the
    previous file is untouched.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], step: int,
                    config: TrainRunConfig) -> Path:
    """Write `path` atomically (the previous file stays until the new one is complete)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": [opt.state_dict() for opt in optimizers],
        "step": int(step),
        "config_json": json.dumps(config.to_dict(), sort_keys=True),
    }
    atomic_torch_save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`.

    Raises CheckpointError (one line naming the file) for a missing, corrupt or foreign file, or a stored config
    that does not validate against TrainRunConfig (e.g. written by a newer golf).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / unsafe pickles
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot load checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a golf checkpoint (expected format {FORMAT})")
    try:
        config = TrainRunConfig.from_dict(json.loads(payload["config_json"]))
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: stored run config is invalid ({str(exc).splitlines()[0]})") from None
    return Checkpoint(payload["model"], payload["optimizers"], int(payload["step"]), config)
