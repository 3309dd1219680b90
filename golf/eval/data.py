"""Validation data for every eval mode: the val tokens, the tokenizer's byte tables and its BOS id."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from golf.data.config import DataConfig
from golf.data.loader import load_validation_byte_sidecar, load_validation_tokens
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import ByteLUTs, build_byte_luts


@dataclass
class ValData:
    """What an eval mode scores: `tokens` (1-D int, N + 1 ids = N targets) with their byte tables."""

    tokens: torch.Tensor
    luts: ByteLUTs
    seq_len: int
    """Window length in tokens (eval.seq_len, default the run's train_seq_len)."""
    bos_id: int = -1
    """Tokenizer BOS id (start of every document), -1 when the tokenizer has none."""
    byte_sidecar: torch.Tensor | None = None
    """int32 [len(tokens)]: original bytes per token (CaseOps data, data.text_transform=caseops_v1); None = count
    bytes with the LUTs."""


def load_val_data(data: DataConfig, vocab_size: int, seq_len: int, max_tokens: int = 0) -> ValData:
    """Val tokens truncated to whole `seq_len` windows (optionally to the first `max_tokens`) and the byte LUTs.

    Raises TokenizerError / VocabMismatchError (tokenizer), GolfError (missing or bad val shards).
    """
    sp = load_tokenizer(data.resolve_tokenizer_path(), vocab_size)
    tokens = load_validation_tokens(data.val_glob(), seq_len, vocab_size)
    if max_tokens:
        tokens = tokens[: (min(max_tokens, tokens.numel() - 1) // seq_len) * seq_len + 1]
    sidecar = None
    if data.uses_byte_sidecar:
        sidecar = load_validation_byte_sidecar(data.val_bytes_glob(), tokens.numel())
    return ValData(tokens, build_byte_luts(sp, vocab_size), seq_len, int(sp.bos_id()), sidecar)


def val_data_for(run_cfg, eval_cfg=None) -> ValData:
    """The validation data a run (a TrainRunConfig) is scored on with `eval_cfg` (default: the run's own eval
    section): windows of eval.seq_len tokens, else the run's train_seq_len; at most eval.max_tokens targets.
    Raises what load_val_data raises."""
    e = run_cfg.eval if eval_cfg is None else eval_cfg
    return load_val_data(run_cfg.data, run_cfg.model.vocab_size, e.seq_len or run_cfg.trainer.train_seq_len,
                         e.max_tokens)
