"""Model registry: `model.name` selects a class here; every model takes a `ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from golf.model.config import ModelConfig, ModelConfigError
from golf.model.gpt import GPT
from golf.model.layers import CastedLinear

MODELS: dict[str, type[nn.Module]] = {"gpt": GPT}

__all__ = ["MODELS", "GPT", "ModelConfig", "ModelConfigError", "build_model", "count_params", "count_params_for",
           "cast_for_device", "declared_scalar_params"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate `MODELS[cfg.name]`. Raises ValueError naming the allowed names for an unknown one."""
    if cfg.name not in MODELS:
        raise ValueError(f"model.name={cfg.name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[cfg.name](cfg)


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements), as the official `model_params:` log line."""
    return sum(p.numel() for p in model.parameters())


def count_params_for(cfg: ModelConfig) -> int:
    """Parameter count of the model `cfg` describes, built on the meta device (no memory, no init cost).

    ModelConfig() gives the official 17,059,912; full-scale presets use this to report their size.
    """
    with torch.device("meta"):
        model = build_model(cfg)
    return count_params(model)


def declared_scalar_params(model: nn.Module) -> set[str]:
    """Full names of parameters that a module's `optim_groups` routes to the scalar (control-tensor) group."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for local, group in (getattr(module, "optim_groups", None) or {}).items():
            if group == "scalar":
                names.add(f"{module_name}.{local}" if module_name else local)
    return names


def cast_for_device(model: nn.Module, device: torch.device, control_patterns: tuple[str, ...] = ()) -> nn.Module:
    """Move to device with the official dtype layout.

    On CUDA the model is cast to bf16, then every CastedLinear and every ndim<2 or control-pattern parameter
    back to fp32 (so the tied embedding stays bf16, as in `train_gpt.py` L826-843). Parameters that a module
    declares "scalar" in `optim_groups` (gates, lane lambdas, skip gates) are control tensors too and stay fp32.
    On CPU everything stays fp32 (bf16 is ~35x slower on CPU).
    """
    model = model.to(device)
    if device.type != "cuda":
        return model
    model = model.bfloat16()
    for module in model.modules():
        if isinstance(module, CastedLinear):
            module.float()
    scalars = declared_scalar_params(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or name in scalars or any(pat in name for pat in control_patterns):
                p.data = p.data.float()
    return model
