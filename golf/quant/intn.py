"""Per-row symmetric intN (N = 2..8) and the "mixed" scheme: one rule per tensor group.

Rows of a 2-D tensor get their own scale ``s = max(clip / qmax, floor)`` stored in ``quant.scale_dtype``
(fp16 default) and codes ``q = clamp(round(w / s), -qmax, qmax)``, qmax = 2^(N-1) - 1; dequantization is
``q * s``. The clip comes from golf.quant.clip. Two rounding conventions, both from the records:

* clip=percentile follows the official int8 exactly (train_gpt.py L321-334): w is clamped to +-clip and divided
  by the fp32 scale, and only then the scale is stored in fp16. With bits=8 and the default percentile this
  is bit-identical to scheme int8 (tested).
* rowmax / search / std divide by the STORED (fp16-rounded) scale, as GPTQ-lite (record 03-22) and SDClip
  (04-05) do, so the chosen clip is judged on the exact reconstruction.

Non-2-D float tensors get one fp32 scale (the official per-tensor rule: ``clip/qmax``, 1.0 when clip is 0).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from golf.quant.clip import clip_candidates, scale_floor
from golf.quant.config import GroupQuant, QuantConfig, is_lqer_entry
from golf.quant.groups import tensor_group
from golf.quant.int8 import (
    DTYPES,
    QuantizationError,
    QuantizedState,
    dtype_name,
    keep_float_tensor,
    register_scheme,
    tensor_nbytes,
)
from golf.quant.lqer import add_lqer
from golf.quant.packing import packed_nbytes, qmax_for

log = logging.getLogger("golf.quant")

GATE_INT8_RULE = GroupQuant(bits=8, clip="rowmax", scale_floor="none")
"""quant.gate_int8: per-row int8, scale = max|w_row| / 127 in fp16 (2026-04-27 record `_quantize_gate_int8_row`)."""


def is_quant_gate(name: str, t: Tensor, cfg: QuantConfig) -> bool:
    """quant.gate_int8 applies: a 2-D float attention-gate weight (name ends in a gate pattern) of 32..8192
    elements (the record's bounds: dense (8, 512) and sparse (8, 12) gates)."""
    return (cfg.gate_int8 and t.is_floating_point() and t.ndim == 2 and 32 <= t.numel() <= 8192
            and any(name.endswith(p) for p in cfg.gate_patterns))


def quantize_rows_tensors(w: Tensor, rule: GroupQuant, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Core of per-row intN, graph-safe (no .item(), usable under torch.compile).

    w: [rows, cols] float (cols >= 1). Returns (codes int8 [rows, cols], scale [rows] in scale_dtype, index of
    the chosen clip candidate: 0-dim for one candidate / search per matrix, [rows] for search per row).
    """
    w = w.float()
    qmax = qmax_for(rule.bits)
    floor = scale_floor(rule, qmax)
    cands = [c for _, c in clip_candidates(w, rule)]
    if rule.clip == "percentile":
        clip = cands[0][:, None]
        scale32 = (cands[0] / float(qmax)).clamp_min(floor)
        q = torch.clamp(torch.round(torch.maximum(torch.minimum(w, clip), -clip) / scale32[:, None]), -qmax, qmax)
        return q.to(torch.int8), scale32.to(scale_dtype), torch.zeros((), dtype=torch.long, device=w.device)
    qs, ss, errs = [], [], []
    for clip in cands:
        if rule.clip_search_scale == "fp32":  # seed 001: clamp to the clip, quantize and judge with fp32 scale
            s32 = (clip / float(qmax)).clamp_min(floor)
            sf = s32[:, None]
            c = clip[:, None]
            q = torch.clamp(torch.round(torch.maximum(torch.minimum(w, c), -c) / sf), -qmax, qmax)
            s = s32.to(scale_dtype)
        else:
            s = (clip / float(qmax)).clamp_min(floor).to(scale_dtype)
            sf = s.float()[:, None]
            q = torch.clamp(torch.round(w / sf), -qmax, qmax)
        qs.append(q)
        ss.append(s)
        errs.append((w - q * sf).square().sum(dim=1))
    if len(cands) == 1:
        return qs[0].to(torch.int8), ss[0], torch.zeros((), dtype=torch.long, device=w.device)
    q_all, s_all, err = torch.stack(qs), torch.stack(ss), torch.stack(errs)  # [k, rows, cols], [k, rows] x2
    # index_select / gather keep shapes static under torch.compile (a 0-dim tensor index would not).
    if rule.clip_search == "matrix":
        idx = torch.argmin(err.sum(dim=1))  # first minimum: row max wins ties
        pick = idx.reshape(1)
        return (q_all.index_select(0, pick)[0].to(torch.int8), s_all.index_select(0, pick)[0], idx)
    idx = torch.argmin(err, dim=0)  # [rows]
    q = q_all.gather(0, idx[None, :, None].expand(1, *w.shape))[0]
    return q.to(torch.int8), s_all.gather(0, idx[None, :])[0], idx


def dequantize_rows(codes: Tensor, scale: Tensor) -> Tensor:
    """``codes * scale`` per row, fp32 [rows, cols]."""
    return codes.float() * scale.float()[:, None]


def fake_quantize_rows(w: Tensor, rule: GroupQuant, scale_dtype: torch.dtype) -> Tensor:
    """dequant(quant(w)) for a 2-D weight, fp32, exactly what export + load would give (QAT forward)."""
    q, s, _ = quantize_rows_tensors(w, rule, scale_dtype)
    return dequantize_rows(q, s)


def clip_label(w: Tensor, rule: GroupQuant, idx: Tensor) -> str:
    """Manifest description of the clip used: "p99.99984", "rowmax", "std12.85", or for search per row
    "row:" + counts per candidate (e.g. "row:rowmax=3,p99.9=125")."""
    labels = [label for label, _ in clip_candidates(w[:1].float(), rule)] if w.numel() else ["empty"]
    if idx.ndim == 0:
        return labels[int(idx)]
    counts = torch.bincount(idx.reshape(-1).cpu(), minlength=len(labels)).tolist()
    return "row:" + ",".join(f"{lab}={n}" for lab, n in zip(labels, counts, strict=True) if n)


def quantize_per_tensor(name: str, t: Tensor, rule: GroupQuant) -> tuple[Tensor, Tensor, str]:
    """Official per-tensor rule generalized to N bits: 0-dim fp32 scale ``clip/qmax`` (1.0 when clip == 0)."""
    qmax = qmax_for(rule.bits)
    flat = t.float().reshape(1, -1)
    best = None
    for label, clip in _candidates(name, flat, rule):
        c = float(clip[0])
        scale = torch.tensor(c / qmax if c > 0 else 1.0, dtype=torch.float32)
        q = torch.clamp(torch.round(torch.clamp(flat, -c, c) / scale), -qmax, qmax)
        err = float((flat - q * scale).square().sum())
        if best is None or err < best[0]:
            best = (err, q.reshape(t.shape).to(torch.int8).contiguous(), scale, label)
    return best[1], best[2], best[3]


def _candidates(name: str, w: Tensor, rule: GroupQuant) -> list[tuple[str, Tensor]]:
    try:
        return clip_candidates(w, rule)
    except RuntimeError as exc:  # torch.quantile refuses inputs over 2^24 elements
        raise QuantizationError(f"tensor {name!r} shape {tuple(w.shape)}: clip quantile failed: {exc}") from exc


def quantize_matrix(name: str, t: Tensor, rule: GroupQuant, scale_dtype: torch.dtype,
                    hessian: Tensor | None = None, gptq_cfg=None) -> tuple[Tensor, Tensor, str, str]:
    """Per-row intN of a 2-D tensor -> (codes int8, scale [rows], clip label, method "rtn" | "gptq").

    With ``hessian`` ([cols, cols]) and ``gptq_cfg`` the codes come from full-Hessian GPTQ using the scales the
    clip rule picked (records 03-25/04-05); otherwise round to nearest.
    """
    w = t.float()
    try:
        q, s, idx = quantize_rows_tensors(w, rule, scale_dtype)
    except RuntimeError as exc:
        raise QuantizationError(f"tensor {name!r} shape {tuple(w.shape)}: clip quantile failed: {exc}") from exc
    label = clip_label(w, rule, idx)
    if hessian is None:
        return q.contiguous(), s.contiguous(), label, "rtn"
    from golf.quant.gptq import gptq_quantize  # lazy: only GPTQ groups ship it

    qmax = qmax_for(rule.bits)
    if rule.clip == "search" and gptq_cfg is not None and gptq_cfg.select_clip_by == "gptq":
        return _gptq_over_candidates(name, w, rule, scale_dtype, hessian, gptq_cfg, qmax)
    q = gptq_quantize(name, w, hessian, s.float(), qmax, gptq_cfg)
    return q.contiguous(), s.contiguous(), label, "gptq"


def _gptq_over_candidates(name: str, w: Tensor, rule: GroupQuant, scale_dtype: torch.dtype, hessian: Tensor,
                          gptq_cfg, qmax: int) -> tuple[Tensor, Tensor, str, str]:
    """Record 03-29: GPTQ with each clip candidate's stored scales (percentiles in the rule's order, then the
    row max); the first with the least mean squared reconstruction error wins."""
    from golf.quant.gptq import gptq_quantize

    floor = scale_floor(rule, qmax)
    cands = clip_candidates(w, rule)
    best = None
    for label, clip in [*cands[1:], cands[0]]:  # clip_candidates lists the row max first; the record tries it last
        s = (clip / float(qmax)).clamp_min(floor).to(scale_dtype)
        q = gptq_quantize(name, w, hessian, s.float(), qmax, gptq_cfg)
        err = float((w - q.float() * s.float()[:, None]).square().mean())
        if best is None or err < best[0]:
            best = (err, q, s, label)
    return best[1].contiguous(), best[2].contiguous(), best[3], "gptq"


def _store_passthrough(name: str, t: Tensor, rule: GroupQuant | None, cfg: QuantConfig, out: QuantizedState) -> Tensor:
    if rule is None or not t.is_floating_point():
        return t
    if rule.passthrough == "keep":
        return keep_float_tensor(name, t, cfg, out.passthrough_orig_dtypes)
    kept = t.to(DTYPES[rule.passthrough]).contiguous()
    if kept.dtype != t.dtype:
        out.passthrough_orig_dtypes[name] = dtype_name(t.dtype)
    return kept


def code_packing(packing: str, bits: int) -> str:
    """Effective packing of N-bit codes: "bitpack" or "int8" (8-bit codes are always int8; auto packs N = 2, 4)."""
    if bits >= 8:
        return "int8"
    if packing == "auto":
        return "bitpack" if 8 % bits == 0 else "int8"
    return packing


def stored_code_bytes(q: Tensor, bits: int, packing: str) -> int:
    """Bytes the codes occupy in the payload: numel (int8 containers) or ceil(numel * bits / 8) (bitpack)."""
    return packed_nbytes(q.numel(), bits) if packing == "bitpack" and bits < 8 else tensor_nbytes(q)


@register_scheme("mixed")
def quantize_state_dict_mixed(state_dict: dict[str, Tensor], cfg: QuantConfig,
                              hessians: dict[str, Tensor] | None = None) -> QuantizedState:
    """Quantize each tensor with its group's rule (quant.groups; see golf.quant.groups for membership).

    ``hessians`` maps weight names to [cols, cols] input Hessians (golf.quant.gptq.collect_hessians); groups
    with method=gptq use them for their 2-D tensors and fall back to round-to-nearest (logged) where a tensor
    has none. Raises QuantizationError when gptq is requested and ``hessians`` is None.
    Stats use the official keys; ``int8_payload_bytes`` counts stored bytes (bit-packed codes packed).
    """
    if cfg.uses_gptq() and hessians is None:
        raise QuantizationError("quant.groups.*.method=gptq needs calibration Hessians (golf.quant.gptq)")
    scale_dtype = DTYPES[cfg.scale_dtype]
    out = QuantizedState(scheme="mixed")
    stats = dict.fromkeys(("param_count", "num_tensors", "num_float_tensors", "num_nonfloat_tensors",
                           "baseline_tensor_bytes", "int8_payload_bytes"), 0)
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        group = tensor_group(name, t, cfg)
        rule = cfg.groups.get(group)
        out.names.append(name)
        out.groups[name] = group
        stats["param_count"] += int(t.numel())
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += tensor_nbytes(t)
        if is_quant_gate(name, t, cfg):
            rule = GATE_INT8_RULE
        elif not t.is_floating_point() or not rule.quantized:
            stats["num_nonfloat_tensors"] += int(not t.is_floating_point())
            kept = _store_passthrough(name, t, rule if t.is_floating_point() else None, cfg, out)
            out.passthrough[name] = kept
            stats["int8_payload_bytes"] += tensor_nbytes(kept)
            continue
        stats["num_float_tensors"] += 1
        packing = code_packing(cfg.packing, rule.bits)
        meta = {"bits": rule.bits, "group": group, "packing": packing}
        if t.ndim == 2:
            use_gptq = rule.method == "gptq" and hessians is not None and name in hessians
            if rule.method == "gptq" and not use_gptq:
                log.info(f"gptq: no calibration Hessian for {name}; round-to-nearest instead")
            q, s, label, method = quantize_matrix(name, t, rule, scale_dtype, hessians.get(name) if use_gptq else None,
                                                  cfg.gptq)
            if rule is GATE_INT8_RULE:
                label = "gate_int8"
            out.qmeta[name] = {"scheme": "per_row", "axis": 0, **meta, "clip": label, "method": method}
        else:
            q, s, label = quantize_per_tensor(name, t, rule)
            out.qmeta[name] = {"scheme": "per_tensor", **meta, "clip": label, "method": "rtn"}
        out.quantized[name], out.scales[name], out.dtypes[name] = q, s, dtype_name(t.dtype)
        stats["int8_payload_bytes"] += stored_code_bytes(q, rule.bits, packing) + tensor_nbytes(s)
    if cfg.lqer.enabled:
        out.lqer = add_lqer(out, state_dict, cfg.lqer)
        stats["int8_payload_bytes"] += sum(tensor_nbytes(out.quantized[n]) + tensor_nbytes(out.scales[n])
                                           for n in out.quantized if is_lqer_entry(n, out.qmeta.get(n)))
    out.stats = stats
    return out
