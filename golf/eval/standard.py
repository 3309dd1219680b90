"""Standard validation: non-overlapping windows, exactly as the official `eval_val` (train_gpt.py L219-278)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from golf.device import autocast_for, progress_bar
from golf.eval.bpb import BpbAccumulator, ByteLUTs

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

    def to_dict(self) -> dict:
        """JSON form; the counts are named val_tokens / val_bytes (the bpb denominator), not tokens / bytes."""
        d = asdict(self)
        d["val_tokens"], d["val_bytes"] = d.pop("tokens"), d.pop("bytes")
        return d


def evaluate_standard(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, batch_tokens: int,
                      rank: int = 0, world_size: int = 1, grad_accum_steps: int = 1,
                      device: torch.device | None = None, progress: bool = False) -> EvalResult:
    """Score every token of `val_tokens` (1-D, length k*seq_len + 1) in non-overlapping windows.

    Each rank takes a contiguous range of windows (`seq_start = total*r/W`) and processes
    batch_tokens // (world_size * grad_accum_steps) tokens per forward. The model must return the mean
    cross-entropy (nats) for `model(x, y)`. Loss sums are accumulated in fp64 and all-reduced.
    Raises ValueError when a batch would hold less than one window per rank.
    """
    device = device or next(model.parameters()).device
    local_batch_tokens = batch_tokens // (world_size * grad_accum_steps)
    if local_batch_tokens < seq_len:
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
            acc.add(batch_loss.double() * y.numel(), x, y)
            bar.update((e - s) * seq_len)
    model.train(was_training)
    acc.all_reduce()
    val_loss, val_bpb = acc.result()
    return EvalResult("standard", val_loss, val_bpb, int(acc.token_count.item()), int(acc.byte_count.item()),
                      time.perf_counter() - t0, details={"seq_len": seq_len, "windows": total_seqs})


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `standard` (golf.eval.run): the official non-overlapping windows of val.seq_len tokens.

    Args: val: golf.eval.data.ValData; cfg: golf.eval.config.EvalConfig; ctx: golf.eval.run.EvalContext.
    """
    if cfg.doc_aware:
        log.info("eval.doc_aware applies to sliding and ttt; standard stays the official evaluation")
    return evaluate_standard(model, val.tokens, val.luts, val.seq_len, cfg.batch_tokens, ctx.rank, ctx.world_size,
                             device=ctx.device, progress=ctx.progress)
