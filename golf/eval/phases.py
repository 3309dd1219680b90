"""Documents, batches, phases and the global SGD of phased TTT (golf.eval.phased_ttt), 2026-04-27 record (PR #1855).

Planning is a pure function of the token stream and the config, so every rank derives the same plan: documents
(`find_documents`), length-sorted batches in processing order (`batch_order`), chunk windows (`chunk_window`)
and the phase schedule (`plan_phases`: which processing-order batches each phase follows and which scored
documents its global SGD trains on). `global_sgd` trains the base weights on those documents with the
single-process update on every rank (each rank computes it, or with `global_split` each computes its documents'
share of every step and the gradients are summed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golf.device import autocast_for
from golf.eval.config import PhasedTTTConfig
from golf.eval.windows import EvalModeError


def find_documents(tokens: Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(start, length) per document of a token stream starting with BOS; length counts the next BOS too (the
    record's _find_docs). Documents of fewer than 2 tokens (a BOS at the very end) are left out.
    Raises EvalModeError when the stream does not start with `bos_id`."""
    bos = (tokens == bos_id).nonzero(as_tuple=True)[0].tolist()
    if not bos or bos[0] != 0:  # run-time: the data (DATA_PATH)
        raise EvalModeError("phased_ttt needs a token stream that starts with a BOS (document-structured data)")
    ends = [b + 1 for b in bos[1:]] + [tokens.numel()]
    return [(s, e - s) for s, e in zip(bos, ends, strict=True) if e - s >= 2]


def batch_order(docs: list[tuple[int, int]], size: int) -> list[tuple[int, list[int]]]:
    """(length-sorted batch index, doc indices) per batch: docs by ascending length in batches of `size`,
    batches ordered by descending longest document (the record's _build_ttt_global_batches)."""
    by_len = sorted(range(len(docs)), key=lambda i: docs[i][1])
    batches = [by_len[i: i + size] for i in range(0, len(by_len), size)]
    indexed = list(enumerate(batches))
    indexed.sort(key=lambda ib: -max(docs[i][1] for i in ib[1]))
    return indexed


def chunk_window(ci: int, pred_len: int, num_chunks: int, chunk: int, seq_len: int) -> tuple[int, int, int, int]:
    """(window start, window length, chunk offset in the window, chunk length) of chunk ci of a document with
    pred_len targets: the window is the last seq_len tokens ending at the chunk's end."""
    end = pred_len if ci == num_chunks - 1 else (ci + 1) * chunk
    start = max(0, end - seq_len)
    return start, end - start, ci * chunk - start, end - ci * chunk


@dataclass
class PhasePlan:
    """The phase schedule of one evaluation (the same on every rank)."""

    boundaries: list[int]
    """Scored-document counts that trigger the phases: prefix_docs * k / num_phases, k = 1..num_phases."""
    segments: list[tuple[int, int]]
    """[first, end) processing-order batch ranges scored between phases: segment k ends with the batch after
    which phase k runs (the first whose cumulative document count reaches boundaries[k]); the last segment runs
    after the last phase. A fresh adapter set starts every segment."""
    phase_docs: list[list[tuple[int, int]]]
    """(start, length) of the documents phase k trains on: the first boundaries[k] of the documents scored so far,
    ordered by (length-sorted batch index, position in the batch), as the record."""


def plan_phases(docs: list[tuple[int, int]], order: list[tuple[int, list[int]]], prefix_docs: int,
                num_phases: int) -> PhasePlan:
    """The record's phase trigger (eval_val_ttt_phased) on one process: after each batch the scored-document count
    is compared with the current boundary (at most one phase per batch); no phases when prefix_docs is 0."""
    prefix = min(prefix_docs, len(docs))
    bounds = [prefix * (k + 1) // num_phases for k in range(num_phases)]
    segments: list[tuple[int, int]] = []
    phase_docs: list[list[tuple[int, int]]] = []
    scored: list[tuple[int, int, int, int]] = []
    first = 0
    for q, (bidx, members) in enumerate(order):
        if prefix == 0 or len(phase_docs) >= num_phases:
            break
        scored.extend((bidx, pos, *docs[i]) for pos, i in enumerate(members))
        if len(scored) >= bounds[len(phase_docs)]:
            chosen = sorted(scored, key=lambda s: (s[0], s[1]))[: bounds[len(phase_docs)]]
            phase_docs.append([(s, n) for _, _, s, n in chosen])
            segments.append((first, q + 1))
            first = q + 1
    segments.append((first, len(order)))
    return PhasePlan(bounds, segments, phase_docs)


def _rank_span(x: Tensor, bos_id: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of packed row `x` (1-D ids) that `rank` trains on: the row's pieces (cut at every BOS) go to
    rank floor(piece start * world_size / len), so each rank holds whole pieces and the pieces stay in order."""
    n = x.numel()
    starts = sorted({0, *(x == bos_id).nonzero(as_tuple=True)[0].tolist()})
    cuts = [next((s for s in starts if s * world_size // n >= r), n) for r in range(world_size)] + [n]
    return cuts[rank], cuts[rank + 1]


def _sum_grads(params: list[nn.Parameter]) -> None:
    """All-reduce (sum) the gradients of `params` in one flat buffer (missing gradients count as zeros)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset: offset + g.numel()].view_as(p).to(p.dtype)
        offset += g.numel()


def global_sgd(model: nn.Module, tokens: Tensor, cfg: PhasedTTTConfig, seq_len: int, device: torch.device,
               bos_id: int = -1, rank: int = 0, world_size: int = 1) -> int:
    """SGD on already-scored document tokens (the record's train_val_ttt_global_sgd_distributed): chunks of
    global_chunk_tokens, cosine LR over chunks, steps of global_batch_seqs windows of seq_len packed as one row,
    the last chunk skipped. Returns the number of optimizer steps.

    On several ranks every rank computes the whole step (the single-process update, bit for bit on CPU); the
    weights are broadcast from rank 0 at the end (GPU kernels with atomics are not bitwise reproducible). With
    cfg.global_split (a document-masked model) each rank instead computes the loss of its whole documents of
    the row (`_rank_span`), divided by the row's target count, and the gradients are summed: the single-process
    update up to float summation order. The record gives each rank its own windows and averages the ranks'
    gradients (a world-size-dependent update of world_size * global_batch_seqs windows).
    """
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=cfg.global_lr, momentum=cfg.global_momentum)
    split = cfg.global_split and world_size > 1
    total = tokens.numel() - 1
    n_chunks = (total + cfg.global_chunk_tokens - 1) // cfg.global_chunk_tokens
    steps = 0
    model.train()
    for ci in range(n_chunks - 1):  # the last chunk is never trained on
        start, end = ci * cfg.global_chunk_tokens, min((ci + 1) * cfg.global_chunk_tokens, total)
        seqs = (end - start) // seq_len
        lr = cfg.global_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(n_chunks - 1, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        for _ in range(cfg.global_epochs):
            for bs in range(0, seqs, cfg.global_batch_seqs):
                be = min(bs + cfg.global_batch_seqs, seqs)
                local = tokens[start + bs * seq_len: start + be * seq_len + 1].to(device, torch.int64)
                x, y = local[:-1], local[1:]
                opt.zero_grad(set_to_none=True)
                if split:
                    a, b = _rank_span(x.cpu(), bos_id, rank, world_size)
                    if b > a:
                        with torch.enable_grad(), autocast_for(device):
                            loss = model.token_losses(x[None, a:b], y[None, a:b]).sum() / y.numel()
                        loss.backward()
                    _sum_grads(params)
                else:
                    with torch.enable_grad(), autocast_for(device):
                        loss = model(x[None], y[None])
                    loss.backward()
                if cfg.global_grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.global_grad_clip)
                opt.step()
                steps += 1
    model.eval()
    for p in params:
        p.requires_grad_(False)
        p.grad = None
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        for p in params:  # identical weights on every rank, whatever the kernels' nondeterminism
            dist.broadcast(p.data, src=0)
    return steps
