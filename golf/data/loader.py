"""Sequential token streams and the distributed batch loader of the official baseline.

Semantics match openai/parameter-golf ``train_gpt.py`` (``TokenStream``, ``DistributedTokenLoader``,
``load_validation_tokens``): shards are read in sorted-glob order and wrap around forever; there is no
shuffling and no worker process. Documents are concatenated (BOS-separated) and training sequences
cross document boundaries.
"""

from __future__ import annotations

import glob
import importlib
from pathlib import Path

import torch

from golf.data.shards import ShardError, read_header, read_shard
from golf.errors import GolfError


class NoShardsFoundError(GolfError, FileNotFoundError):
    """A shard glob pattern matched no file."""


class ValidationTooShortError(GolfError, ValueError):
    """The validation split has fewer than seq_len + 1 tokens."""


SIDECAR_INFIX = "_bytes_"
"""Byte-sidecar shards (``fineweb_val_bytes_*.bin``, CaseOps) share the ``fineweb_val_*.bin`` glob."""


def shard_files(pattern: str) -> list[Path]:
    """Return the files matching ``pattern`` in sorted order; byte sidecars (names holding ``_bytes_``) are
    left out unless the pattern itself names them (as the 2026-04-27 record's ``load_validation_tokens``).

    Raises:
        NoShardsFoundError: nothing matches (message names the pattern).
    """
    keep_sidecars = SIDECAR_INFIX in Path(pattern).name
    files = [Path(p) for p in sorted(glob.glob(pattern)) if keep_sidecars or SIDECAR_INFIX not in Path(p).name]
    if not files:
        raise NoShardsFoundError(f"No files found for pattern: {pattern}")
    return files


def _load(path: Path, vocab_size: int | None) -> torch.Tensor:
    return torch.from_numpy(read_shard(path, vocab_size))


class TokenStream:
    """Endless stream over the tokens of the shards matching ``pattern`` (sorted order, wraps around).

    Args:
        pattern: glob of shard files, e.g. ``data/datasets/fineweb10B_sp1024/fineweb_train_*.bin``.
        vocab_size: optional check that every token id is < vocab_size (ShardError otherwise).
            The official stream does not check; the check costs one max() per shard.
    Raises:
        NoShardsFoundError: the pattern matches nothing.
        ShardError: a shard is malformed or holds no tokens; every shard's header is checked here, at start-up,
            not when the stream reaches it (a 0-token shard would otherwise make ``take`` spin forever).
    """

    def __init__(self, pattern: str, vocab_size: int | None = None):
        self.pattern = pattern
        self.vocab_size = vocab_size
        self.files = shard_files(pattern)
        for f in self.files:
            if read_header(f) == 0:
                raise ShardError(f"shard {f}: holds 0 tokens (a training shard needs at least one)")
        self.file_idx = 0
        self.tokens = _load(self.files[0], vocab_size)
        self.pos = 0

    def _advance_file(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        self.tokens = _load(self.files[self.file_idx], vocab_size=self.vocab_size)
        self.pos = 0

    def take(self, n: int) -> torch.Tensor:
        """Return the next ``n`` tokens as a uint16 tensor of shape [n] (as the official stream does;
        callers cast to int64). Crosses shard boundaries and wraps from the last shard to the first."""
        if n < 0:
            raise ValueError(f"TokenStream.take: n must be >= 0, got {n}")
        chunks: list[torch.Tensor] = []
        remaining = n
        while remaining > 0:
            avail = self.tokens.numel() - self.pos
            if avail <= 0:
                self._advance_file()
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        if not chunks:
            return self.tokens[:0]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def resume_state(self) -> dict[str, int]:
        """Position in the stream: ``{"file_idx": shard index, "pos": token offset in that shard}``."""
        return {"file_idx": self.file_idx, "pos": self.pos}

    def restore(self, state: dict[str, int]) -> None:
        """Resume from ``resume_state()`` (same shard list assumed)."""
        file_idx, pos = int(state["file_idx"]), int(state["pos"])
        if not 0 <= file_idx < len(self.files):
            raise ValueError(f"TokenStream state file_idx={file_idx} outside [0, {len(self.files)}) for {self.pattern}")
        if file_idx != self.file_idx:
            self.file_idx = file_idx
            self.tokens = _load(self.files[file_idx], self.vocab_size)
        if not 0 <= pos <= self.tokens.numel():
            raise ValueError(f"TokenStream state pos={pos} outside [0, {self.tokens.numel()}] for {self.files[file_idx]}")
        self.pos = pos


class DistributedTokenLoader:
    """Per-rank (x, y) batches cut from one shared sequential stream (official baseline loader).

    Every rank reads the identical stream. Per call the stream yields one contiguous chunk of
    ``(local + 1) * world_size`` tokens, ``local = global_tokens // (world_size * grad_accum_steps)``;
    rank r keeps ``chunk[r*(local+1) : (r+1)*(local+1)]`` and shifts it by one into inputs/targets, so one
    token per rank per call is used only as a target. Consequence: W ranks with accumulation A see exactly
    the tokens of 1 rank with accumulation W*A (why the baseline uses grad_accum_steps = 8 // W).

    Args:
        pattern: train shard glob.
        rank, world_size: this process's rank and the number of ranks.
        device: where batches are placed (copied with non_blocking=True).
        vocab_size: optional token-id check passed to ``TokenStream``.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device,
                 vocab_size: int | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"DistributedTokenLoader: need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.stream = TokenStream(pattern, vocab_size=vocab_size)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Next micro-batch for this rank.

        Args:
            global_tokens: tokens per optimizer step summed over ranks and micro-steps.
            seq_len: tokens per sequence.
            grad_accum_steps: micro-steps per optimizer step.
        Returns:
            (x, y): int64 tensors of shape [local // seq_len, seq_len] on ``device``; y is x shifted by one.
        Raises:
            ValueError: local tokens is 0 or not a multiple of seq_len (the official script would fail in
                reshape with a less clear message).
        """
        local_tokens = global_tokens // (self.world_size * grad_accum_steps)
        if local_tokens <= 0 or local_tokens % seq_len:
            raise ValueError(
                f"global_tokens={global_tokens} // (world_size={self.world_size} * grad_accum_steps="
                f"{grad_accum_steps}) = {local_tokens} local tokens, not a positive multiple of seq_len={seq_len}")
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        start = self.rank * span
        local = chunk[start : start + span].to(dtype=torch.int64)
        x = local[:-1].reshape(-1, seq_len)
        y = local[1:].reshape(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def load_validation_tokens(pattern: str, seq_len: int, vocab_size: int | None = None) -> torch.Tensor:
    """Concatenate the validation shards (sorted order) and truncate for whole windows.

    Args:
        pattern: val shard glob (``fineweb_val_*.bin``).
        seq_len: evaluation window length in tokens.
        vocab_size: optional token-id check.
    Returns:
        uint16 tensor of shape [((N - 1) // seq_len) * seq_len + 1] (N = total val tokens), the official
        ``load_validation_tokens`` result; cast to int64 before use as indices.
    Raises:
        NoShardsFoundError: no file matches. ShardError: malformed shard.
        ValidationTooShortError: fewer than seq_len + 1 tokens.
    """
    files = shard_files(pattern)
    tokens = torch.cat([_load(f, vocab_size) for f in files]).contiguous()
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValidationTooShortError(
            f"Validation split {pattern} has {tokens.numel()} tokens, too short for seq_len={seq_len} "
            f"(need at least {seq_len + 1})")
    return tokens[: usable + 1]


def load_validation_byte_sidecar(pattern: str, num_tokens: int) -> torch.Tensor:
    """Per-token original-byte counts parallel to the validation tokens (CaseOps sidecar).

    Args:
        pattern: sidecar glob (``fineweb_val_bytes_*.bin``; same shard format, uint16 counts).
        num_tokens: length of the validation token tensor it must cover (``load_validation_tokens`` result).
    Returns:
        int32 tensor of shape [num_tokens]: entry i = original UTF-8 bytes token i stands for (BOS = 0).
    Raises:
        NoShardsFoundError: no file matches. ShardError: malformed shard.
        ValidationTooShortError: the sidecar holds fewer than num_tokens entries.
    Source: 2026-04-27 record ``load_validation_byte_sidecar``.
    """
    counts = torch.cat([_load(f, None) for f in shard_files(pattern)])
    if counts.numel() < num_tokens:
        raise ValidationTooShortError(f"byte sidecar {pattern} has {counts.numel()} entries, fewer than the "
                                      f"{num_tokens} validation tokens")
    return counts[:num_tokens].to(torch.int32)


LOADER_MODULES = {"sequential": "golf.data.loader", "doc_packing": "golf.data.packing",
                  "shuffled": "golf.data.samplers", "coprime": "golf.data.samplers"}
"""trainer.loader -> the module with its `train_loader` (imported on first use: a submission ships only its own)."""


def train_loader(kind: str, pattern: str, rank: int, world_size: int, device: torch.device, seq_len: int,
                 bos_id: int = 1, vocab_size: int | None = None) -> DistributedTokenLoader:
    """trainer.loader "sequential": the official DistributedTokenLoader (see build_train_loader)."""
    return DistributedTokenLoader(pattern, rank, world_size, device, vocab_size=vocab_size)


def build_train_loader(kind: str, pattern: str, rank: int, world_size: int, device: torch.device, seq_len: int,
                       bos_id: int = 1, vocab_size: int | None = None):
    """The train loader `trainer.loader` names: sequential (official DistributedTokenLoader), doc_packing
    (golf.data.packing.DocumentPackingLoader), shuffled / coprime (golf.data.samplers). ``vocab_size`` checks
    every loader's token ids (ShardError, one line, when a shard is first read). All have
    next_batch(tokens, seq_len, accum) and a `stream` with resume_state()/restore() for resume.
    Raises KeyError for an unknown kind (the config validates it first)."""
    loader = importlib.import_module(LOADER_MODULES[kind]).train_loader  # one expression: golf.record.registries
    return loader(kind, pattern, rank, world_size, device, seq_len, bos_id, vocab_size)
