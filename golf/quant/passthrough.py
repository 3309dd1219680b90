"""Quantization scheme "none": every tensor stored exactly in its own dtype (no quantization, no downcast).

A reference point for the quantization error of the other schemes (an unquantized artifact is ~4x the int8 one).
Its own module so that only a config with ``quant.scheme=none`` ships it (golf.quant.int8.SCHEME_MODULES).
"""

from __future__ import annotations

from torch import Tensor

from golf.quant.config import QuantConfig
from golf.quant.groups import tensor_group
from golf.quant.int8 import QuantizedState, register_scheme, tensor_nbytes


@register_scheme("none")
def passthrough_state_dict(state_dict: dict[str, Tensor], cfg: QuantConfig | None = None,
                           hessians: dict[str, Tensor] | None = None) -> QuantizedState:
    """Reference scheme "none": every tensor stored exactly in its own dtype (no quantization, no downcast)."""
    cfg = cfg or QuantConfig()
    out = QuantizedState(scheme="none")
    payload = 0
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        out.names.append(name)
        out.groups[name] = tensor_group(name, t, cfg)
        out.passthrough[name] = t
        payload += tensor_nbytes(t)
    out.stats = {
        "param_count": sum(int(t.numel()) for t in out.passthrough.values()),
        "num_tensors": len(out.passthrough),
        "baseline_tensor_bytes": payload,
        "int8_payload_bytes": payload,
    }
    return out
