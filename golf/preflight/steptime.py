"""Step-time and eval-time model: FLOPs of a configuration, converted to 8xH100 milliseconds with a rate and a
fixed per-step overhead fitted (least squares) on the records' logged step times.

FLOPs per training token (forward + backward = 3 x forward, 2 FLOPs per multiply-add):
    6 x (matrix parameters applied per token, repeated blocks counted per application + the output head V x d)
  + 6 x layers x seq_len x model_dim            (causal attention scores and weighted values)
Forward-only evaluation costs a third of that per scored position; sliding windows score `stride` new tokens per
seq_len-long window, so they cost seq_len / stride times as much.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from golf.model import build_model
from golf.model.config import ModelConfig

H100_COUNT = 8


def flops_per_token(model_cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) of `model_cfg` at `seq_len` (see module docstring)."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    repeats = max(1, int(model_cfg.block_repeats))
    loops = max(0, int(model_cfg.num_loops))
    looped = max(0, int(model_cfg.loop_end) - int(model_cfg.loop_start) + 1) if loops else 0
    block_mats, other_mats = 0, 0
    per_block: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.ndim != 2 or "emb" in name.split(".")[0] or name.endswith("table.weight"):
            continue  # embedding lookups cost no matmul
        if name.startswith("blocks."):
            block = name.split(".")[1]
            per_block[block] = per_block.get(block, 0) + p.numel()
            block_mats += p.numel()
        else:
            other_mats += p.numel()
    mean_block = block_mats / max(1, len(per_block))
    applied = block_mats * repeats + mean_block * looped * loops + other_mats
    head = model_cfg.vocab_size * model_cfg.model_dim
    layers = len(per_block) * repeats + looped * loops
    return 6.0 * (applied + head) + 6.0 * layers * seq_len * model_cfg.model_dim


def eval_tflop(model_cfg: ModelConfig, tokens: int, seq_len: int, mode: str, stride: int = 64,
               gpus: int = H100_COUNT) -> float:
    """Forward TFLOPs per GPU of scoring `tokens` val tokens in a non-training eval mode (standard or sliding)."""
    factor = 1.0 if mode == "standard" else seq_len / stride
    return flops_per_token(model_cfg, seq_len) / 3.0 * tokens * factor / gpus / 1e12


@dataclass
class StepTimeModel:
    """ms/step on 8xH100 = ms_per_tflop x (step TFLOPs per GPU) + overhead_ms. Evaluation, fitted on the
    records' logged eval times where present: standard windows at `eval_ms_per_tflop` (forward FLOPs), sliding
    windows at `sliding_ms_per_kwindow` per thousand windows per GPU (the records' stride-64 evals take the same
    ~74 s at seq 1024 and 2048: their time follows the window count, not the FLOPs); else the training rate."""

    ms_per_tflop: float
    overhead_ms: float
    fitted_on: list[str]
    eval_ms_per_tflop: float | None = None
    sliding_ms_per_kwindow: float | None = None

    def step_ms(self, model_cfg: ModelConfig, batch_tokens: int, seq_len: int, gpus: int = H100_COUNT) -> float:
        tflop = flops_per_token(model_cfg, seq_len) * batch_tokens / gpus / 1e12
        return self.ms_per_tflop * tflop + self.overhead_ms

    def eval_ms(self, model_cfg: ModelConfig, tokens: int, seq_len: int, mode: str, stride: int = 64,
                ttt_epochs: int = 3, gpus: int = H100_COUNT) -> float:
        """Estimated eval time of `tokens` val tokens in eval mode `mode` (standard, sliding, sliding_docs,
        ttt, ttt_lora): standard / sliding forward FLOPs at their fitted rates; TTT adds `ttt_epochs` training
        passes over the tokens (ttt_lora: one) at the training rate."""
        kind = "standard" if mode == "standard" else "sliding"
        if kind == "sliding" and self.sliding_ms_per_kwindow is not None:
            ms = self.sliding_ms_per_kwindow * tokens / stride / gpus / 1000.0
        else:
            rate = self.eval_ms_per_tflop if kind == "standard" and self.eval_ms_per_tflop else self.ms_per_tflop
            ms = rate * eval_tflop(model_cfg, tokens, seq_len, kind, stride, gpus)
        if mode in ("ttt", "ttt_lora"):
            passes = ttt_epochs if mode == "ttt" else 1
            ms += self.ms_per_tflop * flops_per_token(model_cfg, seq_len) * tokens * passes / gpus / 1e12
        return ms


def fit_rate(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope through the origin of (TFLOPs, ms) points; None without points."""
    den = sum(x * x for x, _ in points)
    return sum(x * y for x, y in points) / den if den > 0 else None


def fit_step_time_model(points: list[tuple[str, float, float]]) -> StepTimeModel:
    """Least-squares fit of (name, TFLOPs per GPU per step, logged ms/step) points; one point fixes the rate
    only (overhead 0). Raises ValueError on no points."""
    if not points:
        raise ValueError("no step-time points to fit")
    xs = [x for _, x, _ in points]
    ys = [y for _, _, y in points]
    names = [n for n, _, _ in points]
    if len(points) == 1 or max(xs) - min(xs) < 1e-9:
        return StepTimeModel(sum(ys) / sum(xs), 0.0, names)
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    if intercept < 0:  # a negative fixed cost is not physical: rate through the origin instead
        return StepTimeModel(sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs), 0.0, names)
    return StepTimeModel(slope, intercept, names)
