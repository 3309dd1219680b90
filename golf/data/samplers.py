"""Sampling train loaders of the records (the official loader reads shards in order; golf.data.loader).

Both draw every random choice from a numpy PCG64 generator in the same order as the record they reproduce, so
for the same shard files the batches are identical (tests/test_loaders.py compares them with the records' own
loaders). Sequences never cross a shard end; a window is `seq_len + 1` tokens, x = window[:-1], y = window[1:].

* `ShuffledSequenceLoader` (record 2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT): rank r reads shards
  r, r + W, ... with generator seed r. Per shard: a random phase in [0, seq_len) and a random permutation of the
  whole-sequence starts after it. Per sequence: a shard drawn with probability proportional to the starts it has
  left, its last remaining start popped; when every shard is empty, all are re-phased and re-permuted.
* `CoprimeStrideLoader` (record 2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816, from PR #726): one generator
  seeded by an FNV-1a-style hash of the shard paths, identical on every rank; per step the global batch of
  sequences is drawn, rank r keeping every W-th. Per shard a cursor walks the seq_len blocks after a random
  phase in the order start, start + s, start + 2s, ... (mod block count) with a random stride s coprime to the
  block count, so each block is visited once per pass. Per step: a mix of shards (8 growing to 32 over the first
  1800 steps, capped by the shard and sequence counts) drawn without replacement with probability proportional
  to remaining^α (α 0.9 -> 0.5 over those steps), one sequence each plus a multinomial share of the rest;
  each shard's sequences are shuffled, then interleaved round-robin in random order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from golf.data.loader import shard_files
from golf.data.shards import HEADER_BYTES, ShardError, read_header

_FNV_PRIME = 1099511628211
_MASK64 = 0xFFFFFFFFFFFFFFFF


class _Shards:
    """Token counts and read-only memory maps of shard files (opened lazily, kept open)."""

    def __init__(self, files: list[Path], vocab_size: int | None = None):
        self.files = files
        self.num_tokens = [read_header(f) for f in files]
        self.vocab_size = vocab_size
        self._maps: dict[int, np.memmap] = {}

    def window(self, si: int, start: int, length: int) -> Tensor:
        """Tokens [start, start + length) of shard `si` as int64 [length]."""
        if si not in self._maps:
            tokens = np.memmap(self.files[si], mode="r", dtype="<u2", offset=HEADER_BYTES,
                               shape=(self.num_tokens[si],))
            if self.vocab_size is not None and tokens.size and int(tokens.max()) >= self.vocab_size:
                # Checked once per shard when first mapped, like the sequential loader's read_shard check.
                pos = int(np.argmax(tokens >= self.vocab_size))
                raise ShardError(f"shard {self.files[si]}: token id {int(tokens.max())} >= vocab_size "
                                 f"{self.vocab_size} (first bad id at position {pos})")
            self._maps[si] = tokens
        return torch.from_numpy(np.array(self._maps[si][start:start + length], dtype=np.int64))


def _local_sequences(global_tokens: int, world_size: int, grad_accum_steps: int, seq_len: int) -> int:
    local = global_tokens // (world_size * grad_accum_steps)
    if local <= 0 or local % seq_len:
        raise ValueError(f"global_tokens={global_tokens} // (world_size={world_size} * grad_accum_steps="
                         f"{grad_accum_steps}) = {local} local tokens, not a positive multiple of seq_len={seq_len}")
    return local // seq_len


def _random_phase(rng: np.random.Generator, num_tokens: int, seq_len: int) -> int:
    """Offset in [0, min(seq_len - 1, num_tokens - seq_len - 1)] (0 when that bound is not positive)."""
    bound = min(seq_len - 1, max(0, num_tokens - seq_len - 1))
    return int(rng.integers(bound + 1)) if bound > 0 else 0


class ShuffledSequenceLoader:
    """Per-rank random whole sequences from this rank's shards (record 04-09 `ShuffledSequenceLoader`).

    Args:
        pattern: train shard glob; rank r uses files[r::world_size] (sorted order).
        rank, world_size: this process and the number of processes.
        device: where batches go.
        seq_len: sequence length (fixed: the start lists are cut for it).
    Raises:
        NoShardsFoundError: the pattern matches nothing. ShardError: a malformed shard.
        ValueError: this rank gets no shard, or next_batch asks for another seq_len.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device, seq_len: int,
                 vocab_size: int | None = None):
        files = shard_files(pattern)[rank::world_size]
        if not files:
            raise ValueError(f"data.loader=shuffled: rank {rank} of {world_size} gets no shard of {pattern}")
        self.shards = _Shards(files, vocab_size)
        self.world_size, self.seq_len, self.device = world_size, seq_len, torch.device(device)
        self.rng = np.random.Generator(np.random.PCG64(rank))
        self.starts: list[list[int]] = [[] for _ in files]
        for si in range(len(files)):
            self._reshuffle(si)

    @property
    def stream(self) -> ShuffledSequenceLoader:
        """The object whose resume_state() resumes the loader (the sequential loader's is its TokenStream)."""
        return self

    def resume_state(self) -> dict:
        """Generator state and the remaining starts of every shard (int64 tensors), for resume."""
        return {"rng": self.rng.bit_generator.state,
                "starts": [torch.tensor(s, dtype=torch.int64) for s in self.starts]}

    def restore(self, state: dict) -> None:
        """Resume from resume_state() (same shards, rank and seq_len)."""
        if len(state["starts"]) != len(self.starts):
            raise ValueError(f"ShuffledSequenceLoader state has {len(state['starts'])} shards, loader has "
                             f"{len(self.starts)}")
        self.rng.bit_generator.state = state["rng"]
        self.starts = [t.tolist() for t in state["starts"]]

    def _reshuffle(self, si: int) -> None:
        n = self.shards.num_tokens[si]
        phase = _random_phase(self.rng, n, self.seq_len)
        order = self.rng.permutation((n - 1 - phase) // self.seq_len)
        self.starts[si] = (phase + order * self.seq_len).tolist()

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        """(x, y) int64 [global_tokens / (world_size · grad_accum_steps) / seq_len, seq_len] on `device`."""
        if seq_len != self.seq_len:
            raise ValueError(f"ShuffledSequenceLoader built for seq_len={self.seq_len}, asked for {seq_len}")
        rows = _local_sequences(global_tokens, self.world_size, grad_accum_steps, seq_len)
        left = np.array([len(s) for s in self.starts], dtype=np.float64)
        x = torch.empty((rows, seq_len), dtype=torch.int64)
        y = torch.empty((rows, seq_len), dtype=torch.int64)
        for row in range(rows):
            total = left.sum()
            if total <= 0:
                for si in range(len(self.starts)):
                    self._reshuffle(si)
                left = np.array([len(s) for s in self.starts], dtype=np.float64)
                total = left.sum()
            si = int(self.rng.choice(len(self.starts), p=left / total))
            start = self.starts[si].pop()
            left[si] -= 1
            window = self.shards.window(si, start, seq_len + 1)
            x[row], y[row] = window[:-1], window[1:]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def paths_seed(files: list[Path]) -> int:
    """64-bit seed from the shard paths: h <- (h XOR byte) · 1099511628211 mod 2^64 over every path's bytes."""
    h = 0
    for f in files:
        for byte in str(f).encode():
            h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


class CoprimeStrideLoader:
    """Global batches of coprime-stride shard walks, split across ranks (record 03-29 `DistributedTokenLoader`).

    Args:
        pattern: train shard glob (every rank reads every shard; the generator is identical on all ranks).
        rank, world_size, device: as `ShuffledSequenceLoader`.
        ramp_steps: steps over which the shard mix and the α exponent ramp (record: 1800).
    Raises:
        NoShardsFoundError / ShardError as the other loaders; ValueError for a batch that is not whole sequences.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device, ramp_steps: int = 1800,
                 vocab_size: int | None = None):
        files = shard_files(pattern)
        self.shards = _Shards(files, vocab_size)
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.ramp_steps = ramp_steps
        self.rng = np.random.Generator(np.random.PCG64(paths_seed(files)))
        n = len(files)
        self.phase = [0] * n
        self.blocks = [0] * n
        self.next = [0] * n
        self.start = [0] * n
        self.stride = [1] * n
        self.ready = [False] * n
        self.steps = 0
        self.seq_len = 0

    @property
    def stream(self) -> CoprimeStrideLoader:
        """The object whose resume_state() resumes the loader (the sequential loader's is its TokenStream)."""
        return self

    _CURSORS = ("phase", "blocks", "next", "start", "stride", "ready")

    def resume_state(self) -> dict:
        """Generator state, per-shard cursors, step count and seq_len, for resume."""
        return {"rng": self.rng.bit_generator.state, "steps": self.steps, "seq_len": self.seq_len,
                **{k: torch.tensor(getattr(self, k), dtype=torch.int64) for k in self._CURSORS}}

    def restore(self, state: dict) -> None:
        """Resume from resume_state() (same shard files)."""
        self.rng.bit_generator.state = state["rng"]
        self.steps, self.seq_len = int(state["steps"]), int(state["seq_len"])
        for k in self._CURSORS:
            values = state[k].tolist()
            if len(values) != len(self.shards.files):
                raise ValueError(f"CoprimeStrideLoader state has {len(values)} shards, loader has "
                                 f"{len(self.shards.files)}")
            setattr(self, k, [bool(v) for v in values] if k == "ready" else values)

    def _coprime_stride(self, blocks: int) -> int:
        if blocks <= 1:
            return 1
        while True:
            s = int(self.rng.integers(1, blocks))
            if math.gcd(s, blocks) == 1:
                return s

    def _restart(self, si: int) -> None:
        phase = _random_phase(self.rng, self.shards.num_tokens[si], self.seq_len)
        blocks = (self.shards.num_tokens[si] - 1 - phase) // self.seq_len
        self.phase[si], self.blocks[si], self.next[si] = phase, blocks, 0
        self.start[si] = int(self.rng.integers(blocks)) if blocks > 1 else 0
        self.stride[si] = self._coprime_stride(blocks)
        self.ready[si] = True

    def _take(self, si: int, count: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        while len(out) < count:
            if not self.ready[si] or self.next[si] >= self.blocks[si]:
                self._restart(si)
            k = min(count - len(out), self.blocks[si] - self.next[si])
            for j in range(self.next[si], self.next[si] + k):
                block = (self.start[si] + j * self.stride[si]) % self.blocks[si]
                out.append((si, self.phase[si] + block * self.seq_len))
            self.next[si] += k
        return out

    def _global_windows(self, total: int) -> list[tuple[int, int]]:
        eligible = [si for si, n in enumerate(self.shards.num_tokens) if (n - 1) // self.seq_len > 0]
        progress = min(self.steps / float(self.ramp_steps), 1.0)
        left = np.array([float(max(self.blocks[si] - self.next[si], 1)) if self.ready[si]
                         else float((self.shards.num_tokens[si] - 1) // self.seq_len) for si in eligible])
        weights = np.power(left, 0.90 - 0.40 * progress)
        if not np.isfinite(weights.sum()) or weights.sum() <= 0.0:
            weights = np.ones(len(eligible))
        probs = weights / float(weights.sum())
        count = len(eligible)
        low = min(max(8, self.world_size), count, total)
        high = min(max(32, self.world_size * 8), count, total)
        mix = max(1, min(int(round(low + progress * (high - low))), count, total))
        picked = self.rng.choice(count, size=mix, replace=False, p=probs)
        chosen = np.array(eligible, dtype=np.int64)[picked]
        share = probs[picked].copy()
        share /= share.sum()
        counts = np.ones(mix, dtype=np.int64)
        if total > mix:
            counts += self.rng.multinomial(total - mix, share).astype(np.int64)
        order = self.rng.permutation(mix)
        buckets = []
        for si, n in zip(chosen[order].tolist(), counts[order].tolist(), strict=True):
            bucket = self._take(int(si), int(n))
            if len(bucket) > 1:
                bucket = [bucket[int(k)] for k in self.rng.permutation(len(bucket)).tolist()]
            if bucket:
                buckets.append(bucket)
        windows: list[tuple[int, int]] = []
        active = list(range(len(buckets)))
        while active:
            still = []
            for k in self.rng.permutation(len(active)).tolist():
                b = active[k]
                if buckets[b]:
                    windows.append(buckets[b].pop())
                if buckets[b]:
                    still.append(b)
            active = still
        return windows

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        """(x, y) int64 [local sequences, seq_len] on `device`: this rank's every world_size-th global window."""
        rows = _local_sequences(global_tokens, self.world_size, grad_accum_steps, seq_len)
        if self.seq_len and seq_len != self.seq_len:
            raise ValueError(f"CoprimeStrideLoader started with seq_len={self.seq_len}, asked for {seq_len}")
        self.seq_len = seq_len
        mine = self._global_windows(rows * self.world_size)[self.rank::self.world_size]
        x = torch.empty((rows, seq_len), dtype=torch.int64)
        y = torch.empty((rows, seq_len), dtype=torch.int64)
        for row, (si, pos) in enumerate(mine):
            window = self.shards.window(si, pos, seq_len + 1)
            x[row], y[row] = window[:-1], window[1:]
        self.steps += 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def train_loader(kind: str, pattern: str, rank: int, world_size: int, device: torch.device, seq_len: int,
                 bos_id: int = 1, vocab_size: int | None = None):
    """trainer.loader "shuffled" (ShuffledSequenceLoader) or "coprime" (CoprimeStrideLoader); see
    golf.data.loader.build_train_loader."""
    if kind == "shuffled":
        return ShuffledSequenceLoader(pattern, rank, world_size, device, seq_len, vocab_size=vocab_size)
    return CoprimeStrideLoader(pattern, rank, world_size, device, vocab_size=vocab_size)
