"""Load a model from a checkpoint, an artifact or a run directory, with the typed config it was trained with.

`load_for_eval(path, device)` accepts checkpoint.pt, an artifact (decompressed and dequantized) or a run
directory (its last exported model.<scheme>+<codec>.golf if present, else its checkpoint.pt). The architecture comes from the file itself:
the checkpoint's stored TrainRunConfig or the artifact manifest's `run` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from golf.errors import ConfigError, GolfError
from golf.model import build_model, cast_for_device
from golf.model.config import ModelConfig
from golf.quant.artifact import MAGIC, read_artifact
from golf.quant.int8 import dequantize_state
from golf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from golf.train.config import TrainRunConfig

ARTIFACT_NAME = "model.golf"
RUN_SECTION = "run"
"""Key of the artifact manifest's `extra` that holds TrainRunConfig.to_dict()."""


@dataclass
class LoadedModel:
    """A model ready to evaluate, and where it came from."""

    model: nn.Module
    run_config: TrainRunConfig
    """The typed config of the run that trained it."""
    kind: str
    """'checkpoint' or 'artifact'."""
    path: Path

    @property
    def model_cfg(self) -> ModelConfig:
        return self.run_config.model


def resolve_model_path(path: str | Path) -> Path:
    """A run directory -> its last export's artifact (export.json), else its newest model*.golf (artifacts are
    named model.<scheme>+<codec>.golf), else its checkpoint. Raises GolfError if nothing is there."""
    p = Path(path)
    if p.is_dir():
        found = _last_artifact(p)
        if found is not None:
            return found
        if (p / CHECKPOINT_NAME).is_file():
            return p / CHECKPOINT_NAME
        raise GolfError(f"{p}: no model*.golf artifact or {CHECKPOINT_NAME} in this directory")
    if not p.is_file():
        raise GolfError(f"{p}: no such checkpoint or artifact")
    return p


def _last_artifact(run_dir: Path) -> Path | None:
    import json

    try:
        last = Path(json.loads((run_dir / "export.json").read_text())["artifact"])
        if last.is_file():
            return last
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = sorted(run_dir.glob("model*.golf"), key=lambda f: f.stat().st_mtime)
    return found[-1] if found else None


def is_artifact(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def artifact_run_config(manifest: dict, path: Path) -> TrainRunConfig:
    """The typed run config stored in an artifact manifest. Raises GolfError (one line) when absent/invalid."""
    section = (manifest.get("extra") or {}).get(RUN_SECTION)
    if not isinstance(section, dict):
        raise GolfError(f"{path}: artifact manifest has no run config (extra.{RUN_SECTION})")
    try:
        return TrainRunConfig.from_dict(section)
    except ConfigError as exc:
        raise GolfError(f"{path}: artifact run config is invalid ({exc})") from None


def load_for_eval(path: str | Path, device: torch.device, control_patterns: tuple[str, ...] = ()) -> LoadedModel:
    """Build the model described by `path` and load its weights (strict)."""
    p = resolve_model_path(path)
    if is_artifact(p):
        qstate, manifest = read_artifact(p)
        run_cfg = artifact_run_config(manifest, p)
        state, kind = dequantize_state(qstate), "artifact"
    else:
        ckpt = load_checkpoint(p)
        state, run_cfg, kind = ckpt.model, ckpt.config, "checkpoint"
    model = build_model(run_cfg.model)
    model.load_state_dict(state, strict=True)
    return LoadedModel(cast_for_device(model, device, control_patterns), run_cfg, kind, p)
