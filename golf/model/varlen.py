"""Document-masked (variable-length) causal attention: attention never crosses a document start (BOS).

Source: 2026-04-27 record (PR #1855; VarLen attention from PR #1530 / #1610): its training packs each rank's
tokens into one row and runs FlashAttention varlen over segments = documents (a BOS starts one), documents
longer than ``max_len`` split into pieces of ``max_len`` from their start (``_build_cu_seqlens``). golf builds
the same segments from the token ids (``model.attn_doc_mask``); every row of a [B, T] batch also starts a segment.

Kernels: FlashAttention-3 / -2 ``flash_attn_varlen_func`` on CUDA with bf16/fp16 inputs; otherwise an exact
PyTorch path (SDPA per segment), the reference the flash path is tested against.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Segments:
    """Segments of the flattened [B*T] token stream."""

    cu_seqlens: Tensor
    """int32 [n + 1]: segment boundaries, 0 first, B*T last."""
    max_seqlen: int
    """Longest segment in tokens."""

    def lengths(self) -> list[int]:
        cu = self.cu_seqlens.tolist()
        return [b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]


@torch.compiler.disable
def segments_from_ids(input_ids: Tensor, bos_id: int, max_len: int = 0) -> Segments:
    """Segments of ``input_ids`` [B, T]: a new one at every BOS, at every row start, and every ``max_len``
    tokens inside a document (0 = no split), as the record's ``_build_cu_seqlens`` (without bucket padding)."""
    bsz, seqlen = input_ids.shape
    flat = input_ids.reshape(-1)
    starts = (flat == bos_id).nonzero(as_tuple=True)[0].tolist()
    starts = sorted(set(starts) | set(range(0, bsz * seqlen, seqlen)))
    ends = starts[1:] + [bsz * seqlen]
    seg: list[int] = []
    for a, b in zip(starts, ends, strict=True):
        seg.extend(range(a, b, max_len) if max_len > 0 else [a])
    bounds = seg + [bsz * seqlen]
    longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return Segments(torch.tensor(bounds, dtype=torch.int32, device=input_ids.device), longest)


def _flash_varlen(backend: str):
    names = {"fa3": ["flash_attn_interface"], "fa2": ["flash_attn"], "auto": ["flash_attn_interface", "flash_attn"]}
    for mod in names.get(backend, []):
        try:
            return importlib.import_module(mod).flash_attn_varlen_func
        except (ImportError, AttributeError):
            continue
    return None


def varlen_attention_reference(q: Tensor, k: Tensor, v: Tensor, seg: Segments) -> Tensor:
    """Exact path: causal SDPA inside each segment. q [B, H, T, D], k, v [B, Hkv, T, D] -> [B, H, T, D]."""
    bsz, heads, seqlen, dim = q.shape
    gqa = k.size(1) != heads
    qf, kf, vf = (t.transpose(0, 1).reshape(t.size(1), bsz * seqlen, dim) for t in (q, k, v))
    out = torch.empty_like(qf)
    cu = seg.cu_seqlens.tolist()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        if b > a:
            out[:, a:b] = F.scaled_dot_product_attention(qf[None, :, a:b], kf[None, :, a:b], vf[None, :, a:b],
                                                         is_causal=True, enable_gqa=gqa)[0]
    return out.reshape(heads, bsz, seqlen, dim).transpose(0, 1)


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, seg: Segments, backend: str = "auto") -> Tensor:
    """Document-masked causal attention; flash varlen on CUDA bf16/fp16 when installed, else the exact path.

    q [B, H, T, D], k, v [B, Hkv, T, D] -> [B, H, T, D].
    """
    fn = _flash_varlen(backend) if q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) else None
    if fn is None:
        return varlen_attention_reference(q, k, v, seg)
    bsz, heads, seqlen, dim = q.shape
    qf, kf, vf = (t.transpose(1, 2).reshape(bsz * seqlen, t.size(1), dim) for t in (q, k, v))
    out = fn(qf, kf, vf, cu_seqlens_q=seg.cu_seqlens, cu_seqlens_k=seg.cu_seqlens, max_seqlen_q=seg.max_seqlen,
             max_seqlen_k=seg.max_seqlen, causal=True)
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(bsz, seqlen, heads, dim).transpose(1, 2)
