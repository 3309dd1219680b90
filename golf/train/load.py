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
from golf.model import cast_for_device
from golf.model.checked import load_checked_model
from golf.model.config import ModelConfig
from golf.quant.artifact import MAGIC, ArtifactError, dequantized_state, read_artifact
from golf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, run_config_from_stored
from golf.train.config import RUN_SECTION, TrainRunConfig

ARTIFACT_NAME = "model.golf"


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


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError as exc:
        raise GolfError(f"{path}: cannot read: {exc.strerror or exc}") from None


def is_artifact(path: Path) -> bool:
    """Whether ``path`` starts with the artifact magic; raises GolfError (one line) when it cannot be read."""
    return _starts_with(path, MAGIC)


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a zip file (what torch.save writes); raises GolfError when it cannot be read."""
    return _starts_with(path, b"PK\x03\x04")


def artifact_run_config(manifest: dict, path: Path) -> TrainRunConfig:
    """The typed run config stored in an artifact manifest, checked against the schemas
    (checkpoint.run_config_from_stored). Raises ArtifactError (one line) when absent or invalid."""
    extra = manifest.get("extra") or {}
    section = extra.get(RUN_SECTION) if isinstance(extra, dict) else None
    if not isinstance(section, dict):
        raise ArtifactError(f"{path}: artifact manifest has no run config (extra.{RUN_SECTION})")
    try:
        return run_config_from_stored(section, f"manifest extra.{RUN_SECTION}")
    except ConfigError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def load_for_eval(path: str | Path, device: torch.device, control_patterns: tuple[str, ...] = ()) -> LoadedModel:
    """Build the model described by `path` and load its weights (strict).

    The stored run config is checked against its schemas and the weights against the architecture (names,
    shapes, a size limit) before the model is allocated. Raises GolfError subclasses, one line each:
    CheckpointError, ArtifactError, golf.model.checked.ModelLoadError, or GolfError for a path that is neither.
    """
    p = resolve_model_path(path)
    if is_artifact(p):
        qstate, manifest = read_artifact(p)
        run_cfg = artifact_run_config(manifest, p)
        state, kind = dequantized_state(p, qstate), "artifact"
    else:
        if not is_zip(p):
            raise GolfError(f"{p}: neither a golf artifact (magic {MAGIC!r}) nor a golf checkpoint (a torch zip file)")
        ckpt = load_checkpoint(p)
        state, run_cfg, kind = ckpt.model, ckpt.config, "checkpoint"
    model = load_checked_model(run_cfg.model, state, str(p))
    return LoadedModel(cast_for_device(model, device, control_patterns), run_cfg, kind, p)
