"""Clip values for per-row symmetric intN quantization: one |w| clip per row, per candidate.

Modes (``GroupQuant.clip``):
    percentile  clip = quantile(|w_row|, p/100)           official int8 (p = 99.99984), train_gpt.py L321-334;
                with clip_scope=tensor one quantile of the whole |w| for every row (seed 000's code)
    rowmax      clip = max |w_row|                        int6/int5 records 03-19/03-20 (#6, #16)
    search      candidates rowmax + quantiles of GroupQuant.clip_candidates; the caller keeps the one with the
                least squared reconstruction error (GPTQ-lite, record 03-22 #25 / PR #379)
    std         clip = k * std(w_row) (unbiased std)      SDClip, record 04-05 (#46)

Everything is tensor arithmetic without Python branching on values, so the same code runs inside
``torch.compile`` for QAT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.config import GroupQuant


def scale_floor(rule: GroupQuant, qmax: int) -> float:
    """Smallest allowed scale: 1/qmax (official clamp_min(1/127); GPTQ-lite 1/31) or 1e-10 (SDClip).

    auto = 1/qmax for clip=percentile (the official int8 rule), 1e-10 otherwise: the 1/qmax floor fixes the step
    of every row whose clip is below 1, and small trained models have row maxima around 0.1-0.3 (measured on
    the 4L d256 smoke model: every attention/MLP row), where it would leave int6 about 5 levels per row.
    """
    mode = rule.scale_floor
    if mode == "auto":
        mode = "qmax" if rule.clip == "percentile" else "none"
    return 1.0 / qmax if mode == "qmax" else 1e-10


def _row_quantile(a: Tensor, q: float) -> Tensor:
    return a.amax(dim=1) if q >= 1.0 else torch.quantile(a, q, dim=1)


def clip_candidates(w: Tensor, rule: GroupQuant) -> list[tuple[str, Tensor]]:
    """(label, clip [rows]) candidates for fp32 rows ``w`` [rows, cols] (cols >= 1).

    Labels name the choice in the manifest: "p99.99984", "rowmax", "std12.85". clip=search lists rowmax first,
    so ties resolve to the row max and search is never worse than rowmax.
    Raises RuntimeError from torch.quantile for inputs over 2^24 elements (callers wrap it).
    """
    a = w.abs()
    if rule.clip == "percentile" and rule.clip_scope == "tensor":
        q = rule.clip_percentile / 100.0
        whole = a.amax() if q >= 1.0 else torch.quantile(a.reshape(-1), q)
        return [(f"tensor-p{rule.clip_percentile:.10g}", whole.expand(a.size(0)).contiguous())]
    if rule.clip == "percentile":
        return [(f"p{rule.clip_percentile:.10g}", _row_quantile(a, rule.clip_percentile / 100.0))]
    if rule.clip == "rowmax":
        return [("rowmax", a.amax(dim=1))]
    if rule.clip == "std":
        std = torch.nan_to_num(w.std(dim=1), nan=0.0)  # one column: no spread, clip 0 -> scale floor
        return [(f"std{rule.clip_sigmas:.10g}", rule.clip_sigmas * std)]
    out = [("rowmax", a.amax(dim=1))]
    out += [(f"p{p:.10g}", _row_quantile(a, p / 100.0)) for p in rule.clip_candidates if p < 100.0]
    return out
