"""val_bpb byte accounting, exactly as openai/parameter-golf ``train_gpt.py``
(``build_sentencepiece_luts`` L180-204, ``eval_val`` L263-278).

Bytes are counted per scored target token from SentencePiece pieces (bytes of the tokenizer-normalized
text): ``bytes(t) = base_bytes[t] + [has_leading_space[t] and not is_boundary[prev]]``. The ``▁`` of a
piece counts as one space byte except right after a control token (BOS = start of document); control,
unknown and unused ids count 0 bytes; byte-fallback pieces ``<0xNN>`` count 1.
val_loss is in nats per token; val_bpb = val_loss / ln 2 * tokens / bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sentencepiece as spm
import torch
import torch.distributed as dist

from golf.data.tokenizer import byte_lut_arrays


@dataclass
class ByteLUTs:
    """Per-token-id byte tables, each of shape [table_size] with table_size = max(sp vocab, vocab_size)."""

    base_bytes: torch.Tensor
    """int16: UTF-8 bytes of the piece without its leading ``▁``; 1 for byte pieces; 0 for boundary ids."""
    has_leading_space: torch.Tensor
    """bool: the piece starts with ``▁`` (one space byte, counted unless the previous token is a boundary)."""
    is_boundary: torch.Tensor
    """bool: control / unknown / unused ids and padding ids beyond the SentencePiece vocab."""

    def to(self, device: torch.device | str) -> ByteLUTs:
        """Copy of the tables on ``device``."""
        return ByteLUTs(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))


def build_byte_luts(sp: spm.SentencePieceProcessor, vocab_size: int,
                    device: torch.device | str = "cpu") -> ByteLUTs:
    """Official ``build_sentencepiece_luts`` as a ``ByteLUTs`` on ``device``."""
    base_bytes, has_leading_space, is_boundary = byte_lut_arrays(sp, vocab_size)
    return ByteLUTs(
        base_bytes=torch.tensor(base_bytes, dtype=torch.int16, device=device),
        has_leading_space=torch.tensor(has_leading_space, dtype=torch.bool, device=device),
        is_boundary=torch.tensor(is_boundary, dtype=torch.bool, device=device),
    )


def token_bytes(prev_ids: torch.Tensor, target_ids: torch.Tensor, luts: ByteLUTs) -> torch.Tensor:
    """Bytes credited to each target token.

    Args:
        prev_ids: int64 ids of the token before each target (the model input x), any shape.
        target_ids: int64 target ids y, same shape.
        luts: tables on the ids' device.
    Returns:
        int16 tensor of target_ids' shape: ``base_bytes[t] + (has_leading_space[t] & ~is_boundary[p])``.
        Sum it in int64/float64 (``torch.sum`` of int16 already promotes to int64).
    """
    out = luts.base_bytes[target_ids].to(dtype=torch.int16)
    out += (luts.has_leading_space[target_ids] & ~luts.is_boundary[prev_ids]).to(dtype=torch.int16)
    return out


GRID_BITS = 20
"""Per-token losses are summed on a grid of 2**-20 nats (see `on_grid`)."""


def on_grid(nats: torch.Tensor) -> torch.Tensor:
    """Per-token losses (any float dtype) rounded to the nearest multiple of 2**-GRID_BITS nats, as float64.

    Every value is then an integer multiple of 2**-20, so float64 sums of them are exact while the total stays
    below 2**33 nats (8.6e9; the sp1024 val split sums to ~1.5e8): the sum no longer depends on the order of the
    additions, on the batch split or on how many ranks share the work, and multi-rank scores equal the
    single-process score bit for bit. The rounding moves each token's loss by at most 2**-21 nats (4.8e-7),
    round-half-even, so val_loss moves by far less than its printed precision.
    """
    scale = float(2 ** GRID_BITS)
    return torch.round(nats.double() * scale) / scale


def bits_per_byte(loss_sum_nats: float, num_tokens: int, num_bytes: int) -> tuple[float, float]:
    """(val_loss, val_bpb) from summed cross-entropy.

    Args:
        loss_sum_nats: sum over scored tokens of the cross-entropy in nats.
        num_tokens: scored tokens. num_bytes: bytes credited to them (``token_bytes`` sum).
    Returns:
        val_loss = loss_sum / num_tokens (nats/token); val_bpb = val_loss / ln 2 * num_tokens / num_bytes
        (same operation order as the official script).
    Raises:
        ValueError: num_tokens or num_bytes is not positive.
    """
    if num_tokens <= 0 or num_bytes <= 0:  # run-time: the data
        raise ValueError(f"bits_per_byte needs positive counts, got num_tokens={num_tokens} num_bytes={num_bytes}")
    val_loss = float(loss_sum_nats) / float(num_tokens)
    bits_per_token = val_loss / math.log(2.0)
    tokens_per_byte = float(num_tokens) / float(num_bytes)
    return val_loss, bits_per_token * tokens_per_byte


class BpbAccumulator:
    """Running fp64 sums (loss nats, tokens, bytes) for an evaluation, all-reducible across ranks.

    Usage: ``acc.add(mean_loss * y.numel(), x, y)`` per batch, then ``acc.all_reduce()`` and
    ``acc.result() -> (val_loss, val_bpb)``. Mirrors the accumulation in official ``eval_val``.
    """

    def __init__(self, luts: ByteLUTs, device: torch.device | str = "cpu"):
        self.luts = luts.to(device)
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.token_count = torch.zeros((), device=device, dtype=torch.float64)
        self.byte_count = torch.zeros((), device=device, dtype=torch.float64)

    def add(self, loss_sum_nats: torch.Tensor | float, prev_ids: torch.Tensor, target_ids: torch.Tensor,
            target_bytes: torch.Tensor | None = None) -> None:
        """Add a batch: summed CE in nats over ``target_ids`` (all of them scored) and the ids.

        ``target_bytes`` (same shape as target_ids, integer): bytes of each target taken from a byte sidecar
        (CaseOps, 2026-04-27 record) instead of the LUTs; the record sums the sidecar slice in fp64.
        """
        if isinstance(loss_sum_nats, torch.Tensor):
            loss_sum_nats = loss_sum_nats.detach().to(torch.float64)
        self.loss_sum += loss_sum_nats
        self.token_count += float(target_ids.numel())
        if target_bytes is not None:
            if target_bytes.shape != target_ids.shape:
                raise ValueError(f"target_bytes shape {tuple(target_bytes.shape)} != targets {tuple(target_ids.shape)}")
            self.byte_count += target_bytes.to(device=self.byte_count.device, dtype=torch.float64).sum()
            return
        self.byte_count += token_bytes(prev_ids.reshape(-1), target_ids.reshape(-1), self.luts).to(torch.float64).sum()

    def all_reduce(self) -> None:
        """Sum the counters over ranks (no-op without an initialized process group)."""
        if dist.is_available() and dist.is_initialized():
            for t in (self.loss_sum, self.token_count, self.byte_count):
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def result(self) -> tuple[float, float]:
        """(val_loss nats/token, val_bpb)."""
        return bits_per_byte(self.loss_sum.item(), int(self.token_count.item()), int(self.byte_count.item()))
