"""Sliding-window evaluation (record `2026-03-19_SlidingWindowEval`, -0.032 bpb), optionally document-aware.

Every val target is scored exactly once with the longest context the window allows; see `golf.eval.windows`
for the window layout and the tail handling.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor, nn

from golf.eval.bpb import ByteLUTs
from golf.eval.standard import EvalResult
from golf.eval.windows import (
    EvalModeError,
    ScoreSums,
    WindowPlan,
    document_segments,
    plan_range,
    rank_documents,
    score_windows,
)


def stream_segments(tokens: Tensor, doc_aware: bool, bos_id: int) -> np.ndarray:
    """Segments [S, 2] of the target range [0, N): one segment, or one per document when doc_aware.

    Raises EvalModeError when doc_aware is requested without a BOS id (tokenizer without BOS).
    """
    n = tokens.numel() - 1
    if not doc_aware:
        return np.array([[0, n]], dtype=np.int64)
    if bos_id < 0:  # run-time: the tokenizer (TOKENIZER_PATH)
        raise EvalModeError("eval.doc_aware=true needs a tokenizer with a BOS id to find document starts")
    return document_segments(tokens, bos_id)


def check_stride(stride: int, seq_len: int) -> None:
    """Raises EvalModeError unless 1 <= stride <= seq_len."""
    if not 1 <= stride <= seq_len:  # run-time: TRAIN_SEQ_LEN
        raise EvalModeError(f"eval.stride={stride} must be between 1 and the window length eval.seq_len={seq_len}")


def sliding_plan(tokens: Tensor, seq_len: int, stride: int, doc_aware: bool = False, bos_id: int = -1) -> WindowPlan:
    """All windows of a sliding evaluation over targets [0, N) of `tokens` (1-D, N + 1 ids)."""
    check_stride(stride, seq_len)
    return plan_range(stream_segments(tokens, doc_aware, bos_id), 0, tokens.numel() - 1, seq_len, stride)


def evaluate_sliding(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, stride: int,
                     batch_tokens: int, doc_aware: bool = False, bos_id: int = -1, rank: int = 0,
                     world_size: int = 1, device: torch.device | None = None, progress: bool = False,
                     target_losses: Tensor | None = None) -> EvalResult:
    """Score every target of `val_tokens` once with sliding windows of seq_len and the given stride.

    Args:
        val_tokens: 1-D token ids (N + 1 of them; N targets). luts: byte tables.
        seq_len: window length in tokens; stride: new targets per window (1..seq_len).
        batch_tokens: tokens per forward summed over ranks -> batch_tokens // (world_size * seq_len) windows
            per forward on each rank.
        doc_aware: cut windows at every BOS (`bos_id`), so no target attends across documents.
        rank, world_size: each rank scores a contiguous share of the windows (with doc_aware, a contiguous run
            of whole documents, golf.eval.windows.rank_documents); the exact
            sums (golf.eval.bpb.on_grid) are all-reduced, so the score does not depend on world_size.
        target_losses: optional float64 tensor [N] that receives each target's loss in nats (this rank's
            targets only), for tests and analysis.
    Returns:
        EvalResult(mode="sliding") with val_loss (nats/token), val_bpb, scored tokens, bytes and seconds.
    Raises:
        EvalModeError: stride outside [1, seq_len], doc_aware without a BOS id, or a model without token_losses.
    """
    device = device or next(model.parameters()).device
    t0 = time.perf_counter()
    tokens = val_tokens.to(torch.int64)
    full_plan = sliding_plan(tokens, seq_len, stride, doc_aware, bos_id)
    if doc_aware:  # whole documents per rank (a contiguous run with ~N/W targets)
        plan = plan_range(rank_documents(stream_segments(tokens, True, bos_id), rank, world_size), 0,
                          tokens.numel() - 1, seq_len, stride)
    else:  # contiguous window ranges, as official eval_val
        plan = full_plan.rank_slice(rank, world_size)
    sums = ScoreSums(luts, device, target_losses)
    val_loss, val_bpb, n_tokens, n_bytes = score_windows(model, tokens, plan, sums, seq_len, batch_tokens, rank,
                                                         world_size, device, progress, "eval sliding")
    details = {"seq_len": seq_len, "stride": stride, "doc_aware": doc_aware, "windows": len(full_plan)}
    return EvalResult("sliding", val_loss, val_bpb, int(n_tokens), int(n_bytes), time.perf_counter() - t0,
                      details=details, world_size=world_size, rank_tokens=sums.rank_tokens)


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `sliding` (golf.eval.run): windows of val.seq_len every cfg.stride tokens, each target once.

    Args: val: golf.eval.data.ValData; cfg: golf.eval.config.EvalConfig; ctx: golf.eval.run.EvalContext.
    """
    return evaluate_sliding(model, val.tokens, val.luts, val.seq_len, cfg.stride, cfg.batch_tokens, cfg.doc_aware,
                            val.bos_id, ctx.rank, ctx.world_size, ctx.device, ctx.progress, ctx.target_losses)
