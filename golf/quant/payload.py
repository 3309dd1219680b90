"""The artifact payload: tensors <-> one byte string, plus the tensor table that locates them (no pickle).

Each stored tensor is written as raw little-endian bytes, in state-dict order, quantized codes followed by their
scale. bf16 travels as its int16 bit pattern. Codes of N < 8 bits in a tensor whose qmeta says
``packing="bitpack"`` are bit-packed (golf.quant.packing); otherwise codes are int8 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from golf.quant.int8 import QuantizedState, dtype_name
from golf.quant.packing import pack_codes, packed_nbytes, unpack_codes

ROLES = ("quantized", "scale", "passthrough")
# Little-endian numpy storage dtype per torch dtype; bf16 travels as its int16 bit pattern.
NP_DTYPES: dict[str, str] = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<i2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
}
ENTRY_KEYS = ("name", "role", "shape", "dtype", "offset", "nbytes", "orig_dtype", "bits", "clip", "scheme", "axis",
              "group", "method", "packing", "codec")


class PayloadError(ValueError):
    """A tensor cannot be serialized (unsupported dtype); the artifact writer turns it into ArtifactError."""


def tensor_bytes(name: str, t: Tensor) -> bytes:
    """Raw little-endian bytes of ``t`` (bf16 as int16 patterns). Raises PayloadError for other dtypes."""
    dname = dtype_name(t.dtype)
    if dname not in NP_DTYPES:
        raise PayloadError(f"tensor {name!r} has unsupported dtype {dname}; allowed: {sorted(NP_DTYPES)}")
    t = t.detach().to("cpu").contiguous()
    arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return arr.astype(NP_DTYPES[dname], copy=False).tobytes()


def stored_tensors(qstate: QuantizedState, names: Iterable[str] | None = None) -> Iterator[tuple[dict, bytes]]:
    """Yield (table entry without offset/codec, bytes) per stored tensor, in state-dict order."""
    for name in (qstate.ordered_names() if names is None else names):
        group = qstate.groups.get(name)
        if name in qstate.quantized:
            meta = qstate.qmeta.get(name, {})
            q, bits = qstate.quantized[name], int(meta.get("bits", 8))
            packing = meta.get("packing") or "int8"
            data = pack_codes(q, bits).numpy().tobytes() if packing == "bitpack" else tensor_bytes(name, q)
            common = {"name": name, "group": group, "scheme": meta.get("scheme"), "clip": meta.get("clip"),
                      "axis": meta.get("axis"), "method": meta.get("method")}
            yield {**common, "role": "quantized", "shape": list(q.shape), "dtype": dtype_name(q.dtype),
                   "nbytes": len(data), "orig_dtype": qstate.dtypes.get(name), "bits": bits, "packing": packing}, data
            s = qstate.scales[name]
            data = tensor_bytes(name, s)
            yield {**common, "role": "scale", "shape": list(s.shape), "dtype": dtype_name(s.dtype), "nbytes": len(data),
                   "orig_dtype": None, "bits": 8 * s.element_size(), "packing": None}, data
        elif name in qstate.passthrough:
            t = qstate.passthrough[name]
            data = tensor_bytes(name, t)
            yield {"name": name, "group": group, "role": "passthrough", "shape": list(t.shape),
                   "dtype": dtype_name(t.dtype), "nbytes": len(data),
                   "orig_dtype": qstate.passthrough_orig_dtypes.get(name), "bits": 8 * t.element_size(),
                   "clip": None, "scheme": None, "axis": None, "method": None, "packing": None}, data
        else:
            raise PayloadError(f"tensor {name!r} is listed but neither quantized nor passthrough")


_GROUP_ORDER = {"embed": 0, "attn": 1, "mlp": 2, "other": 3, "small": 4}
_ROLE_ORDER = {"quantized": 0, "scale": 1, "passthrough": 2}


def _layout_key(item: tuple[dict, bytes]) -> tuple[int, int]:
    e = item[0]
    return _ROLE_ORDER[e["role"]], _GROUP_ORDER.get(e["group"], len(_GROUP_ORDER))


def build_payload(qstate: QuantizedState, names: Iterable[str] | None = None) -> tuple[bytes, list[dict]]:
    """Concatenated tensor bytes and the tensor table (with offsets) for ``names`` (default: all).

    Layout: all quantized codes, then all scales, then all passthrough tensors, each by group (embed, attn, mlp,
    other, small) and state-dict order; similar bytes sit together, which compresses 0.3-1.7% smaller than
    state-dict order with zlib/zstd/lzma (measured on the smoke model; brotli is indifferent). The table stays
    in state-dict order (readers rebuild the order from it) and locates each tensor by offset.
    """
    items = list(stored_tensors(qstate, names))
    chunks: list[bytes] = []
    offsets: dict[int, int] = {}
    offset = 0
    for i in sorted(range(len(items)), key=lambda i: _layout_key(items[i])):  # stable: state-dict order kept
        offsets[i] = offset
        chunks.append(items[i][1])
        offset += len(items[i][1])
    return b"".join(chunks), [{**entry, "offset": offsets[i]} for i, (entry, _) in enumerate(items)]


def entry_fault(e: object, raw_len: int) -> str | None:
    """Why a table entry is malformed (one phrase), or None when it is valid for a ``raw_len``-byte payload."""
    if not isinstance(e, dict) or any(k not in e for k in ENTRY_KEYS):
        return f"needs keys {list(ENTRY_KEYS)}"
    if (not isinstance(e["name"], str) or not isinstance(e["role"], str) or e["role"] not in ROLES
            or not isinstance(e["dtype"], str) or e["dtype"] not in NP_DTYPES):
        return f"bad name/role/dtype ({e['name']!r}, {e['role']!r}, {e['dtype']!r})"
    shape, offset, nbytes, bits = e["shape"], e["offset"], e["nbytes"], e["bits"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return f"shape {shape!r} is not a list of non-negative ints"
    if not isinstance(offset, int) or not isinstance(nbytes, int) or offset < 0 or offset + nbytes > raw_len:
        return f"bytes [{offset}, {offset}+{nbytes}) outside the {raw_len}-byte payload"
    if e["packing"] not in (None, "int8", "bitpack"):
        return f"unknown packing {e['packing']!r}"
    if e["packing"] == "bitpack":
        if e["role"] != "quantized" or e["dtype"] != "int8" or not isinstance(bits, int) or not 2 <= bits <= 8:
            return f"bitpack needs quantized int8 codes of 2..8 bits (got {e['role']}, {e['dtype']}, {bits!r})"
        expected = packed_nbytes(math.prod(shape), bits)
    else:
        expected = math.prod(shape) * np.dtype(NP_DTYPES[e["dtype"]]).itemsize
    if expected != nbytes:
        return f"{nbytes} bytes do not fit shape {shape} of {e['dtype']}"
    return None


def tensor_from_payload(raw: bytes, e: dict) -> Tensor:
    """The tensor an (already validated) entry describes; bit-packed codes come back as int8."""
    if e["packing"] == "bitpack":
        buf = np.frombuffer(raw, dtype=np.uint8, count=e["nbytes"], offset=e["offset"])
        return unpack_codes(torch.from_numpy(buf.copy()), e["bits"], e["shape"])
    count = math.prod(e["shape"])
    arr = np.frombuffer(raw, dtype=NP_DTYPES[e["dtype"]], count=count, offset=e["offset"])
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)  # native order, writable copy
    t = torch.from_numpy(arr).reshape(e["shape"])
    return t.view(torch.bfloat16) if e["dtype"] == "bfloat16" else t
