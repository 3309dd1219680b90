"""The one-screen summary every entry point (train.py, export.py, eval.py) ends with.

    == golf train: finished ==================================================
    val_loss      2.07270 nats/token
    val_bpb       1.22440 (standard, all 63,779,840 val tokens)
    artifact      15,815,847 bytes (model.int8+zlib.golf)
    code          119,249 bytes
    total         15,935,096 / 16,000,000 bytes: fits (headroom 64,904)
    time          train 600.0 s, eval 1.4 s
    run dir       outputs/20260317_120000_baseline
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WIDTH = 78


@dataclass
class RunSummary:
    """Numbers of one finished command; None = not available for this command (shown as a hint)."""

    command: str
    run_dir: str | Path
    val_loss: float | None = None
    val_bpb: float | None = None
    val_tokens: int | None = None
    max_tokens: int = 0
    """eval.max_tokens the score used (0 = the whole val split)."""
    eval_mode: str = "standard"
    score_of: str = ""
    """What was scored: "checkpoint (pre-quantization)", "artifact (round trip)", ..."""
    artifact_bytes: int | None = None
    artifact_path: str | Path | None = None
    code_bytes: int | None = None
    target_bytes: int = 16_000_000
    train_s: float | None = None
    eval_s: float | None = None
    notes: list[str] = field(default_factory=list)


def format_summary(s: RunSummary) -> str:
    """The summary block (≤ 12 lines, ≤ 78 columns except long paths)."""
    head = f"== golf {s.command}: finished "
    lines = [head + "=" * max(3, WIDTH - len(head))]
    if s.val_loss is not None:
        lines.append(f"{'val_loss':<13} {s.val_loss:.5f} nats/token")
    if s.val_bpb is not None:
        tokens = (f"the first {s.val_tokens:,} val tokens (eval.max_tokens)" if s.max_tokens
                  else f"all {s.val_tokens:,} val tokens" if s.val_tokens else "the val tokens")
        what = f"{s.score_of}; " if s.score_of else ""
        lines.append(f"{'val_bpb':<13} {s.val_bpb:.5f}  {what}{s.eval_mode} eval on {tokens}")
    if s.artifact_bytes is not None:
        name = f" ({Path(s.artifact_path).name})" if s.artifact_path else ""
        lines.append(f"{'artifact':<13} {s.artifact_bytes:,} bytes{name}")
    else:
        lines.append(f"{'artifact':<13} not exported yet: python export.py run_dir={s.run_dir}")
    if s.code_bytes is not None:
        lines.append(f"{'code':<13} {s.code_bytes:,} bytes")
    if s.artifact_bytes is not None and s.code_bytes is not None:
        total = s.artifact_bytes + s.code_bytes
        verdict = (f"fits (headroom {s.target_bytes - total:,})" if total <= s.target_bytes
                   else f"OVER by {total - s.target_bytes:,}")
        lines.append(f"{'total':<13} {total:,} / {s.target_bytes:,} bytes: {verdict}")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in (("train", s.train_s), ("eval", s.eval_s)) if v is not None)
    if times:
        lines.append(f"{'time':<13} {times}")
    lines.append(f"{'run dir':<13} {s.run_dir}")
    lines += [f"{'note':<13} {n}" for n in s.notes]
    return "\n".join(lines)
