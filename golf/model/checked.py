"""Build a model from a stored config and weights (checkpoint or artifact) with every fault as one line.

Checked before anything is allocated (the config itself is checked by the loaders, golf.validate): a size
limit (``MAX_LOAD_LAYERS``, ``MAX_LOAD_PARAMS``, counted on the meta device), then the stored tensors against
the architecture's: missing, extra, non-tensor and wrong-shape entries are listed in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from golf.errors import GolfError
from golf.model import build_model, count_params
from golf.model.config import ModelConfig
from golf.validate import MAX_FAULTS

MAX_LOAD_PARAMS = 2**30
"""Largest model (parameters) a stored config may describe: 4 GiB of fp32, 60x the 16 MB challenge's largest."""
MAX_LOAD_LAYERS = 4096
"""Largest num_layers x block_repeats a stored config may describe (bounds the meta-device build itself)."""


class ModelLoadError(GolfError, ValueError):
    """Stored weights do not fit the stored architecture, or the architecture is beyond the loader's limits."""


def _faults(expected: dict[str, torch.Tensor], state: object) -> list[str]:
    if not isinstance(state, dict):
        return [f"weights are {type(state).__name__}, not a name -> tensor mapping"]
    faults = [f"missing tensor {n!r}" for n in expected if n not in state]
    faults += [f"extra tensor {str(n)!r}" for n in state if n not in expected]
    for n, t in state.items():
        if n not in expected:
            continue
        if not isinstance(t, torch.Tensor):
            faults.append(f"{n!r} is {type(t).__name__}, not a tensor")
        elif tuple(t.shape) != tuple(expected[n].shape):
            faults.append(f"shape mismatch for {n!r}: stored {list(t.shape)}, model has {list(expected[n].shape)}")
    return faults


def load_checked_model(cfg: ModelConfig, state: object, where: str) -> nn.Module:
    """A CPU model of architecture ``cfg`` holding ``state`` (strict). Raises ModelLoadError (one line)."""
    layers = cfg.num_layers * max(1, cfg.block_repeats)
    if layers > MAX_LOAD_LAYERS:
        raise ModelLoadError(f"{where}: model of {layers} layers is beyond the loader's limit of {MAX_LOAD_LAYERS}")
    try:
        with torch.device("meta"):
            meta = build_model(cfg)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ModelLoadError(f"{where}: cannot build the stored architecture: {str(exc).splitlines()[0]}") from None
    n = count_params(meta)
    if n > MAX_LOAD_PARAMS:
        raise ModelLoadError(f"{where}: model of {n:,} parameters is beyond the loader's limit of {MAX_LOAD_PARAMS:,}")
    faults = _faults(meta.state_dict(), state)
    if faults:
        more = f"; and {len(faults) - MAX_FAULTS} more" if len(faults) > MAX_FAULTS else ""
        raise ModelLoadError(f"{where}: weights do not fit the model: {'; '.join(faults[:MAX_FAULTS])}{more}")
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied; names and shapes were checked above
        raise ModelLoadError(f"{where}: weights do not load: {str(exc).strip().splitlines()[-1]}") from None
    return model
