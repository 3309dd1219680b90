"""The official int8 export scheme and the quantization-scheme registry.

``quantize_state_dict_int8`` / ``dequantize_state`` reproduce openai/parameter-golf ``train_gpt.py``
(``keep_float_tensor``, ``quantize_float_tensor``, ``quantize_state_dict_int8``, ``dequantize_state_dict_int8``,
L313-422) bit for bit under the default ``QuantConfig``:

1. non-float tensors -> passthrough, exact;
2. float tensors with numel <= 65,536 -> passthrough: fp32 when the name contains a control pattern, else
   fp32/bf16 are stored as fp16 (original dtype remembered); other float dtypes (fp16, fp64) are kept as is;
3. 2-D float tensors -> per-row int8: ``clip = quantile(|w|, 0.9999984, dim=1)`` (fp32), ``w`` clamped to
   ``±clip``, ``scale = (clip/127).clamp_min(1/127)``, ``q = clamp(round(w_clipped/scale), -127, 127)``;
   scales stored fp16 (q is computed with the fp32 scale, dequantization uses the stored fp16 scale);
4. other float tensors -> one per-tensor int8 scale: ``clip = quantile(|w|.flatten(), 0.9999984)``,
   ``scale = clip/127`` (1.0 when clip == 0, no 1/127 floor), kept as a 0-dim fp32 tensor.

Schemes are registered by name in ``SCHEMES`` (``QuantConfig.scheme``): "int8" (here), "none" (golf.quant.passthrough) and
"mixed" (golf.quant.intn: per-group intN / GPTQ / passthrough), all returning a ``QuantizedState``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from golf.errors import GolfError
from golf.quant.config import SCHEME_NAMES, QuantConfig, is_lqer_entry

# dtype names allowed in QuantizedState / artifacts; a whitelist so a manifest can never name arbitrary attrs.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


class QuantizationError(GolfError, ValueError):
    """A tensor cannot be quantized or dequantized (names the tensor and the fault)."""


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the official ``str(t.dtype).removeprefix("torch.")``)."""
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    """Inverse of ``dtype_name`` restricted to ``DTYPES``; raise QuantizationError for other names."""
    try:
        return DTYPES[name]
    except KeyError:
        raise QuantizationError(f"unsupported dtype {name!r}; allowed: {sorted(DTYPES)}") from None


def tensor_nbytes(t: Tensor) -> int:
    """Storage bytes of ``t`` (numel * element size), as the official ``tensor_nbytes``."""
    return int(t.numel()) * int(t.element_size())


@dataclass
class QuantizedState:
    """A quantized state dict as plain dicts keyed by parameter name (mirrors the official export object).

    quantized: name -> int8 codes, same shape as the original tensor.
    scales: name -> per-row scales, shape (rows,) in ``QuantConfig.scale_dtype``, or a 0-dim fp32 per-tensor scale.
    dtypes: name -> original dtype name of each quantized tensor (restored by ``dequantize_state``).
    passthrough: name -> tensor stored unquantized (possibly downcast, see passthrough_orig_dtypes).
    passthrough_orig_dtypes: name -> original dtype name of a downcast passthrough tensor.
    qmeta: name -> {"scheme": "per_row" | "per_tensor", "axis": 0 (per_row only), "bits": N, "clip": label
        (e.g. "p99.99984", "rowmax", "std12.85"), "method": "rtn" | "gptq", "group": tensor group,
        "packing": "int8" | "bitpack"} for each quantized tensor.
    groups: name -> tensor group (embed, attn, mlp, other, small) of every tensor (golf.quant.groups).
    names: all tensor names in the original state-dict order.
    stats: the official counters (param_count, num_tensors, num_float_tensors, num_nonfloat_tensors,
        baseline_tensor_bytes, int8_payload_bytes), bytes uncompressed.
    """

    scheme: str
    quantized: dict[str, Tensor] = field(default_factory=dict)
    scales: dict[str, Tensor] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    passthrough: dict[str, Tensor] = field(default_factory=dict)
    passthrough_orig_dtypes: dict[str, str] = field(default_factory=dict)
    qmeta: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    lqer: dict[str, dict] = field(default_factory=dict)
    """LQER report of the corrected tensors (golf.quant.lqer.add_lqer; not stored in the artifact)."""

    def payload_nbytes(self) -> int:
        """Uncompressed bytes of all stored tensors (codes + scales + passthrough), i.e. ``int8_payload_bytes``."""
        tensors = [*self.quantized.values(), *self.scales.values(), *self.passthrough.values()]
        return sum(tensor_nbytes(t) for t in tensors)

    def ordered_names(self) -> list[str]:
        """Tensor names in state-dict order (quantized then passthrough when ``names`` is empty)."""
        return list(self.names) if self.names else [*self.quantized, *self.passthrough]


SchemeFn = Callable[..., QuantizedState]
"""``fn(state_dict, cfg, hessians=None) -> QuantizedState``."""
SCHEMES: dict[str, SchemeFn] = {}
SCHEME_MODULES: dict[str, str] = {"int8": "golf.quant.int8", "none": "golf.quant.passthrough", "mixed": "golf.quant.intn"}
"""Scheme -> the module that registers it, imported on first use (keys equal golf.quant.config.SCHEME_NAMES)."""


def register_scheme(name: str) -> Callable[[SchemeFn], SchemeFn]:
    """Decorator adding a ``(state_dict, cfg, hessians=None) -> QuantizedState`` function to ``SCHEMES``."""

    def add(fn: SchemeFn) -> SchemeFn:
        if name in SCHEMES:
            raise QuantizationError(f"quantization scheme {name!r} is already registered")
        SCHEMES[name] = fn
        return fn

    return add


def quantize_state_dict(state_dict: dict[str, Tensor], cfg: QuantConfig,
                        hessians: dict[str, Tensor] | None = None) -> QuantizedState:
    """Quantize ``state_dict`` with the scheme named by ``cfg.scheme``; ``hessians`` (weight name -> [cols, cols])
    feed GPTQ groups of scheme "mixed" and are ignored by the other schemes."""
    if cfg.scheme not in SCHEME_MODULES:
        raise QuantizationError(f"unknown quantization scheme {cfg.scheme!r}; allowed: {sorted(SCHEME_NAMES)}")
    importlib.import_module(SCHEME_MODULES[cfg.scheme])  # registers it in SCHEMES
    fn = SCHEMES[cfg.scheme]
    return fn(state_dict, cfg, hessians=hessians)


def _matches_any(name: str, patterns: list[str]) -> bool:
    return any(p in name for p in patterns)


def keep_float_tensor(name: str, t: Tensor, cfg: QuantConfig, orig_dtypes: dict[str, str]) -> Tensor:
    """Storage form of a small float tensor (official ``keep_float_tensor``, L313-319).

    Control-pattern names -> fp32 (their original dtype is NOT recorded, as in the official code);
    fp32/bf16 -> ``cfg.keep_float_dtype`` with the original dtype recorded in ``orig_dtypes``; other float
    dtypes are returned unchanged.
    """
    if _matches_any(name, cfg.control_tensor_patterns):
        return t.float().contiguous()
    if t.dtype in (torch.float32, torch.bfloat16):
        orig_dtypes[name] = dtype_name(t.dtype)
        return t.to(dtype=DTYPES[cfg.keep_float_dtype]).contiguous()
    return t


def _quantile(name: str, x: Tensor, q: float, dim: int | None = None) -> Tensor:
    try:
        return torch.quantile(x, q) if dim is None else torch.quantile(x, q, dim=dim)
    except RuntimeError as exc:  # e.g. torch.quantile refuses inputs with more than 2**24 elements
        raise QuantizationError(f"tensor {name!r} shape {tuple(x.shape)}: clip quantile failed: {exc}") from exc


def quantize_float_tensor_int8(name: str, t: Tensor, cfg: QuantConfig) -> tuple[Tensor, Tensor]:
    """Official ``quantize_float_tensor`` (L321-340): int8 codes (shape of ``t``) and their scale.

    2-D: per-row scales, shape (rows,), stored in ``cfg.scale_dtype``. Otherwise: a 0-dim fp32 scale.
    """
    clip_q = cfg.clip_percentile / 100.0
    t32 = t.float()
    if t32.ndim == 2:
        # One scale per output row tracks channel ranges better than a tensor-wide scale.
        clip_abs = (
            _quantile(name, t32.abs(), clip_q, dim=1)
            if t32.numel()
            else torch.empty((t32.shape[0],), dtype=torch.float32)
        )
        clipped = torch.maximum(torch.minimum(t32, clip_abs[:, None]), -clip_abs[:, None])
        scale = (clip_abs / 127.0).clamp_min(1.0 / 127.0)
        q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8).contiguous()
        return q, scale.to(dtype=DTYPES[cfg.scale_dtype]).contiguous()

    clip_abs = float(_quantile(name, t32.abs().flatten(), clip_q).item()) if t32.numel() else 0.0
    scale = torch.tensor(clip_abs / 127.0 if clip_abs > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip_abs, clip_abs) / scale), -127, 127)
    return q.to(torch.int8).contiguous(), scale


@register_scheme("int8")
def quantize_state_dict_int8(state_dict: dict[str, Tensor], cfg: QuantConfig | None = None,
                             hessians: dict[str, Tensor] | None = None) -> QuantizedState:
    """Official ``quantize_state_dict_int8`` (train_gpt.py L342-399) over a state dict of CPU/GPU tensors.

    Returns a QuantizedState with scheme "int8"; see the module docstring for the rules. ``hessians`` is ignored.
    Raises QuantizationError when a tensor's clip quantile cannot be computed.
    """
    from golf.quant.groups import tensor_group

    cfg = cfg or QuantConfig()
    out = QuantizedState(scheme="int8")
    stats = dict.fromkeys(
        ("param_count", "num_tensors", "num_float_tensors", "num_nonfloat_tensors",
         "baseline_tensor_bytes", "int8_payload_bytes"),
        0,
    )
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        out.names.append(name)
        out.groups[name] = tensor_group(name, t, cfg)
        stats["param_count"] += int(t.numel())
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += tensor_nbytes(t)

        if not t.is_floating_point():
            stats["num_nonfloat_tensors"] += 1
            out.passthrough[name] = t
            stats["int8_payload_bytes"] += tensor_nbytes(t)
            continue

        if t.numel() <= cfg.keep_float_max_numel:
            kept = keep_float_tensor(name, t, cfg, out.passthrough_orig_dtypes)
            out.passthrough[name] = kept
            stats["int8_payload_bytes"] += tensor_nbytes(kept)
            continue

        stats["num_float_tensors"] += 1
        q, s = quantize_float_tensor_int8(name, t, cfg)
        meta = {"bits": 8, "clip": f"p{cfg.clip_percentile:.10g}", "method": "rtn", "group": out.groups[name],
                "packing": "int8"}
        out.qmeta[name] = {"scheme": "per_row", "axis": 0, **meta} if s.ndim > 0 else {"scheme": "per_tensor", **meta}
        out.quantized[name] = q
        out.scales[name] = s
        out.dtypes[name] = dtype_name(t.dtype)
        stats["int8_payload_bytes"] += tensor_nbytes(q) + tensor_nbytes(s)
    out.stats = stats
    return out


def dequantize_tensor(name: str, q: Tensor, s: Tensor, dtype: torch.dtype, qmeta: dict) -> Tensor:
    """Official dequantization of one tensor: ``q * scale`` (per row broadcast over trailing dims) -> ``dtype``."""
    if qmeta.get("scheme") == "per_row" or s.ndim > 0:
        s = s.to(dtype=torch.float32)
        if s.numel() != q.shape[0]:
            raise QuantizationError(f"tensor {name!r}: {s.numel()} row scales for {q.shape[0]} rows")
        return (q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))).to(dtype=dtype).contiguous()
    scale = float(s.item())
    return (q.float() * scale).to(dtype=dtype).contiguous()


def dequantize_state(qstate: QuantizedState) -> dict[str, Tensor]:
    """Official ``dequantize_state_dict_int8`` (L401-422): name -> tensor in its original dtype, state-dict order.

    Quantized tensors become ``q * scale`` in their recorded dtype; downcast passthrough tensors are cast back
    to their recorded original dtype. Raises QuantizationError on inconsistent entries.
    """
    lqer = any(is_lqer_entry(n, qstate.qmeta.get(n)) for n in qstate.quantized)
    lqer_bases: set[str] = set()
    if lqer:
        from golf.quant.lqer import SUFFIX_A, fold_lqer  # lazy: only LQER artifacts ship it

        lqer_bases = {n[: -len(SUFFIX_A)] for n in qstate.quantized
                      if n.endswith(SUFFIX_A) and is_lqer_entry(n, qstate.qmeta.get(n))}
    out: dict[str, Tensor] = {}
    for name in qstate.ordered_names():
        if name in qstate.quantized:
            if name not in qstate.scales or name not in qstate.dtypes:
                raise QuantizationError(f"tensor {name!r}: quantized codes without a scale or dtype")
            dtype = torch.float32 if name in lqer_bases else dtype_from_name(qstate.dtypes[name])
            out[name] = dequantize_tensor(name, qstate.quantized[name], qstate.scales[name], dtype,
                                          qstate.qmeta.get(name, {}))
        elif name in qstate.passthrough:
            t = qstate.passthrough[name].detach().to("cpu").contiguous()
            orig = qstate.passthrough_orig_dtypes.get(name)
            if isinstance(orig, str):
                t = t.to(dtype=dtype_from_name(orig)).contiguous()
            out[name] = t
        else:
            raise QuantizationError(f"tensor {name!r} is listed but neither quantized nor passthrough")
    if lqer:
        try:  # LQER (2026-04-27 record): W' = codes*scale + A @ B in fp32, then the tensor's dtype
            fold_lqer(out, qstate.qmeta)
        except ValueError as exc:
            raise QuantizationError(str(exc)) from None
        for base in lqer_bases:
            out[base] = out[base].to(dtype_from_name(qstate.dtypes[base])).contiguous()
    return out
