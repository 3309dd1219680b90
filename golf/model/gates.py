"""Learned gates of the records: SmearGate v1/v2 (embedding side) and per-head attention output gates.

All gate parameters are small control tensors routed to the scalar Adam group (`optim_groups`) and kept fp32
by `cast_for_device`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.layers import CastedLinear


def previous_token(x: Tensor) -> Tensor:
    """x shifted one position right along T with zeros at t=0: out[:, t] = x[:, t-1]. [B, T, C] -> [B, T, C]."""
    return F.pad(x[:, :-1], (0, 0, 1, 0))


class SmearGateV1(nn.Module):
    """Static per-dimension blend with the previous token (PR #65, 2026-03-19_smeargate_orthoinit_muonwd;
    originally @unnir PR #102/#135).

    x_t <- g ⊙ x_t + (1 - g) ⊙ x_{t-1},  g = σ(θ) ∈ R^d, θ init `init` (3.0 -> g ≈ 0.9526), x_{-1} = 0.
    The PR #162 form ((1 - g')x_t + g' x_{t-1}, θ' init 0) is the same map with θ = -θ' (init 0.0).
    No document-boundary mask (the records have none). [B, T, d] -> [B, T, d].
    """

    optim_groups = {"gate": "scalar"}

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gate = nn.Parameter(torch.full((dim,), float(init), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return g * x + (1.0 - g) * previous_token(x)


class SmearGateV2(nn.Module):
    """Input-dependent smear of the previous token, BOS-masked (PR #1667, 2026-04-16_SmearGate_AttentionOutputGate_
    ScoreFirstTTT, from modded-nanogpt @classiclarryd; BOS fix PR #1851, 2026-04-27 records).

    For t >= 1:  x_t <- x_t + λ · σ(w · x_t[:width]) · x_{t-1} · [id_t ≠ BOS];  x_0 unchanged.
    w: width -> 1 (zero-init), λ scalar (init 0), so the gate is the identity at init. The BOS mask keeps the
    last token of document N out of the BOS embedding that starts document N+1.
    x: [B, T, d], input_ids: [B, T] -> [B, T, d].
    """

    optim_groups = {"proj.weight": "scalar", "lam": "scalar"}

    def __init__(self, width: int, bos_id: int):
        super().__init__()
        self.width = width
        self.bos_id = bos_id
        self.proj = CastedLinear(width, 1, bias=False)
        self.proj._zero_init = True
        nn.init.zeros_(self.proj.weight)
        self.lam = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: Tensor, input_ids: Tensor) -> Tensor:
        gate = self.lam.to(x.dtype) * torch.sigmoid(self.proj(x[:, 1:, : self.width].contiguous()))
        not_bos = (input_ids[:, 1:] != self.bos_id).to(x.dtype).unsqueeze(-1)
        return torch.cat((x[:, :1], x[:, 1:] + gate * x[:, :-1] * not_bos), dim=1)


class AttnOutputGate(nn.Module):
    """Per-head multiplicative gate on the attention output, before the output projection.

    kind="out"    (PR #1667, 04-16): g_h = 2σ(W x[:width])_h, W: H×width zero-init (g = 1 at init).
    kind="sparse" (PR #1787, 04-23/04-27): g_h = σ(s · W x[:width])_h, W zero-init (g = 0.5 at init).
    kind="dense"  (PR #1736, 04-19, Qwen gated attention arXiv 2505.06708): g_h = σ(W x)_h, W: H×d ~ N(0, std²).
    x is the (normed) attention input [B, T, d]; y the attention output [B, H, T, D] -> gated [B, H, T, D].
    """

    optim_groups = {"weight": "scalar"}

    def __init__(self, kind: str, dim: int, num_heads: int, width: int, scale: float, init_std: float):
        super().__init__()
        if kind not in ("out", "sparse", "dense"):
            raise ValueError(f"attention gate {kind!r}; allowed: out, sparse, dense")
        self.kind = kind
        self.width = dim if kind == "dense" else width
        self.scale = scale
        self.weight = nn.Parameter(torch.zeros(num_heads, self.width, dtype=torch.float32))
        if kind == "dense" and init_std > 0:
            nn.init.normal_(self.weight, mean=0.0, std=init_std)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        src = x if self.kind == "dense" else x[..., : self.width].contiguous()
        z = F.linear(src, self.weight.to(x.dtype))  # [B, T, H]
        if self.kind == "out":
            g = 2.0 * torch.sigmoid(z)
        elif self.kind == "sparse":
            g = torch.sigmoid(self.scale * z)
        else:
            g = torch.sigmoid(z)
        return y * g.transpose(1, 2).unsqueeze(-1)
