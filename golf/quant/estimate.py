"""Artifact-size estimate of a configuration before training it.

Trained weights are not available before training, so every matrix is filled with Gaussian noise,
quantized with the real scheme and compressed with the real codec. Only every `row_stride`-th row is kept (per-row quantization treats
rows independently), and the compressed bytes are scaled back up. The noise magnitude is calibrated on
the official baseline: its estimate is within 2% of the published 15,815,847-byte int8+zlib artifact
(records/track_10min_16mb/2026-03-17_NaiveBaseline; checked by tests/test_presets.py). For int6 row-max and
clip-search rules the estimate is an upper bound: trained matrices are heavier-tailed than Gaussian noise, so
their codes compress better (PR #374's 26,993,756-parameter int6+zstd model is 15.49 MB published, estimated
18.55 MB here).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from golf.model import build_model
from golf.model.config import ModelConfig
from golf.quant.artifact import write_artifact
from golf.quant.config import QuantConfig
from golf.quant.int8 import quantize_state_dict

# Gaussian noise with the magnitude of trained matrices: it matters only for the official int8 rule, whose
# 1/127 scale floor binds for rows with a clipped max below 1 (calibrated on the baseline artifact).
NOISE_STD = 0.3


def estimate_artifact_bytes(model_cfg: ModelConfig, quant: QuantConfig, row_stride: int = 8,
                            seed: int = 0) -> int:
    """Estimated artifact file bytes (no code bytes) of `model_cfg` exported with `quant`.

    GPTQ groups are estimated with round-to-nearest (same code distribution, no Hessians needed).
    """
    gen = torch.Generator().manual_seed(seed)
    model = build_model(model_cfg)  # real init for the small tensors (gains, scales, mixes)
    sampled, small = {}, {}
    for name, tensor in model.state_dict().items():
        if tensor.ndim == 2 and tensor.numel() > quant.keep_float_max_numel:
            rows = max(1, tensor.shape[0] // row_stride)
            sampled[name] = (torch.randn(rows, tensor.shape[1], generator=gen) * NOISE_STD).to(tensor.dtype)
        else:
            small[name] = tensor
    quant = dataclasses.replace(quant, groups=_rtn_groups(quant))
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        # Sampled matrices must stay above the passthrough threshold they were above at full size.
        sampled_quant = dataclasses.replace(quant, keep_float_max_numel=quant.keep_float_max_numel // row_stride)
        for part, scale, q in ((sampled, row_stride, sampled_quant), (small, 1, quant)):
            if part:
                info = write_artifact(Path(tmp) / "estimate.golf", quantize_state_dict(part, q),
                                      codec=_codec(quant), level=quant.level, byte_shuffle=quant.byte_shuffle)
                total += info.file_bytes * scale
    return int(total)


def _rtn_groups(quant: QuantConfig):
    groups = quant.groups
    for g in dataclasses.fields(groups):
        rule = getattr(groups, g.name)
        if getattr(rule, "method", "rtn") == "gptq":
            groups = dataclasses.replace(groups, **{g.name: dataclasses.replace(rule, method="rtn")})
    return groups


def _codec(quant: QuantConfig) -> str:
    return "brotli" if quant.codec in ("best", "pergroup") else quant.codec
