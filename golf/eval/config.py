"""Evaluation schema (plain dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

EVAL_MODES = ("standard",)


@dataclass
class EvalConfig:
    """How val_bpb is computed. `standard` = non-overlapping windows of seq_len, as official `eval_val`."""

    mode: str = "standard"
    """Evaluation mode; allowed: standard."""
    seq_len: int = 0
    """Window length in tokens; 0 = the training sequence length."""
    batch_tokens: int = 524_288
    """Tokens per evaluation step summed over ranks (official VAL_BATCH_SIZE)."""
    max_tokens: int = 0
    """Evaluate only the first N validation tokens (0 = all); for quick checks, never for reported scores."""
    time_budget_s: float = 600.0
    """Warn when an evaluation takes longer than this many seconds (the challenge's eval limit)."""

    def __post_init__(self) -> None:
        if self.mode not in EVAL_MODES:
            raise ValueError(f"eval.mode={self.mode!r}; allowed: {', '.join(EVAL_MODES)}")
        if self.seq_len < 0 or self.batch_tokens < 1 or self.max_tokens < 0:
            raise ValueError("eval.seq_len and eval.max_tokens must be >= 0 and eval.batch_tokens >= 1")
