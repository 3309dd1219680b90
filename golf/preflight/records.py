"""The leaderboard records golf can express, and what their logs say (bytes, step times, eval times).

Each `RecordConfig` is a golf preset plus the overrides that make its export and optimizer match the record's
script exactly where it matters for the estimate (quantizer scale floors, fp16 passthrough tensors, learning
rate and weight decay). Add a record by appending to `RECORDS`; the table code iterates over the list.
Log facts come from the record's own `train*.log` files (read-only oracles in ../shared/reference/records/).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

RECORDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "records"
OFFICIAL_BASELINE_MS = 43.5  # NaiveBaseline: 13,780 steps in 600 s on 8xH100 (step_avg 43.54 ms)

_INT6_FLOOR = ["quant.groups.attn.scale_floor=qmax", "quant.groups.mlp.scale_floor=qmax"]


@dataclass(frozen=True)
class RecordConfig:
    """One record folder expressed as a golf preset + overrides."""

    folder: str
    preset: str
    overrides: list[str] = field(default_factory=list)
    note: str = ""


RECORDS: list[RecordConfig] = [
    RecordConfig("2026-03-17_NaiveBaseline", "baseline", [], "official int8 + zlib-9"),
    RecordConfig(
        "2026-03-19_smeargate_orthoinit_muonwd", "smeargate_pr65",
        # train_gpt_v5.py: tok_emb and bigram_hash stored fp16 (FP16_PASSTHROUGH_PATTERNS), int6 scale floor 1/31
        ["quant.groups.embed.passthrough=float16", "quant.groups.other.passthrough=float16", *_INT6_FLOOR],
        "int6 rowmax + zstd-22; fp16 tok_emb and bigram table; scale floor 1/31"),
    RecordConfig(
        "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233", "pr374_gptq_lite",
        # mixed_quantize_int6(..., {"mlp", "attn"}): int6 clip search for attn/mlp (floor 1/31), every other
        # large tensor (tok_emb, bigram, value embeddings) through the official int8 rule; MATRIX_LR=0.025
        ["quant.groups.embed.clip=percentile", "quant.groups.embed.scale_floor=qmax", "quant.groups.other.bits=8",
         "quant.groups.other.clip=percentile", "quant.groups.other.scale_floor=qmax", "optim.matrix_lr=0.025",
         "optim.scalar_lr=0.025", "optim.tied_embed_lr=0.035", *_INT6_FLOOR],
        "GPTQ-lite int6 + zstd-22; int8 embeddings; scale floor 1/31; lr 0.025"),
]

_SERIALIZED = re.compile(r"^Serialized model (\S+): (\d+) bytes")
_STEP_AVG = re.compile(r"^step:(\d+)/\d+ .*step_avg:([0-9.]+)ms")
_EVAL = re.compile(r"^(final_\S+).*eval_time:(\d+)ms")


@dataclass
class RecordLog:
    """Facts parsed from one record folder's train logs (mean over seeds)."""

    folder: str
    seeds: int
    model_bytes: float | None
    """Serialized (quantized + compressed) model bytes, the line 'Serialized model <scheme>: N bytes'."""
    step_ms: float | None
    """step_avg of the last training step line (ms, 8xH100)."""
    eval_ms: dict[str, float]
    """eval_time of each final_* evaluation line (ms)."""


def parse_log_text(text: str) -> tuple[int | None, float | None, dict[str, float]]:
    """(model bytes, last step_avg ms, {final eval name: ms}) from one official-style train log."""
    model_bytes, step_ms, evals = None, None, {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SERIALIZED.match(line):
            model_bytes = int(m.group(2))
        elif (m := _STEP_AVG.match(line)) and int(m.group(1)) > 0:
            step_ms = float(m.group(2))
        elif m := _EVAL.match(line):
            evals[m.group(1)] = float(m.group(2))
    return model_bytes, step_ms, evals


def read_record_log(folder: str, records_dir: Path = RECORDS_DIR) -> RecordLog:
    """Parse every train*.log of a record folder. Raises FileNotFoundError when the folder has no log."""
    logs = sorted((records_dir / folder).glob("train*.log"))
    if not logs:
        raise FileNotFoundError(f"{records_dir / folder}: no train*.log")
    parsed = [parse_log_text(p.read_text(errors="replace")) for p in logs]
    sizes = [b for b, _, _ in parsed if b is not None]
    steps = [s for _, s, _ in parsed if s is not None]
    evals: dict[str, list[float]] = {}
    for _, _, e in parsed:
        for k, v in e.items():
            evals.setdefault(k, []).append(v)
    return RecordLog(folder, len(logs), statistics.mean(sizes) if sizes else None,
                     statistics.mean(steps) if steps else None,
                     {k: statistics.mean(v) for k, v in evals.items()})


def all_step_times(records_dir: Path = RECORDS_DIR) -> dict[str, float]:
    """Logged 8xH100 ms/step of every record folder (expressible or not), for context in reports."""
    out = {}
    for d in sorted(p for p in records_dir.iterdir() if p.is_dir()) if records_dir.is_dir() else []:
        try:
            log = read_record_log(d.name, records_dir)
        except FileNotFoundError:
            continue
        if log.step_ms:
            out[d.name] = log.step_ms
    return out
