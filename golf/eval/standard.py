"""Standard validation: non-overlapping windows, exactly as the official `eval_val` (train_gpt.py L219-278)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from golf.device import autocast_for, progress_bar
from golf.eval.bpb import BpbAccumulator, ByteLUTs
from golf.eval.windows import ScoreSums, official_windows, score_windows

log = logging.getLogger("golf.eval")


@dataclass
class EvalResult:
    """Scores of one evaluation: val_loss in nats per token, val_bpb in bits per byte."""

    mode: str
    val_loss: float
    val_bpb: float
    tokens: int
    """Scored target tokens."""
    bytes: int
    """UTF-8 bytes those targets stand for (SentencePiece LUT count)."""
    seconds: float
    """Wall time of the evaluation in seconds (for eval.py modes: including the mode's warm-up)."""
    details: dict = field(default_factory=dict)
    """Settings and counts of the mode (window length, stride, doc_aware, windows, TTT chunks/steps, ...)."""
    over_budget: bool = False
    """True when `seconds` exceeded eval.time_budget_s."""
    world_size: int = 1
    """Processes that shared the evaluation."""
    rank_tokens: list[int] = field(default_factory=list)
    """Target tokens each rank scored (index = rank; sums to `tokens`)."""

    def to_dict(self) -> dict:
        """JSON form; the counts are named val_tokens / val_bytes (the bpb denominator), not tokens / bytes."""
        d = asdict(self)
        d["val_tokens"], d["val_bytes"] = d.pop("tokens"), d.pop("bytes")
        return d


def evaluate_standard(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, batch_tokens: int,
                      rank: int = 0, world_size: int = 1, grad_accum_steps: int = 1,
                      device: torch.device | None = None, progress: bool = False,
                      byte_sidecar: Tensor | None = None) -> EvalResult:
    """Score every token of `val_tokens` (1-D, length k*seq_len + 1) in non-overlapping windows.

    Each rank takes a contiguous range of windows (`seq_start = total*r/W`) and processes
    batch_tokens // (world_size * grad_accum_steps) tokens per forward. The model must return the mean
    cross-entropy (nats) for `model(x, y)`. Loss sums are accumulated in fp64 and all-reduced.
    `byte_sidecar` (int, shape [len(val_tokens)], CaseOps): bytes of target i+1 are byte_sidecar[i+1]
    instead of the LUT count (2026-04-27 record `eval_val`).
    Raises ValueError when a batch would hold less than one window per rank.
    """
    device = device or next(model.parameters()).device
    local_batch_tokens = batch_tokens // (world_size * grad_accum_steps)
    if local_batch_tokens < seq_len:  # run-time: VAL_BATCH_SIZE, TRAIN_SEQ_LEN, world size
        raise ValueError(f"eval.batch_tokens={batch_tokens} gives less than one {seq_len}-token window per rank "
                         f"(world_size={world_size}, grad_accum_steps={grad_accum_steps})")
    local_batch_seqs = local_batch_tokens // seq_len
    total_seqs = (val_tokens.numel() - 1) // seq_len
    seq_start, seq_end = total_seqs * rank // world_size, total_seqs * (rank + 1) // world_size
    acc = BpbAccumulator(luts, device)
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    starts = range(seq_start, seq_end, local_batch_seqs)
    bar = progress_bar(total=(seq_end - seq_start) * seq_len, desc="eval standard", unit="tok", unit_scale=True,
               disable=not progress or rank != 0, leave=False)  # counts tokens, with ETA
    with torch.inference_mode(), bar:
        for s in starts:
            e = min(s + local_batch_seqs, seq_end)
            local = val_tokens[s * seq_len: e * seq_len + 1].to(device=device, dtype=torch.int64)
            x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
            with autocast_for(device):
                batch_loss = model(x, y).detach()
            tb = None
            if byte_sidecar is not None:
                tb = byte_sidecar[s * seq_len + 1: e * seq_len + 1].reshape(-1, seq_len)
            acc.add(batch_loss.double() * y.numel(), x, y, tb)
            bar.update((e - s) * seq_len)
    model.train(was_training)
    acc.all_reduce()
    val_loss, val_bpb = acc.result()
    return EvalResult("standard", val_loss, val_bpb, int(acc.token_count.item()), int(acc.byte_count.item()),
                      time.perf_counter() - t0, details={"seq_len": seq_len, "windows": total_seqs})


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `standard` (golf.eval.run): the official non-overlapping windows of val.seq_len tokens.

    The official windows and rank split (contiguous window ranges, batch_tokens // (W * seq_len) windows per
    forward), scored through the model's per-token losses and summed exactly (golf.eval.bpb.on_grid), so any
    world size gives the single-process score bit for bit. (`evaluate_standard`, used for the training-time
    validation, keeps the official per-batch mean accumulation; the two differ by fp32 rounding, ~1e-7.)

    Args: val: golf.eval.data.ValData; cfg: golf.eval.config.EvalConfig; ctx: golf.eval.run.EvalContext.
    """
    if cfg.doc_aware:
        log.info("eval.doc_aware applies to sliding and ttt; standard stays the official evaluation")
    return evaluate_standard_exact(model, val.tokens, val.luts, val.seq_len, cfg.batch_tokens, ctx.rank,
                                   ctx.world_size, ctx.device, ctx.progress, ctx.target_losses, val.byte_sidecar)


def evaluate_standard_exact(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, batch_tokens: int,
                            rank: int = 0, world_size: int = 1, device: torch.device | None = None,
                            progress: bool = False, target_losses: Tensor | None = None,
                            byte_sidecar: Tensor | None = None) -> EvalResult:
    """The official windows of `val_tokens` (1-D, k*seq_len + 1 ids) scored per token with exact sums.

    Rank r scores windows [k r / W, k (r + 1) / W) (official split), batch_tokens // (W * seq_len) per forward,
    through the model's `token_losses`; sums on the 2**-20 grid (golf.eval.bpb.on_grid) are all-reduced.
    target_losses: optional float64 [N] receiving this rank's per-target losses (nats). byte_sidecar (CaseOps,
    int [N + 1]): bytes of target j are byte_sidecar[j + 1] instead of the LUT count.
    Raises EvalModeError for a model without token_losses.
    """
    device = device or next(model.parameters()).device
    t0 = time.perf_counter()
    tokens = val_tokens.to(torch.int64)
    n = tokens.numel() - 1
    full = official_windows(n, seq_len)
    plan = full.rank_slice(rank, world_size)
    sums = ScoreSums(luts, device, target_losses, byte_sidecar)
    val_loss, val_bpb, n_tokens, n_bytes = score_windows(model, tokens, plan, sums, seq_len, batch_tokens, rank,
                                                         world_size, device, progress, "eval standard")
    return EvalResult("standard", val_loss, val_bpb, int(n_tokens), int(n_bytes), time.perf_counter() - t0,
                      details={"seq_len": seq_len, "windows": len(full)}, world_size=world_size,
                      rank_tokens=sums.rank_tokens)
