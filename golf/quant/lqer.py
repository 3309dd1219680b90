"""LQER: low-rank correction of the quantization error, stored in the artifact and added back at load.

Source: 2026-04-27 record (PR #1855; LQER from PR #1797, ported from PR #1530). Options: ``quant.lqer``
(golf.quant.config.LQERConfig).

After the per-row quantization of a state dict, every quantized 2-D tensor W [rows, cols] has an error
E = W - codes * scale (fp32). The ``top_k`` tensors with the largest ||E||_F get a rank-r correction from the
SVD E = U S V^T: A = U[:, :r] * S[:r] ([rows, r]), B = V^T[:r] ([r, cols]). The factors are quantized:

* asym (record default): A -> int2 codes in [-2, 1], one fp16 scale sA = max|A| / 1.5 (0-dim);
  B flattened into groups of g elements -> int4 codes in [-8, 7], one fp16 scale max|B_group| / 7.5 per group.
* sym (asym off, or B.numel() not a multiple of g): A and B per-row symmetric ``factor_bits`` codes with fp16
  scales max|row| / (2^(bits-1) - 1).

Codes are q = clamp(round(x / stored_scale), lo, hi). At load the weight is W' = codes*scale + deq(A) @ deq(B)
(fp32), cast to the tensor's dtype.

Storage: the factors are two extra quantized entries of the QuantizedState, ``<name>.lqer_a`` and
``<name>.lqer_b`` (int8 containers; qmeta method "lqer_a"/"lqer_b"). B's asym codes are stored as
[numel / g, g] so their group scales are ordinary row scales; its true shape [r, cols] follows from A and W.
``fold_lqer`` turns a dequantized dict with those entries back into the model's state dict.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.config import LQER_METHODS, LQER_SUFFIXES, LQERConfig, is_lqer_entry

SUFFIX_A, SUFFIX_B = LQER_SUFFIXES
METHODS = LQER_METHODS


def error_factors(w: Tensor, codes: Tensor, scale: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Rank-r factors (A [rows, r], B [r, cols], fp32) of E = w - codes * scale (scale [rows])."""
    err = w.float() - codes.float() * scale.float().view(-1, 1)
    u, s, vh = torch.linalg.svd(err, full_matrices=False)
    r = min(rank, s.numel())
    return (u[:, :r] * s[:r]).contiguous(), vh[:r, :].contiguous()


def quantize_asym(a: Tensor, b: Tensor, group: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Asymmetric factor codes: (A int8 codes in [-2, 1], A fp16 0-dim scale, B int8 codes [numel/g, g] in
    [-8, 7], B fp16 scales [numel/g]). Raises ValueError when B.numel() is not a multiple of ``group``."""
    if b.numel() % group:
        raise ValueError(f"LQER B with {b.numel()} elements does not split into groups of {group}")
    sa = (a.abs().amax().clamp_min(1e-10) / 1.5).to(torch.float16)
    qa = torch.round(a / sa.float()).clamp(-2, 1).to(torch.int8)
    bg = b.reshape(-1, group)
    sb = (bg.abs().amax(dim=1).clamp_min(1e-10) / 7.5).to(torch.float16)
    qb = torch.round(bg / sb.float()[:, None]).clamp(-8, 7).to(torch.int8)
    return qa, sa, qb, sb


def quantize_sym(x: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Per-row symmetric codes of a factor: (int8 codes in [-qmax, qmax], fp16 row scales), qmax = 2^(bits-1)-1."""
    qmax = 2 ** (bits - 1) - 1
    s = (x.abs().amax(dim=1).clamp_min(1e-10) / qmax).to(torch.float16)
    return torch.round(x / s.float()[:, None]).clamp(-qmax, qmax).to(torch.int8), s


def select_top_k(errors: dict[str, float], k: int) -> list[str]:
    """Names of the k largest errors (ties keep the given order)."""
    return [n for n, _ in sorted(errors.items(), key=lambda kv: -kv[1])[:k]]


def add_lqer(qstate, state_dict: dict[str, Tensor], cfg: LQERConfig) -> dict[str, dict]:
    """Add LQER factor entries to ``qstate`` (a mixed-scheme golf.quant.int8.QuantizedState) in place.

    Candidates: quantized 2-D tensors with method rtn or gptq (not gate int8). Returns
    {name: {"error_norm": ||E||_F, "form": "asym" | "sym", "rank": r}} for the corrected tensors.
    """
    errors: dict[str, float] = {}
    for name, q in qstate.quantized.items():
        meta = qstate.qmeta.get(name, {})
        if q.ndim != 2 or meta.get("scheme") != "per_row" or meta.get("method") not in ("rtn", "gptq") \
                or meta.get("clip") == "gate_int8":
            continue
        w = state_dict[name].detach().to("cpu").float()
        errors[name] = float((w - q.float() * qstate.scales[name].float().view(-1, 1)).norm())
    report: dict[str, dict] = {}
    for name in select_top_k(errors, cfg.top_k):
        w = state_dict[name].detach().to("cpu").float()
        a, b = error_factors(w, qstate.quantized[name], qstate.scales[name], cfg.rank)
        group = qstate.groups.get(name)
        common = {"group": group, "packing": "int8"}
        if cfg.asym and b.numel() % cfg.asym_group == 0:
            qa, sa, qb, sb = quantize_asym(a, b, cfg.asym_group)
            metas = ({"scheme": "per_tensor", "bits": 2, "clip": "lqer_asym", "method": "lqer_a"},
                     {"scheme": "per_row", "axis": 0, "bits": 4, "clip": "lqer_asym", "method": "lqer_b"})
            form = "asym"
        else:
            (qa, sa), (qb, sb) = quantize_sym(a, cfg.factor_bits), quantize_sym(b, cfg.factor_bits)
            metas = tuple({"scheme": "per_row", "axis": 0, "bits": cfg.factor_bits, "clip": "lqer_sym", "method": m}
                          for m in METHODS)
            form = "sym"
        for suffix, codes, scale, meta in ((SUFFIX_A, qa, sa, metas[0]), (SUFFIX_B, qb, sb, metas[1])):
            key = name + suffix
            qstate.names.append(key)
            qstate.groups[key] = group
            qstate.quantized[key], qstate.scales[key] = codes.contiguous(), scale.contiguous()
            qstate.dtypes[key] = "float32"
            qstate.qmeta[key] = {**meta, **common}
        report[name] = {"error_norm": errors[name], "form": form, "rank": int(a.shape[1])}
    return report


def fold_lqer(out: dict[str, Tensor], qmeta: dict[str, dict]) -> dict[str, Tensor]:
    """Remove the factor entries from a dequantized dict and add A @ B to their base tensors.

    ``out`` holds dequantized tensors (factors in fp32, as shaped in the payload). Raises ValueError when a
    factor lacks its partner or its base tensor, or the product does not fit the base shape.
    """
    bases = sorted({n[: -len(SUFFIX_A)] for n in out if is_lqer_entry(n, qmeta.get(n))})
    for base in bases:
        a, b = out.pop(base + SUFFIX_A, None), out.pop(base + SUFFIX_B, None)
        if a is None or b is None or base not in out:
            raise ValueError(f"LQER factors of {base!r} are incomplete (need {base}{SUFFIX_A}, {base}{SUFFIX_B} "
                             "and the base tensor)")
        w = out[base]
        b = b.reshape(a.shape[1], -1)
        if (a.shape[0], b.shape[1]) != tuple(w.shape):
            raise ValueError(f"LQER factors of {base!r}: {tuple(a.shape)} @ {tuple(b.shape)} does not fit "
                             f"{tuple(w.shape)}")
        out[base] = (w.float() + a.float() @ b.float()).to(w.dtype)
    return out
