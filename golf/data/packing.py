"""The document-packing training loader of the 2026-04-27 record (PR #1855 ``DocumentPackingLoader``, from
PR #1530), for ``trainer.loader=doc_packing`` with ``model.attn_doc_mask=true``.

Shards are read in sorted order; a cursor starts at the first BOS of each shard. Per micro-batch every rank
takes the next ``local + 1`` tokens after the previous ranks' spans (``local = global_tokens // (world_size *
grad_accum_steps)``), so one step consumes ``world_size * (local + 1)`` contiguous tokens. When that span
does not fit in the rest of the shard, the rest is skipped and the next shard (wrapping to the first) begins.
Each rank's batch is ONE row: x = span[:-1], y = span[1:] of shape [1, local]; the model's document mask keeps
attention inside documents.
"""

from __future__ import annotations

import numpy as np
import torch

from golf.data.loader import ValidationTooShortError, _load, shard_files


class DocumentPackingLoader:
    """Per-rank packed rows of whole-shard token streams (record semantics, see module docstring).

    Raises NoShardsFoundError / ShardError from the shard reader, ValueError for bad rank or batch sizes,
    ValidationTooShortError when a shard is shorter than one step's span.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device, bos_id: int = 1,
                 vocab_size: int | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"DocumentPackingLoader: need 0 <= rank < world_size, got {rank}, {world_size}")
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.bos_id, self.vocab_size = bos_id, vocab_size
        self.files = shard_files(pattern)
        self.file_idx = 0
        self._open(0)
        self.stream = self  # the trainer's resume point reads loader.stream.resume_state()

    def _open(self, idx: int) -> None:
        self.file_idx = idx
        self.tokens = _load(self.files[idx], self.vocab_size)
        bos = np.flatnonzero(self.tokens.numpy() == self.bos_id)
        self.cursor = int(bos[0]) if bos.size else 0

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 [1, local] on ``device``; ``seq_len`` is unused (rows are whole spans)."""
        local = global_tokens // (self.world_size * grad_accum_steps)
        if local <= 0:
            raise ValueError(f"global_tokens={global_tokens} gives no tokens per rank and micro-step")
        span = local + 1
        need = span * self.world_size
        tries = 0
        while self.cursor + need > self.tokens.numel():
            tries += 1
            if tries > len(self.files):
                raise ValidationTooShortError(f"no training shard holds one step's {need} tokens")
            self._open((self.file_idx + 1) % len(self.files))
        start = self.cursor + self.rank * span
        buf = self.tokens[start: start + span].to(torch.int64)
        self.cursor += need
        return buf[None, :-1].to(self.device), buf[None, 1:].to(self.device)

    def resume_state(self) -> dict[str, int]:
        """Position: {"file_idx": shard index, "cursor": next token of that shard}."""
        return {"file_idx": self.file_idx, "cursor": self.cursor}

    def restore(self, state: dict[str, int]) -> None:
        """Resume from resume_state(); raises ValueError for a position outside the shards."""
        idx, cursor = int(state["file_idx"]), int(state["cursor"])
        if not 0 <= idx < len(self.files):
            raise ValueError(f"DocumentPackingLoader state file_idx={idx} outside [0, {len(self.files)})")
        self._open(idx)
        if not 0 <= cursor <= self.tokens.numel():
            raise ValueError(f"DocumentPackingLoader state cursor={cursor} outside [0, {self.tokens.numel()}]")
        self.cursor = cursor


def train_loader(kind: str, pattern: str, rank: int, world_size: int, device: torch.device, seq_len: int,
                 bos_id: int = 1, vocab_size: int | None = None) -> DocumentPackingLoader:
    """trainer.loader "doc_packing" (see golf.data.loader.build_train_loader)."""
    return DocumentPackingLoader(pattern, rank, world_size, device, bos_id, vocab_size)
