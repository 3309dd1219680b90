"""Model registry: `model.name` selects a class here; every model takes a `ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from golf.model.config import ModelConfig
from golf.model.gpt import GPT
from golf.model.layers import CastedLinear

MODELS: dict[str, type[nn.Module]] = {"gpt": GPT}

__all__ = ["MODELS", "GPT", "ModelConfig", "build_model", "count_params", "cast_for_device"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate `MODELS[cfg.name]`. Raises ValueError naming the allowed names for an unknown one."""
    if cfg.name not in MODELS:
        raise ValueError(f"model.name={cfg.name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[cfg.name](cfg)


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements), as the official `model_params:` log line."""
    return sum(p.numel() for p in model.parameters())


def cast_for_device(model: nn.Module, device: torch.device, control_patterns: tuple[str, ...] = ()) -> nn.Module:
    """Move to device with the official dtype layout.

    On CUDA the model is cast to bf16, then every CastedLinear and every ndim<2 or control-pattern parameter
    back to fp32 (so the tied embedding stays bf16, as in `train_gpt.py` L826-843). On CPU everything stays
    fp32 (bf16 is ~35x slower on CPU).
    """
    model = model.to(device)
    if device.type != "cuda":
        return model
    model = model.bfloat16()
    for module in model.modules():
        if isinstance(module, CastedLinear):
            module.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or any(pat in name for pat in control_patterns):
                p.data = p.data.float()
    return model
