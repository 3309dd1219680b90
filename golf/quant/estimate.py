"""Artifact-size estimate of a configuration before training it.

Trained weights are not available before training, so every large matrix is filled with Gaussian noise of the
magnitude trained matrices reach, quantized with the real scheme (GPTQ groups as round to nearest: same code
distribution, no Hessians) and compressed with the real codec. Only every `row_stride`-th row is kept (per-row
quantization treats rows independently) and each group's compressed bytes are scaled back up.

What sets the bytes of a trained matrix is its magnitude against the quantizer's scale floor: every export the
records use floors the per-row scale at 1/qmax (official int8: 1/127; the int6 records: 1/31), and a trained
row's clipped max stays below 1, so the codes are round(qmax * w) and their entropy grows with the weights' std
sigma (one bit per doubling). The model of sigma, `trained_weight_std`:

- without weight decay, sigma = NOISE_STD = 0.3 (calibrated on the official baseline's 15,815,847-byte
  int8+zlib artifact, records/2026-03-17_NaiveBaseline);
- with decoupled Muon weight decay wd at matrix learning rate lr, weights settle where decay balances the
  (momentum-correlated) updates: sigma^2 proportional to lr / wd, so sigma = WD_STD_COEF * sqrt(lr / wd), capped
  at NOISE_STD. WD_STD_COEF (one constant for every configuration) is fitted on the two weight-decayed records
  golf expresses (03-19 PR #65: lr 0.02, wd 0.01; 03-22: lr 0.025, wd 0.04).

Heavier tails than Gaussian at the same sigma were tried (Student-t, 2.5 to 6 degrees of freedom): they lower
every estimate by 8 to 27 % and leave the records' spread unexplained, while the lr/wd magnitude model puts
every record golf expresses within 3 % of its logged bytes (tests/test_preflight.py, README table).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from golf.model import build_model
from golf.model.config import ModelConfig
from golf.quant.artifact import write_artifact
from golf.quant.config import QuantConfig
from golf.quant.groups import tensor_group
from golf.quant.int8 import quantize_state_dict

NOISE_STD = 0.3
"""Std of trained matrix weights without weight decay (calibrated on the official baseline artifact)."""
WD_STD_COEF = 0.21
"""sigma = WD_STD_COEF * sqrt(matrix_lr / muon_wd) with decoupled weight decay (fitted on records 03-19, 03-22)."""


def trained_weight_std(matrix_lr: float, muon_wd: float) -> float:
    """Modelled std of trained matrix weights for Muon at `matrix_lr` with decoupled weight decay `muon_wd`."""
    if muon_wd <= 0:
        return NOISE_STD
    return min(NOISE_STD, WD_STD_COEF * math.sqrt(matrix_lr / muon_wd))


@dataclass
class GroupEstimate:
    """Estimated bytes of one tensor group (compressed alone with the artifact's codec, scaled to full size)."""

    group: str
    tensors: int
    params: int
    bytes: int


@dataclass
class ArtifactEstimate:
    """Estimated artifact file bytes (no code bytes): header + manifest + the groups' compressed payloads."""

    total_bytes: int
    weight_std: float
    groups: list[GroupEstimate] = field(default_factory=list)


def estimate_artifact(model_cfg: ModelConfig, quant: QuantConfig, weight_std: float = NOISE_STD,
                      row_stride: int = 8, seed: int = 0) -> ArtifactEstimate:
    """Estimate the artifact of `model_cfg` exported with `quant` (see module docstring).

    Args:
        weight_std: std of the noise standing in for trained matrices (`trained_weight_std`).
        row_stride: keep every row_stride-th row of large matrices (1 = the whole model; slower).
    Returns ArtifactEstimate with one GroupEstimate per group present (embed/attn/mlp/other/small).
    """
    gen = torch.Generator().manual_seed(seed)
    model = build_model(model_cfg)  # real init for the small tensors (gains, scales, mixes)
    quant = dataclasses.replace(quant, groups=_rtn_groups(quant))
    parts: dict[str, dict[str, torch.Tensor]] = {}
    full_params: dict[str, int] = {}
    kept_params: dict[str, int] = {}
    for name, tensor in model.state_dict().items():
        group = tensor_group(name, tensor, quant) if quant.scheme != "none" else "small"
        full_params[group] = full_params.get(group, 0) + tensor.numel()
        if group != "small" and tensor.ndim == 2:
            rows = max(1, tensor.shape[0] // row_stride)
            tensor = (torch.randn(rows, tensor.shape[1], generator=gen) * weight_std).to(tensor.dtype)
        parts.setdefault(group, {})[name] = tensor
        kept_params[group] = kept_params.get(group, 0) + tensor.numel()
    # Sampled matrices must stay above the passthrough threshold they were above at full size.
    sampled_quant = dataclasses.replace(quant, keep_float_max_numel=quant.keep_float_max_numel // row_stride)
    groups, total, header_and_manifest = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for group, part in parts.items():
            q = quant if group == "small" else sampled_quant
            info = write_artifact(Path(tmp) / "estimate.golf", quantize_state_dict(part, q), codec=_codec(quant),
                                  level=quant.level, byte_shuffle=quant.byte_shuffle)
            scale = full_params[group] / max(1, kept_params[group])
            payload = int(round(info.compressed_bytes * scale))
            groups.append(GroupEstimate(group, len(part), full_params[group], payload))
            header_and_manifest += info.file_bytes - info.compressed_bytes
            total += payload
    return ArtifactEstimate(total + header_and_manifest, weight_std, groups)


def estimate_artifact_bytes(model_cfg: ModelConfig, quant: QuantConfig, row_stride: int = 8, seed: int = 0,
                            weight_std: float = NOISE_STD) -> int:
    """Estimated artifact file bytes (no code bytes) of `model_cfg` exported with `quant`."""
    return estimate_artifact(model_cfg, quant, weight_std, row_stride, seed).total_bytes


def _rtn_groups(quant: QuantConfig):
    groups = quant.groups
    for g in dataclasses.fields(groups):
        rule = getattr(groups, g.name)
        if getattr(rule, "method", "rtn") == "gptq":
            groups = dataclasses.replace(groups, **{g.name: dataclasses.replace(rule, method="rtn")})
    return groups


def _codec(quant: QuantConfig) -> str:
    return "brotli" if quant.codec in ("best", "pergroup") else quant.codec
