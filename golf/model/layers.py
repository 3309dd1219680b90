"""Parameter-free norms, fp32-master linear layers and RoPE, as in the official `train_gpt.py`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_norm(x: Tensor) -> Tensor:
    """RMS-normalize the last dim with no learned gain (eps = dtype eps, as official `F.rms_norm(eps=None)`)."""
    return F.rms_norm(x, (x.size(-1),))


class RMSNorm(nn.Module):
    """Parameter-free RMSNorm over the last dimension."""

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x)


class CastedLinear(nn.Linear):
    """Linear layer whose weight stays fp32 (optimizer quality) and is cast to the activation dtype at matmul.

    `_zero_init = True` marks output projections that the model zero-initializes.
    """

    _zero_init: bool = False

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


def ntk_base(base: float, seq_len: int, train_seq_len: int, rope_dims: int) -> float:
    """NTK-aware RoPE base for a sequence longer than the one the tables were built for.

    base' = base · (T / L)^(rd / (rd - 2)) when T > L > 0, else base (T = seq_len, L = train_seq_len,
    rd = rotated dims). Records 03-21/03-22/03-23 build Rotary for L = 1024 and train at T = 2048, so their
    16 rotated dims run at 10000 · 2^(16/14) ≈ 22,081; 04-09 sets L = ROPE_TRAIN_SEQ_LEN = 2048.
    Raises ValueError for rope_dims <= 2 with T > L (the exponent is undefined).
    """
    if train_seq_len <= 0 or seq_len <= train_seq_len:
        return base
    if rope_dims <= 2:
        raise ValueError(f"NTK RoPE needs more than 2 rotated dims, got {rope_dims}")
    return base * (seq_len / train_seq_len) ** (rope_dims / (rope_dims - 2))


class Rotary(nn.Module):
    """RoPE tables: inv_freq_i = base^(-2i/rope_dims), cached per (seq_len, device).

    `rope_dims` (default: dim) is the number of rotated head dims; partial RoPE (PR #315) computes the
    frequencies over those dims only, exactly as the records' `Rotary(head_dim, rope_dims=16)`.
    `train_seq_len` > 0 turns on NTK-aware scaling (`ntk_base`) for sequences longer than it (0 = off).
    Returns cos, sin of shape [1, 1, T, rope_dims/2] in the requested dtype.
    """

    def __init__(self, dim: int, base: float = 10000.0, rope_dims: int = 0, train_seq_len: int = 0):
        super().__init__()
        self.rope_dims = rope_dims if 0 < rope_dims < dim else dim
        self.base = base
        self.train_seq_len = train_seq_len
        rd = self.rope_dims
        inv_freq = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            # Build outside inference mode: a table first made during validation would otherwise be an
            # inference tensor and break the next training step's backward.
            with torch.inference_mode(False):
                t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
                inv_freq = self.inv_freq.to(device)
                base = ntk_base(self.base, seq_len, self.train_seq_len, self.rope_dims)
                if base != self.base:
                    rd = self.rope_dims
                    inv_freq = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32, device=device) / rd))
                freqs = torch.outer(t, inv_freq)
                self._cache = (seq_len, device, freqs.cos()[None, None], freqs.sin()[None, None])
        return self._cache[2].to(dtype), self._cache[3].to(dtype)


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor, rope_dims: int = 0) -> Tensor:
    """Non-interleaved half-split rotation: (x1, x2) -> (x1 cos + x2 sin, -x1 sin + x2 cos). x: [B, H, T, D].

    With 0 < rope_dims < D only x[..., :rope_dims] is rotated (split in halves of rope_dims/2) and the other
    D - rope_dims dims pass through unchanged (partial RoPE, records 2026-03-21 onward).
    """
    if 0 < rope_dims < x.size(-1):
        return torch.cat((apply_rotary_emb(x[..., :rope_dims], cos, sin), x[..., rope_dims:]), dim=-1)
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
