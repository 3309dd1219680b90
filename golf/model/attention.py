"""Causal GQA self-attention with QK RMS-norm, RoPE and a per-head query gain (official baseline), plus the
record options: partial RoPE, value-embedding injection, exclusive self attention (XSA) and output gates.

Kernel choice: FlashAttention-3 (`flash_attn_interface`) -> FlashAttention-2 (`flash_attn`) -> PyTorch SDPA.
Flash kernels need CUDA and bf16/fp16 inputs; any other call falls back to SDPA, so CPU runs and fp32
evaluation always work. `flash-attn` is an optional extra (`pip install golf[flash]`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.layers import CastedLinear, Rotary, apply_rotary_emb, rms_norm

if TYPE_CHECKING:
    from golf.model.varlen import Segments  # lazy: annotations only

_FLASH_MODULES = {"fa3": "flash_attn_interface", "fa2": "flash_attn"}


def resolve_flash_kernel(backend: str) -> tuple[str, Callable | None]:
    """Return (backend name actually used, flash_attn_func or None for SDPA).

    `auto` tries FA3, then FA2, then SDPA. Naming `fa3`/`fa2` explicitly raises ImportError when it is missing.
    """
    if backend == "sdpa":
        return "sdpa", None
    candidates = ["fa3", "fa2"] if backend == "auto" else [backend]
    for name in candidates:
        try:
            module = importlib.import_module(_FLASH_MODULES[name])
        except ImportError:
            if backend != "auto":  # run-time: what is installed
                raise ImportError(
                    f"model.attention_backend={backend} needs the '{_FLASH_MODULES[name]}' package; "
                    "install the optional extra (pip install 'golf[flash]') or use attention_backend=auto"
                ) from None
            continue
        return name, module.flash_attn_func
    return "sdpa", None


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA (arXiv 2603.09078; records 2026-03-20_11L_EfficientPartialXSA_FA3_SWA120 onward).

    Removes from each head's output its component along the normalized value vector of the same position:
    y_h <- y_h - (y_h · v̂) v̂ with v̂ = v_{kv(h)} / ||v_{kv(h)}||, kv(h) = h // (H / Hkv) (the GQA head map of
    SDPA and FlashAttention). GQA-aware by reshaping y to [B, Hkv, group, T, D] and broadcasting v̂ — no
    repeat_interleave. y: [B, H, T, D], v: [B, Hkv, T, D] -> [B, H, T, D].
    """
    bsz, heads, seqlen, head_dim = y.shape
    kv_heads = v.size(1)
    y_g = y.reshape(bsz, kv_heads, heads // kv_heads, seqlen, head_dim)
    v_hat = F.normalize(v, dim=-1).unsqueeze(2)
    y_g = y_g - (y_g * v_hat).sum(dim=-1, keepdim=True) * v_hat
    return y_g.reshape(bsz, heads, seqlen, head_dim)


class CausalSelfAttention(nn.Module):
    """Attention of the official baseline. Input/output [B, T, d].

    q: d->d, k,v: d->kv_dim (GQA), q and k RMS-normalized per head (no gain), RoPE on q,k, then
    q *= q_gain[h] (init `qk_gain_init`), causal softmax attention, zero-initialized output `proj`.
    Options (all off by default): `rope_dims` rotates only the first k head dims (partial RoPE, PR #315);
    `rope_train_seq_len` scales the RoPE base NTK-style beyond that length (layers.ntk_base);
    `forward(x, v_embed)` adds a [B, T, kv_dim] value embedding to c_v(x) (PR #374); `xsa` applies
    `exclusive_self_attention`; `gate` (out | sparse | dense) multiplies each head's output by a learned gate
    (gates.AttnOutputGate) before the output projection; `doc_mask` (model.attn_doc_mask) makes
    `forward(x, v_embed, segments)` attend only within each document (golf.model.varlen).
    """

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float, qk_gain_init: float,
                 backend: str = "auto", rope_dims: int = 0, xsa: bool = False, gate: str = "none",
                 gate_width: int = 12, gate_scale: float = 1.0, gate_init_std: float = 0.01,
                 rope_train_seq_len: int = 0, doc_mask: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.rope_dims = rope_dims if 0 < rope_dims < self.head_dim else 0
        self.rotary = Rotary(self.head_dim, base=rope_base, rope_dims=self.rope_dims, train_seq_len=rope_train_seq_len)
        self.xsa = xsa
        self.gate = None
        if gate != "none":
            from golf.model.gates import AttnOutputGate  # lazy: only gated models ship it

            self.gate = AttnOutputGate(gate, dim, num_heads, gate_width, gate_scale, gate_init_std)
        self.backend, self._flash = resolve_flash_kernel(backend)
        self.varlen = None
        if doc_mask:
            from golf.model.varlen import varlen_attention  # lazy: only document-masked models ship it

            self.varlen = varlen_attention

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Causal attention on [B, H, T, D] q and [B, Hkv, T, D] k, v; returns [B, H, T, D]."""
        if self._flash is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
            out = self._flash(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
            out = out[0] if isinstance(out, tuple) else out
            return out.transpose(1, 2)
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads
        )

    def forward(self, x: Tensor, v_embed: Tensor | None = None, segments: Segments | None = None) -> Tensor:
        """[B, T, d] -> [B, T, d]; with `segments` attention stays inside each document (golf.model.varlen)."""
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x)
        if v_embed is not None:
            v = v + v_embed
        v = v.reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = self.rotary(seqlen, x.device, q.dtype)
        q, k = apply_rotary_emb(q, cos, sin, self.rope_dims), apply_rotary_emb(k, cos, sin, self.rope_dims)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = self.attend(q, k, v) if segments is None else self.varlen(q, k, v, segments, self.backend)
        if self.xsa:
            y = exclusive_self_attention(y, v)
        if self.gate is not None:
            y = self.gate(y, x)
        return self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim))
