"""Legal score-first test-time training (TTT) evaluation.

Issue #1017's conditions, as enforced here: (1) causal scoring (sliding windows, see `golf.eval.windows`);
(2) a full softmax over the vocabulary (the model's own cross-entropy); (3) score before update: every chunk
of the stream is scored with the current weights before any update uses it; (4) one left-to-right pass: each
target is scored exactly once and never rescored after an update.

Streams and chunks: with `ttt.reset=never` the whole val set is one stream (record
`2026-03-23_LeakyReLU_LegalTTT_ParallelMuon`, PR #549 / PR #461 recipe: 32,768-target chunks scored with
stride-64 windows, then SGD(0.002, momentum 0.9) for 3 epochs over the chunk cut into seq_len windows, 32 per
step, grad clip 1.0, cosine LR over chunks, last chunk never trained). With `ttt.reset=document` every
document is its own stream with fresh LoRA adapters, `doc_batch` documents side by side (records
`2026-03-17_LoRA_TTT` and `2026-04-10_VarLenAttn`, PR #1530). The last chunk of a stream is scored only.

Training windows use the same planner with stride = seq_len: the chunk's targets in windows of up to seq_len
tokens that never reach past the chunk (so only already-scored tokens are trained on) and never cross a BOS
when eval.doc_aware is on. The caller's model is never modified: TTT runs on a deep copy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from golf.device import autocast_for, progress_bar
from golf.eval.bpb import ByteLUTs, bits_per_byte
from golf.eval.config import TTTConfig
from golf.eval.lora import LoRAAdapters
from golf.eval.sliding import check_stride, stream_segments
from golf.eval.standard import EvalResult
from golf.eval.windows import (
    EvalModeError,
    ScoreSums,
    WindowPlan,
    batch_rows,
    plan_range,
    score_plan,
    token_losses,
)


@dataclass
class TTTEvent:
    """Reported to the `callback` of `evaluate_ttt` after a chunk is scored and after it is trained on."""

    kind: str
    """'scored' (the chunk's targets were scored) or 'updated' (the optimizer steps on the chunk are done)."""
    batch: int
    """Stream batch index (always 0 with reset=never)."""
    chunk: int
    """Chunk index within the streams of the batch."""
    model: nn.Module
    """The adapted copy being evaluated (read it, never change it)."""
    params: list[nn.Parameter]
    """The parameters TTT trains (model parameters or LoRA adapters), for checks such as checksums."""


def build_optimizer(params: list[nn.Parameter], cfg: TTTConfig) -> torch.optim.Optimizer:
    """The TTT optimizer named by cfg.optimizer (sgd, adam, adamw) at cfg.lr."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_at(cfg: TTTConfig, chunk: int, num_chunks: int) -> float:
    """Learning rate for training on chunk `chunk` of `num_chunks` (PR #549 cosine over chunks, or constant)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * chunk / max(num_chunks - 1, 1)))


def chunk_bounds(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """[start, end) cut into consecutive target ranges of `size` (the last may be shorter)."""
    return [(a, min(a + size, end)) for a in range(start, end, size)]


class _Trainer:
    """Trainable parameters (full model or LoRA adapters), their optimizer and one update step."""

    def __init__(self, model: nn.Module, cfg: TTTConfig, groups: int, split_rows: bool, rank: int,
                 world_size: int, device: torch.device, keys: list[int] | None = None):
        self.model, self.cfg, self.device = model, cfg, device
        self.split_rows, self.rank, self.world_size = split_rows, rank, world_size
        self.adapters: LoRAAdapters | None = None
        frozen = tuple(f"blocks.{i}." for i in range(cfg.freeze_blocks))
        for name, p in model.named_parameters():
            p.requires_grad_(cfg.params == "full" and not name.startswith(frozen))
        if cfg.params == "lora":
            self.adapters = LoRAAdapters(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, groups, cfg.seed,
                                         keys)
            self.params = list(self.adapters.parameters())
        else:
            self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise EvalModeError(f"eval.ttt.freeze_blocks={cfg.freeze_blocks} leaves no parameter to train")
        self.optimizer = build_optimizer(self.params, cfg)
        self.groups = groups

    def route(self, plan: WindowPlan) -> None:
        if self.adapters is not None and self.adapters.groups > 1:
            self.adapters.route(plan.group)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, tokens: Tensor, plan: WindowPlan) -> None:
        """One optimizer step on the scored targets of `plan` (this step's windows, all ranks together).

        Loss = sum over adapter groups of the mean cross-entropy of the group's targets (one group: the mean
        over all targets). With split rows each rank takes its share of the windows, divides by the global
        counts and the gradients are summed, so the update equals the single-process one.
        """
        counts = np.bincount(plan.group, weights=plan.score_len, minlength=self.groups)
        local = plan.rank_slice(self.rank, self.world_size) if self.split_rows else plan
        self.optimizer.zero_grad(set_to_none=True)
        if len(local):
            x, y, score = batch_rows(local, tokens, self.device)
            self.route(local)
            with autocast_for(self.device):
                nll = token_losses(self.model, x, y)
            weight = torch.from_numpy(1.0 / counts[local.group]).to(self.device, torch.float32)
            loss = (torch.where(score, nll, torch.zeros_like(nll)) * weight[:, None]).sum()
            loss.backward()
        if self.split_rows and dist.is_available() and dist.is_initialized():
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()

    def close(self) -> None:
        if self.adapters is not None:
            self.adapters.remove()


def evaluate_ttt(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, stride: int,
                 batch_tokens: int, cfg: TTTConfig, doc_aware: bool = False, bos_id: int = -1, rank: int = 0,
                 world_size: int = 1, device: torch.device | None = None, progress: bool = False,
                 target_losses: Tensor | None = None,
                 callback: Callable[[TTTEvent], None] | None = None) -> EvalResult:
    """Score-first TTT evaluation of every target of `val_tokens` (1-D, N + 1 ids).

    Args:
        seq_len: window length in tokens; stride: new targets per scoring window (1..seq_len).
        batch_tokens: scoring tokens per forward summed over ranks (as sliding).
        cfg: TTT options (chunking, trained parameters, optimizer, schedule, reset).
        doc_aware: no window crosses a BOS (`bos_id`); required by cfg.reset=document.
        rank, world_size: reset=never splits each chunk's scoring and training windows across ranks and sums
            the gradients (every rank applies the same update); reset=document gives each rank every
            world_size-th document, its adapters seeded by the document index, so the score does not depend on
            world_size (with grad_clip > 0 or lr_schedule=cosine the documents batched together still interact).
        target_losses: optional float64 [N] tensor receiving each target's loss in nats (this rank's targets).
        callback: called with a TTTEvent after each chunk is scored and after each update on it.
    Returns:
        EvalResult(mode="ttt"); `seconds` includes copying the model and setting up adapters.
    Raises:
        EvalModeError: bad stride, reset=document without doc_aware, LoRA targets that match nothing.
    """
    device = device or next(model.parameters()).device
    t0 = time.perf_counter()
    check_stride(stride, seq_len)
    if cfg.reset == "document" and not doc_aware:
        raise EvalModeError("eval.ttt.reset=document needs eval.doc_aware=true")
    tokens = val_tokens.to(torch.int64)
    n = tokens.numel() - 1
    work = copy.deepcopy(model)  # weights reset between evaluations: the caller's model is never changed
    segments = stream_segments(tokens, doc_aware, bos_id)
    per_doc = cfg.reset == "document"
    if per_doc:  # every world_size-th document, longest first; adapters seeded by the document's index
        doc_ids = np.arange(len(segments))[rank::world_size]
        doc_ids = doc_ids[np.argsort(-(segments[doc_ids, 1] - segments[doc_ids, 0]), kind="stable")]
        id_batches = [doc_ids[i:i + cfg.doc_batch].tolist() for i in range(0, len(doc_ids), cfg.doc_batch)]
        batches = [[tuple(segments[d]) for d in ids] for ids in id_batches]
        total = int((segments[doc_ids, 1] - segments[doc_ids, 0]).sum())
    else:
        id_batches = [None]
        batches = [[(0, n)]]
        total = n // world_size
    split_rows = not per_doc and world_size > 1
    windows_per_batch = max(1, batch_tokens // (world_size * seq_len))
    sums = ScoreSums(luts, device, target_losses)
    stats = {"chunks": 0, "updates": 0}
    trained_params = 0

    def emit(kind: str, b: int, k: int, trainer: _Trainer) -> None:
        if callback is not None:
            callback(TTTEvent(kind, b, k, work, trainer.params))

    with progress_bar(total=total, desc="eval ttt", unit="tok", unit_scale=True, leave=False,
              disable=not progress or rank != 0) as bar:
        for b, streams in enumerate(batches):
            trainer = _Trainer(work, cfg, len(streams), split_rows, rank, world_size, device, id_batches[b])
            trained_params = sum(p.numel() for p in trainer.params)
            stream_segs = [np.array([s]) for s in streams] if per_doc else [segments]
            chunks = [chunk_bounds(s, e, cfg.chunk_tokens) for s, e in streams]
            num_chunks = max(len(c) for c in chunks)
            for k in range(num_chunks):
                active = [g for g in range(len(streams)) if k < len(chunks[g])]
                plan = WindowPlan.concat([plan_range(stream_segs[g], *chunks[g][k], seq_len, stride).with_group(g)
                                          for g in active])
                work.eval()
                score_plan(work, tokens, plan.rank_slice(rank, world_size) if split_rows else plan, sums,
                           windows_per_batch, device, lambda: autocast_for(device), trainer.route, bar.update)
                stats["chunks"] += len(active)
                emit("scored", b, k, trainer)
                train_groups = [g for g in active if k < len(chunks[g]) - 1]
                if cfg.epochs == 0 or not train_groups:
                    continue
                train_plan = WindowPlan.concat(
                    [plan_range(stream_segs[g], *chunks[g][k], seq_len, seq_len).with_group(g)
                     for g in train_groups])
                trainer.set_lr(lr_at(cfg, k, num_chunks))
                work.train()
                for _ in range(cfg.epochs):
                    for i in range(0, len(train_plan), cfg.batch_seqs):
                        trainer.step(tokens, train_plan.take(slice(i, i + cfg.batch_seqs)))
                        stats["updates"] += 1
                emit("updated", b, k, trainer)
            trainer.close()
    loss_sum, n_tokens, n_bytes = sums.reduced()
    val_loss, val_bpb = bits_per_byte(loss_sum, int(n_tokens), int(n_bytes))
    details = {"seq_len": seq_len, "stride": stride, "doc_aware": doc_aware, "params": cfg.params,
               "reset": cfg.reset, "optimizer": cfg.optimizer, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
               "epochs": cfg.epochs, "chunk_tokens": cfg.chunk_tokens, "batch_seqs": cfg.batch_seqs,
               "trained_params": trained_params, **stats}
    if cfg.params == "lora":
        details.update(lora_rank=cfg.lora_rank, lora_targets=list(cfg.lora_targets))
    return EvalResult("ttt", val_loss, val_bpb, int(n_tokens), int(n_bytes), time.perf_counter() - t0,
                      details=details, world_size=world_size, rank_tokens=sums.rank_tokens)


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `ttt` (golf.eval.run): score-first test-time training with cfg.ttt.

    Args: val: golf.eval.data.ValData; cfg: golf.eval.config.EvalConfig; ctx: golf.eval.run.EvalContext.
    """
    return evaluate_ttt(model, val.tokens, val.luts, val.seq_len, cfg.stride, cfg.batch_tokens, cfg.ttt,
                        cfg.doc_aware, val.bos_id, ctx.rank, ctx.world_size, ctx.device, ctx.progress,
                        ctx.target_losses)
