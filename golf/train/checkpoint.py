"""Checkpoints: model + optimizer state + step + config, loadable without unpickling arbitrary objects.

The file is a `torch.save` of plain containers (tensors, numbers, strings, lists, dicts); loading uses
`torch.load(weights_only=True)`, which refuses any other pickled object. Writes are atomic (golf.io: temp +
fsync + rename; the previous file stays until the new one is complete).
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from golf.errors import GolfError
from golf.io import atomic_write_bytes
from golf.validate import MAX_DEPTH, depth_exceeds

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


def _load_failure(exc: Exception) -> str:
    """What went wrong in torch.load, in one phrase, without torch's advice to retry with weights_only=False."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        for line in text.splitlines():
            if "unsupported GLOBAL" in line:
                what = line.split("unsupported GLOBAL", 1)[1].split(" whose ")[0].strip()
                return f"holds a pickled {what}, refused (golf checkpoints hold only tensors and plain containers)"
        return "holds objects other than tensors and plain containers, refused (never unpickled)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"corrupt or truncated ({first.split('. ')[0][:160]})"


def load_checkpoint(path: str | Path) -> dict:
    """Return {"model": state_dict, "optimizers": [...], "step": int, "config": dict}.

    Raises CheckpointError (one line naming the file) for a missing, corrupt or foreign file, a file that holds
    pickled objects (refused, never run), or a malformed payload (wrong types, a config that is not a JSON object
    or nests deeper than golf.validate.MAX_DEPTH).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol and weights_only advice is not for our users
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / unsafe pickles
        raise CheckpointError(f"{path}: cannot load checkpoint: {_load_failure(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a golf checkpoint (expected format {FORMAT})")
    fault = _payload_fault(payload)
    if fault:
        raise CheckpointError(f"{path}: malformed checkpoint: {fault}")
    try:
        config = json.loads(payload["config_json"])
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint: config_json is not JSON ({type(exc).__name__})") from None
    if not isinstance(config, dict) or depth_exceeds(config):
        raise CheckpointError(f"{path}: malformed checkpoint: config_json is not an object of depth <= {MAX_DEPTH}")
    return {"model": payload["model"], "optimizers": payload["optimizers"], "step": payload["step"],
            "config": config}


def _payload_fault(payload: dict) -> str | None:
    missing = [k for k in ("model", "optimizers", "step", "config_json") if k not in payload]
    if missing:
        return f"missing keys {missing}"
    model = payload["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        return "'model' is not a mapping of names to tensors"
    if not isinstance(payload["optimizers"], list) or depth_exceeds(payload["optimizers"]):
        return f"'optimizers' is not a list of depth <= {MAX_DEPTH}"
    if isinstance(payload["step"], bool) or not isinstance(payload["step"], int) or payload["step"] < 0:
        return f"'step' is {type(payload['step']).__name__}, not a non-negative int"
    if not isinstance(payload["config_json"], str):
        return "'config_json' is not a string"
    return None
