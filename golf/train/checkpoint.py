"""Checkpoints: model + optimizer state + step + config, loadable without unpickling arbitrary objects.

The file is a `torch.save` of plain containers (tensors, numbers, strings, lists, dicts); loading uses
`torch.load(weights_only=True)`, which refuses any other pickled object. Writes are atomic (golf.io: temp +
fsync + rename; the previous file stays until the new one is complete).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from golf.errors import GolfError
from golf.io import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "golf-checkpoint-v1"


class CheckpointError(GolfError):
    """A checkpoint is missing, truncated, not a golf checkpoint or holds disallowed objects."""


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], step: int,
                    config: dict) -> Path:
    """Write `path` atomically. `config` is the resolved run config (stored as JSON text).

    Raises golf.io.DiskFullError / OutputError (one line; the previous checkpoint stays) when it cannot be written."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": [opt.state_dict() for opt in optimizers],
        "step": int(step),
        "config_json": json.dumps(config, sort_keys=True),
    }
    buf = io.BytesIO()  # serialized in memory first: torch reports a full disk as a RuntimeError, not OSError
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getbuffer())


def load_checkpoint(path: str | Path) -> dict:
    """Return {"model": state_dict, "optimizers": [...], "step": int, "config": dict}.

    Raises CheckpointError (one line naming the file) for a missing, corrupt or foreign file.
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
    return {"model": payload["model"], "optimizers": payload["optimizers"], "step": payload["step"],
            "config": json.loads(payload["config_json"])}
