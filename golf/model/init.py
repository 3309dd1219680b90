"""Weight initialization: the official baseline rule plus the records' orthogonal init (OrthoInit).

Baseline (train_gpt.py L693-698): tied embedding ~ N(0, tied_embed_init_std²); every CastedLinear marked
`_zero_init` (attention/MLP output projections, untied head) is zeroed; other linears keep PyTorch's default.
OrthoInit (`cfg.ortho_init`), applied to every CastedLinear that is not `_zero_init`, in module order:
- "pr65"  (2026-03-19_smeargate_orthoinit_muonwd): nn.init.orthogonal_(W), gain 1, any shape.
- "pr162" (2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA, also PR #374 and the 04-27 stack):
  orthogonal_ only when both dims >= 64; weights of modules named `*.proj` are then scaled by 1/√(2L)
  (in practice the BigramHash and value-embedding projections: the block output projections are zero-init).
"""

from __future__ import annotations

import math

from torch import nn

from golf.model.config import ModelConfig
from golf.model.layers import CastedLinear


def init_weights(model: nn.Module, cfg: ModelConfig, num_layers: int) -> None:
    """Initialize `model` (a GPT) in place. `num_layers` is the physical block count L of the 1/√(2L) rule.

    Meta-device models (parameter counting) are left untouched by the orthogonal init.
    """
    if cfg.tie_embeddings:
        nn.init.normal_(model.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)
    proj_scale = 1.0 / math.sqrt(2 * num_layers)
    for name, module in model.named_modules():
        if not isinstance(module, CastedLinear):
            continue
        if module._zero_init:
            nn.init.zeros_(module.weight)
            continue
        if cfg.ortho_init == "none" or module.weight.is_meta:
            continue
        if cfg.ortho_init == "pr65":
            nn.init.orthogonal_(module.weight, gain=1.0)
        elif min(module.weight.shape) >= 64:
            nn.init.orthogonal_(module.weight, gain=1.0)
            if name.endswith(".proj"):
                module.weight.data.mul_(proj_scale)
