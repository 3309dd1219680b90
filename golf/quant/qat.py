"""Quantization-aware training (QAT) with the straight-through estimator (STE), without editing golf.model.

``install_qat(model, quant)`` swaps the class of every CastedLinear whose weight the export quantizes (rule of
its tensor group, golf.quant.groups.rule_for) to a subclass whose forward uses

    w_eff = where(qat_flag, dequant(quant(w)), w) + (w - w.detach())

i.e. exactly the export's dequantized weight in value (same golf.quant.intn code, same fp16 scale rounding)
and the identity in gradient (STE, records 03-19 #6 and 03-21/03-22 #23). GPTQ groups are fake-quantized with
round-to-nearest under the same clip rule (GPTQ cannot run in a forward pass). Parameters, state-dict keys and
optimizer routing are unchanged; ``remove_qat`` restores the original classes.

The on/off switch is a 0-dim float buffer ``qat_flag`` (non-persistent, so not in the state dict) read inside
the graph. A Python bool would be a compile-time constant: record 03-21 flipped a class attribute for late QAT
and torch.compile had folded it, so QAT never ran. Flipping the buffer changes the compiled forward without a
recompile (tested). Installing QAT changes module classes, which torch.compile guards on: the first forward
after ``install_qat`` recompiles once. Inductor normally drops a fp32 -> fp16 -> fp32 round trip inside a fused
kernel, which would skip the fp16 rounding of the scales that export applies; ``install_qat`` therefore sets
``torch._inductor.config.emulate_precision_casts = True`` (process-wide, read at compile time), after which the
compiled fake-quantized weights equal the exported ones bit for bit (tested).

``golf.train.qat.QATHook`` (registered by golf.train.hooks.build_hooks when quant.qat.enabled) installs QAT,
switches it on immediately or once the lr multiplier falls below quant.qat.late_threshold (record 03-22: 0.15),
and removes it before the final validation and checkpoint.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.layers import CastedLinear
from golf.quant.config import GroupQuant, QuantConfig
from golf.quant.groups import rule_for
from golf.quant.int8 import DTYPES
from golf.quant.intn import fake_quantize_rows

log = logging.getLogger("golf.quant")
_QAT_CLASSES: dict[type, type] = {}


def fake_quantize_rowmax31(w: Tensor) -> Tensor:
    """The late-QAT weight of records 03-21/03-22/03-23 (their CastedLinear.forward), fp32 [rows, cols]:
    s = max(row max |w| / 31, 1/31) (fp32, not rounded to fp16), w_q = clamp(round(w / s), -32, 31) · s."""
    w = w.float()
    s = (w.abs().amax(dim=1) / 31.0).clamp_min(1.0 / 31.0)[:, None]
    return torch.clamp(torch.round(w / s), -32, 31) * s


class _FakeQuantLinear:
    """Mixin placed before the original CastedLinear class: fake-quantized weight with STE gradient."""

    qat_flag: Tensor
    _qat_rule: GroupQuant | str
    _qat_scale_dtype: torch.dtype

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        # Fake-quantize a detached copy: the gradient must not flow through the clip/scale statistics (STE).
        if self._qat_rule == "rowmax31":
            wq = fake_quantize_rowmax31(w.detach())
        else:
            wq = fake_quantize_rows(w.detach(), self._qat_rule, self._qat_scale_dtype)
        w_eff = torch.where(self.qat_flag > 0, wq, w.detach().float()) + (w - w.detach()).float()
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, w_eff.to(x.dtype), bias)


def _qat_class(cls: type) -> type:
    if cls not in _QAT_CLASSES:
        _QAT_CLASSES[cls] = type(f"QAT{cls.__name__}", (_FakeQuantLinear, cls), {"_qat_base": cls})
    return _QAT_CLASSES[cls]


def _emulate_precision_casts() -> None:
    """Make inductor keep explicit dtype round trips (the fp16 rounding of scales) as eager does."""
    try:
        import torch._inductor.config as inductor_config
    except ImportError:  # pragma: no cover - builds without inductor
        return
    inductor_config.emulate_precision_casts = True


def install_qat(model: nn.Module, quant: QuantConfig, enabled: bool = False) -> list[str]:
    """Fake-quantize every CastedLinear weight that export quantizes; return the weight names covered.

    The flag starts at ``enabled``. Idempotent: already-installed modules keep their flag.
    With ``quant.qat.folded_flag`` and a late threshold > 0 the flag is "folded" as torch.compile folded the
    records' class attribute (03-21/03-22/03-23): it stays off whatever ``enabled`` / ``set_qat_enabled`` say.
    """
    _emulate_precision_casts()
    folded = bool(quant.qat.folded_flag) and float(quant.qat.late_threshold) > 0.0
    if folded:
        log.info("qat: quant.qat.folded_flag=true: late QAT stays off (records 03-21/03-22/03-23: torch.compile "
                 "folded their flag at the first trace)")
        enabled = False
    covered = []
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, CastedLinear) or isinstance(mod, _FakeQuantLinear):
            continue
        name = f"{mod_name}.weight"
        rule = rule_for(name, mod.weight, quant)
        if rule is None or not rule.quantized or mod.weight.ndim != 2:
            continue
        mod.register_buffer("qat_flag", torch.tensor(float(enabled), device=mod.weight.device), persistent=False)
        mod._qat_rule = "rowmax31" if quant.qat.rule == "rowmax31" else rule
        mod._qat_scale_dtype = DTYPES[quant.scale_dtype]
        mod._qat_folded = folded
        mod.__class__ = _qat_class(type(mod))
        covered.append(name)
    return covered


def set_qat_enabled(model: nn.Module, on: bool) -> int:
    """Set every installed ``qat_flag`` in place (no recompile); return how many modules were switched.

    Folded flags (``quant.qat.folded_flag``, see ``install_qat``) stay off and are not counted."""
    n = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, _FakeQuantLinear) and not mod._qat_folded:
                mod.qat_flag.fill_(1.0 if on else 0.0)
                n += 1
    return n


def remove_qat(model: nn.Module) -> int:
    """Restore the original classes and drop the flags; return how many modules were restored."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, _FakeQuantLinear):
            mod.__class__ = mod._qat_base
            del mod._buffers["qat_flag"]
            del mod._qat_rule, mod._qat_scale_dtype, mod._qat_folded
            n += 1
    return n
