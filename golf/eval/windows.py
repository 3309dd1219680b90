"""Window planning and batched scoring shared by the sliding and test-time-training evaluations.

Coordinates: the val stream holds tokens[0..N]; target j (0 <= j < N) is tokens[j + 1] predicted from
tokens[..j]. A window (start, length, score_len) feeds inputs tokens[start : start + length] and scores its
*last* score_len targets, so each scored target sees every earlier token of the window as context.

Sliding-window evaluation (record `2026-03-19_SlidingWindowEval`): the first window of a segment scores all of
its targets; every later window scores the next `stride` targets and ends exactly at the last of them, so it
holds seq_len tokens and each target gets at least seq_len - stride tokens of context. The final window is
right-aligned to the end of the segment and scores only what is left, so no target is scored twice or skipped
whatever the stride. (Record scripts double-counted ~2k tail targets until the 04-01 fix; their fixed list,
starts `range(0, N, stride)` kept while `start + seq_len - stride < N`, is exact when N - seq_len is a multiple
of the stride, as with the official val length and stride 64, and gives the same windows as this plan there;
otherwise its last, shorter window rescored targets.) With stride = seq_len the plan is the official
non-overlapping windows.

Document-aware planning cuts the stream into segments at every BOS token (a new document starts at its BOS),
so a window never crosses a document start: the target that predicts a BOS belongs to the document before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from golf.device import autocast_for, progress_bar
from golf.errors import GolfError
from golf.eval.bpb import ByteLUTs, bits_per_byte, on_grid, token_bytes


class EvalModeError(GolfError, ValueError):
    """An evaluation mode cannot run with these settings (stride vs window length, missing BOS id, ...)."""


@dataclass
class WindowPlan:
    """Windows to score, as parallel int64 arrays of shape [W].

    start: index of the window's first input token; length: window length in tokens (<= seq_len);
    score_len: number of targets scored at the end of the window; group: adapter/stream index of each
    window (used by per-document LoRA; 0 otherwise).
    """

    start: np.ndarray
    length: np.ndarray
    score_len: np.ndarray
    group: np.ndarray

    @staticmethod
    def empty() -> WindowPlan:
        z = np.zeros(0, dtype=np.int64)
        return WindowPlan(z, z.copy(), z.copy(), z.copy())

    @staticmethod
    def concat(plans: list[WindowPlan]) -> WindowPlan:
        if not plans:
            return WindowPlan.empty()
        return WindowPlan(*(np.concatenate([getattr(p, k) for p in plans]) for k in
                            ("start", "length", "score_len", "group")))

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def take(self, idx: np.ndarray | slice) -> WindowPlan:
        return WindowPlan(self.start[idx], self.length[idx], self.score_len[idx], self.group[idx])

    def with_group(self, group: int) -> WindowPlan:
        return WindowPlan(self.start, self.length, self.score_len, np.full_like(self.start, group))

    @property
    def num_targets(self) -> int:
        return int(self.score_len.sum())

    def scored_targets(self) -> np.ndarray:
        """Target indices scored by the plan, in plan order (shape [num_targets])."""
        n = self.score_len
        first = self.start + self.length - n
        within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        return np.repeat(first, n) + within

    def rank_slice(self, rank: int, world_size: int) -> WindowPlan:
        """Contiguous share of the windows for one rank (`total * r // W`, as official eval_val)."""
        n = len(self)
        return self.take(slice(n * rank // world_size, n * (rank + 1) // world_size))


def document_segments(tokens: Tensor, bos_id: int, begin: int = 0, end: int | None = None) -> np.ndarray:
    """Cut the target range [begin, end) at every BOS token: array [S, 2] of (seg_start, seg_end).

    A segment starts at 0/begin or at a position p holding BOS (input p = BOS starts a document), so targets
    of one segment never see tokens of another. tokens: 1-D ids (N + 1 of them); end defaults to N.
    """
    n = tokens.numel() - 1 if end is None else end
    ids = tokens[begin:n]
    bos = (ids == bos_id).nonzero().flatten().numpy().astype(np.int64) + begin
    starts = np.unique(np.concatenate([[begin], bos]))
    ends = np.append(starts[1:], n)
    return np.stack([starts, ends], axis=1)


def rank_documents(segments: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The rows of `segments` ([S, 2], sorted) a rank scores when work is shared by documents.

    Rank r takes the documents whose middle target lies in [N r / W, N (r + 1) / W) of the range they cover: a
    contiguous run of whole documents with about N / W targets, so no document is split across ranks.
    """
    if world_size == 1 or len(segments) == 0:
        return segments
    lo, hi = int(segments[0, 0]), int(segments[-1, 1])
    n = hi - lo
    first, last = lo + n * rank // world_size, lo + n * (rank + 1) // world_size
    middle = (segments[:, 0] + segments[:, 1]) // 2
    return segments[(middle >= first) & (middle < last)]


def plan_segment(seg_start: int, seg_end: int, score_start: int, score_end: int, seq_len: int,
                 stride: int) -> WindowPlan:
    """Windows scoring targets [score_start, score_end) of a segment [seg_start, seg_end), context limited to
    the segment and to seq_len tokens.

    Targets before seg_start + seq_len are scored by one window starting at seg_start; the rest in groups of
    `stride`, each by the seq_len-long window that ends at the group's last target. Raises ValueError when
    the score range is outside the segment or stride is not in [1, seq_len].
    """
    if not (seg_start <= score_start <= score_end <= seg_end):
        raise ValueError(f"score range [{score_start}, {score_end}) not inside segment [{seg_start}, {seg_end})")
    if not 1 <= stride <= seq_len:  # run-time: TRAIN_SEQ_LEN
        raise ValueError(f"stride={stride} must be in [1, seq_len={seq_len}]")
    starts, lengths, scores = [], [], []
    head_end = min(score_end, seg_start + seq_len)
    if score_start < head_end:
        starts.append(np.array([seg_start]))
        lengths.append(np.array([head_end - seg_start]))
        scores.append(np.array([head_end - score_start]))
    first = max(score_start, seg_start + seq_len)
    if first < score_end:
        group_starts = np.arange(first, score_end, stride, dtype=np.int64)
        group_ends = np.minimum(group_starts + stride, score_end)
        starts.append(group_ends - seq_len)
        lengths.append(np.full_like(group_ends, seq_len))
        scores.append(group_ends - group_starts)
    if not starts:
        return WindowPlan.empty()
    start = np.concatenate(starts).astype(np.int64)
    return WindowPlan(start, np.concatenate(lengths).astype(np.int64), np.concatenate(scores).astype(np.int64),
                      np.zeros_like(start))


def official_windows(num_targets: int, seq_len: int) -> WindowPlan:
    """The official non-overlapping windows (eval_val, train_gpt.py L219-278) over `num_targets` = k * seq_len
    targets: window i feeds tokens [i seq_len, (i + 1) seq_len) and scores all of them. The same plan as
    `plan_range` over one segment with stride = seq_len, without the segment machinery the standard mode never
    needs. Raises EvalModeError when num_targets is not a multiple of seq_len (the val loader truncates to one).
    """
    if num_targets % seq_len:
        raise EvalModeError(f"{num_targets} validation targets are not a multiple of seq_len={seq_len}")
    start = np.arange(0, num_targets, seq_len, dtype=np.int64)
    full = np.full_like(start, seq_len)
    return WindowPlan(start, full, full.copy(), np.zeros_like(start))


def plan_range(segments: np.ndarray, score_start: int, score_end: int, seq_len: int, stride: int) -> WindowPlan:
    """`plan_segment` over every segment intersecting the target range [score_start, score_end).

    segments: [S, 2] sorted, non-overlapping (seg_start, seg_end) rows, as `document_segments` returns.
    """
    first = int(np.searchsorted(segments[:, 1], score_start, side="right"))
    last = int(np.searchsorted(segments[:, 0], score_end, side="left"))
    plans = []
    for seg_start, seg_end in segments[first:last]:
        lo, hi = max(int(seg_start), score_start), min(int(seg_end), score_end)
        if lo < hi:
            plans.append(plan_segment(int(seg_start), int(seg_end), lo, hi, seq_len, stride))
    return WindowPlan.concat(plans)


def target_coverage(plan: WindowPlan, num_targets: int) -> np.ndarray:
    """How many times each target 0..num_targets-1 is scored by `plan` (all ones = every target exactly once)."""
    return np.bincount(plan.scored_targets(), minlength=num_targets)


def batch_rows(plan: WindowPlan, tokens: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Padded inputs/targets of a plan: x, y int64 [B, T] (T = longest window) and the bool score mask [B, T].

    Padding sits after the window's last token; the model is causal, so it never changes scored positions.
    """
    t_max = int(plan.length.max())
    pos = torch.arange(t_max, dtype=torch.int64)
    start = torch.from_numpy(plan.start)[:, None]
    length = torch.from_numpy(plan.length)[:, None]
    valid = pos[None, :] < length
    idx = torch.where(valid, start + pos[None, :], torch.zeros((), dtype=torch.int64))
    x, y = tokens[idx], tokens[idx + 1]
    score = valid & (pos[None, :] >= length - torch.from_numpy(plan.score_len)[:, None])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), score.to(device, non_blocking=True)


def token_losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-token cross-entropy in nats, fp32 [B, T], from a model's `token_losses(x, y)`.

    Raises EvalModeError when the model has no such method (every golf model must provide it).
    """
    fn = getattr(model, "token_losses", None)
    if fn is None:
        raise EvalModeError(f"{type(model).__name__} has no token_losses(x, y); sliding/ttt evaluation needs it")
    return fn(x, y).float()


class ScoreSums:
    """Running fp64 sums of an evaluation (loss nats, targets, bytes), optionally filling per-target losses.

    Losses are added on the 2**-20 grid (`golf.eval.bpb.on_grid`), so the sums are exact and the reduced result
    is the same for any split of the targets across batches and ranks. `rank_tokens` (after `reduced()`) holds
    the targets each rank scored.
    """

    def __init__(self, luts: ByteLUTs, device: torch.device, target_losses: Tensor | None = None,
                 byte_sidecar: Tensor | None = None):
        self.luts = luts.to(device)
        self.byte_sidecar = byte_sidecar  # CaseOps: bytes of target j = byte_sidecar[j + 1] (int, [N + 1])
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.tokens = torch.zeros((), dtype=torch.float64, device=device)
        self.bytes = torch.zeros((), dtype=torch.float64, device=device)
        self.target_losses = target_losses
        self.rank_tokens: list[int] = []

    def add(self, nll: Tensor, x: Tensor, y: Tensor, score: Tensor, plan: WindowPlan) -> int:
        """Add the scored positions of one batch; returns the number of targets added."""
        picked = on_grid(nll[score])
        self.loss += picked.sum()
        self.tokens += picked.numel()
        if self.byte_sidecar is not None:
            targets = torch.from_numpy(plan.scored_targets()) + 1
            self.bytes += self.byte_sidecar[targets].to(self.bytes.device, torch.float64).sum()
        else:
            self.bytes += token_bytes(x[score], y[score], self.luts).double().sum()
        if self.target_losses is not None:
            self.target_losses[torch.from_numpy(plan.scored_targets())] = picked.detach().cpu()
        return picked.numel()

    def reduced(self) -> tuple[float, float, float]:
        """(loss_sum, tokens, bytes) summed over ranks (fp64, exact); also fills `rank_tokens`."""
        t = torch.stack([self.loss, self.tokens, self.bytes])
        self.rank_tokens = [int(self.tokens.item())]
        if dist.is_available() and dist.is_initialized():
            counts = [torch.zeros_like(self.tokens) for _ in range(dist.get_world_size())]
            dist.all_gather(counts, self.tokens)
            self.rank_tokens = [int(c.item()) for c in counts]
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        loss, tokens, nbytes = t.tolist()
        return loss, tokens, nbytes


def score_plan(model: nn.Module, tokens: Tensor, plan: WindowPlan, sums: ScoreSums, windows_per_batch: int,
               device: torch.device, autocast: Callable, before_forward: Callable[[WindowPlan], None] | None = None,
               on_batch: Callable[[int], None] | None = None) -> None:
    """Score every window of `plan` (no gradients), `windows_per_batch` windows per forward.

    Windows are batched in order of decreasing length so padding stays small. before_forward(sub_plan) runs
    before each forward (LoRA uses it to route rows to adapters); on_batch(n_targets) after each batch.
    """
    if len(plan) == 0:
        return
    order = np.argsort(-plan.length, kind="stable")
    with torch.no_grad():
        for i in range(0, len(plan), windows_per_batch):
            sub = plan.take(order[i:i + windows_per_batch])
            x, y, score = batch_rows(sub, tokens, device)
            if before_forward is not None:
                before_forward(sub)
            with autocast():
                nll = token_losses(model, x, y)
            n = sums.add(nll, x, y, score, sub)
            if on_batch is not None:
                on_batch(n)


def score_windows(model: nn.Module, tokens: Tensor, plan: WindowPlan, sums: ScoreSums, seq_len: int,
                  batch_tokens: int, rank: int, world_size: int, device: torch.device, progress: bool,
                  desc: str) -> tuple[float, float, int, int]:
    """Score this rank's `plan` in eval mode (the model's train/eval mode restored after), batch_tokens summed
    over ranks per forward, with a token progress bar on rank 0; the sums are all-reduced.

    Returns (val_loss in nats per token, val_bpb, scored tokens, bytes) over all ranks.
    """
    was_training = model.training
    model.eval()
    with progress_bar(total=plan.num_targets, desc=desc, unit="tok", unit_scale=True, leave=False,
                      disable=not progress or rank != 0) as bar:
        score_plan(model, tokens, plan, sums, max(1, batch_tokens // (world_size * seq_len)), device,
                   lambda: autocast_for(device), on_batch=bar.update)
    model.train(was_training)
    loss_sum, n_tokens, n_bytes = sums.reduced()
    val_loss, val_bpb = bits_per_byte(loss_sum, int(n_tokens), int(n_bytes))
    return val_loss, val_bpb, int(n_tokens), int(n_bytes)
