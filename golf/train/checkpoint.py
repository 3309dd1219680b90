"""Checkpoints: model + optimizer state + step + the typed run config, loadable without unpickling objects.

The file is a `torch.save` of plain containers (tensors, numbers, strings, lists, dicts); loading uses
`torch.load(weights_only=True)`, which refuses any other pickled object. The run config is stored as the JSON
text of `TrainRunConfig.to_dict()` and read back typed, after its model and trainer sections were checked
against their schemas (golf.validate: unknown key, missing key, wrong type, nesting too deep, one line).
Writes are atomic (golf.io: temp + fsync + rename; the previous file stays until the new one is complete).
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from golf.errors import ConfigError, GolfError
from golf.io import atomic_write_bytes
from golf.model.config import ModelConfig
from golf.train.config import TrainerConfig, TrainRunConfig
from golf.validate import MAX_DEPTH, MAX_FAULTS, depth_exceeds, section_faults

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


def atomic_torch_save(payload: dict, path: str | Path) -> Path:
    """`torch.save(payload)` to `path` atomically (golf.io: temp beside it, fsync, rename, directory fsync).

    Readers see the previous file or the new one, never a mix. Raises golf.io.DiskFullError / OutputError (one
    line naming the file; the temp file removed, the previous file untouched) when it cannot be written.
    """
    buf = io.BytesIO()  # serialized in memory first: torch reports a full disk as a RuntimeError, not OSError
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getbuffer())


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], step: int,
                    config: TrainRunConfig) -> Path:
    """Write `path` atomically (the previous file stays until the new one is complete).

    Raises golf.io.DiskFullError / OutputError (one line; nothing partial left) when it cannot be written."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": [opt.state_dict() for opt in optimizers],
        "step": int(step),
        "config_json": json.dumps(config.to_dict(), sort_keys=True),
    }
    return atomic_torch_save(payload, path)


def run_config_from_stored(values: object, where: str) -> TrainRunConfig:
    """The typed run config of a checkpoint or artifact, checked first against the schemas: every section for
    unknown keys, wrong types and nesting depth; the model and trainer sections also for missing keys.

    Raises golf.errors.ConfigError: ``<where>: <fault>; <fault>; ...`` (one line).
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: run config is {type(values).__name__}, not an object")
    faults = section_faults(TrainRunConfig, values, "", require_all=False)
    for name, schema in (("model", ModelConfig), ("trainer", TrainerConfig)):
        if name not in values:
            faults.append(f"missing section {name!r}")
        elif isinstance(values[name], dict):
            faults += [f for f in section_faults(schema, values[name], f"{name}.") if f.startswith("missing")]
    if faults:
        more = f"; and {len(faults) - MAX_FAULTS} more" if len(faults) > MAX_FAULTS else ""
        raise ConfigError(f"{where}: {'; '.join(faults[:MAX_FAULTS])}{more}")
    try:
        return TrainRunConfig.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_failure_reason(exc: Exception) -> str:
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


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`.

    Raises CheckpointError (one line naming the file) for a missing, corrupt or foreign file, a file that holds
    pickled objects (refused, never run), a malformed payload (wrong types, a config that is not a JSON object
    or nests deeper than golf.validate.MAX_DEPTH), or a stored config that does not validate against
    TrainRunConfig (e.g. written by a newer golf: unknown key; wrong type; missing model/trainer key).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol and weights_only advice is not for our users
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / unsafe pickles
        raise CheckpointError(f"{path}: cannot load checkpoint: {load_failure_reason(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a golf checkpoint (expected format {FORMAT})")
    fault = _payload_fault(payload)
    if fault:
        raise CheckpointError(f"{path}: malformed checkpoint: {fault}")
    try:
        values = json.loads(payload["config_json"])
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint: config_json is not JSON ({type(exc).__name__})") from None
    if not isinstance(values, dict) or depth_exceeds(values):
        raise CheckpointError(f"{path}: malformed checkpoint: config_json is not an object of depth <= {MAX_DEPTH}")
    try:
        config = run_config_from_stored(values, "stored run config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return Checkpoint(payload["model"], payload["optimizers"], payload["step"], config)
