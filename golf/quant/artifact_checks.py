"""Structural checks of a golf artifact read from anywhere (golf.quant.artifact.read_artifact, verify=True).

The checksums prove a file is the one its writer wrote; these prove the writer wrote something golf can read:
the manifest's keys and types, every tensor entry (golf.quant.payload.entry_fault), entries that tile the
payload exactly once, one entry per (tensor, role), and codes that have a matching scale. Each check returns
the fault as one phrase (read_artifact prefixes "<path>: manifest malformed: "), or None.

A record's train_gpt.py reads back only the artifact it has just written and skips these (its checksums are
still checked), so this module is not shipped in it (golf.record traces it out).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.int8 import DTYPES, QuantizedState
from golf.quant.payload import entry_fault
from golf.validate import MAX_DEPTH, depth_exceeds

MAX_RAW_PAYLOAD_BYTES = 2**32
"""Largest decompressed payload a manifest may declare (4 GiB; the 16 MB challenge needs ~100 MB at most).
Decompression never produces more than the declared size (golf.quant.compress bounded decompressors)."""
MANIFEST_KEYS = ("format_version", "codec", "level", "byte_shuffle", "scheme", "payload_sha256",
                 "raw_payload_sha256", "payload_bytes", "raw_payload_bytes", "tensors")
"""Keys every manifest must hold."""


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def manifest_fault(manifest: object, version: int) -> str | None:
    """Why a decoded manifest cannot describe a format-`version` artifact (top level, depth, keys, types)."""
    if not isinstance(manifest, dict):
        return f"top level is {type(manifest).__name__}, not an object"
    if depth_exceeds(manifest):
        return f"nests deeper than {MAX_DEPTH} levels"
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        return f"missing keys {missing}"
    if manifest["format_version"] != version:
        return f"format_version {manifest['format_version']!r} != header {version}"
    return _type_fault(manifest)


def _type_fault(m: dict) -> str | None:
    """Why the manifest's top-level fields have the wrong type or range (one phrase), or None."""
    for key in ("payload_bytes", "raw_payload_bytes"):
        if not _is_int(m[key]) or m[key] < 0:
            return f"'{key}' is {m[key]!r}, not a non-negative int"
    if m["raw_payload_bytes"] > MAX_RAW_PAYLOAD_BYTES:
        return (f"declares a {m['raw_payload_bytes']:,}-byte payload, beyond the reader's limit of "
                f"{MAX_RAW_PAYLOAD_BYTES:,}")
    for key in ("codec", "scheme", "payload_sha256", "raw_payload_sha256"):
        if not isinstance(m[key], str):
            return f"'{key}' is {type(m[key]).__name__}, not a string"
    if not _is_int(m["byte_shuffle"]) or not 0 <= m["byte_shuffle"] <= 16:
        return f"byte_shuffle {m['byte_shuffle']!r} is not an int in [0, 16]"
    if not isinstance(m["tensors"], list):
        return "'tensors' is not a list"
    for key in ("stats", "extra"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            return f"'{key}' is {type(m[key]).__name__}, not an object"
    return None


def table_is_sound(entries: object) -> bool:
    """Whether a per-group codec may trust the tensor table to split its streams (before decompression)."""
    return isinstance(entries, list) and all(isinstance(e, dict) and entry_fault(e, 1 << 62) is None
                                             for e in entries)


def entries_fault(entries: list, raw_len: int, codec: str) -> str | None:
    """Why the tensor table does not describe a `raw_len`-byte payload compressed with `codec`: a bad entry, an
    entry of another codec, a duplicate (tensor, role), or bytes no entry (or two entries) claim."""
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(entries):
        fault = entry_fault(e, raw_len)
        if fault is None and e["orig_dtype"] is not None and (not isinstance(e["orig_dtype"], str)
                                                            or e["orig_dtype"] not in DTYPES):
            fault = f"unsupported orig_dtype {e['orig_dtype']!r}"
        if fault is None and e["codec"] != codec:
            fault = f"codec {e['codec']!r} differs from the payload codec {codec!r}"
        if fault is not None:
            return f"tensor entry {i}: {fault}"
    for e in entries:
        if (e["name"], e["role"]) in seen:
            return f"duplicate {e['role']} entry for tensor {e['name']!r}"
        seen.add((e["name"], e["role"]))
    return _unused_bytes(entries, raw_len)


def _unused_bytes(entries: list[dict], raw_len: int) -> str | None:
    """Payload bytes no tensor uses, or bytes two tensors share (one phrase), or None when entries tile it."""
    pos = 0
    for e in sorted(entries, key=lambda e: (e["offset"], e["nbytes"])):
        if e["offset"] > pos:
            return f"payload bytes [{pos}, {e['offset']}) belong to no tensor"
        if e["offset"] < pos:
            return f"tensor {e['name']!r} overlaps the bytes of another tensor at offset {e['offset']}"
        pos = e["offset"] + e["nbytes"]
    return f"payload bytes [{pos}, {raw_len}) belong to no tensor" if pos != raw_len else None


def state_fault(qstate: QuantizedState) -> str | None:
    """Why the tensors read cannot be dequantized together: roles that do not pair up, codes and scales whose
    dtypes or shapes do not match."""
    for name in qstate.quantized:
        if name not in qstate.scales or qstate.dtypes[name] is None:
            return f"quantized tensor {name!r} lacks a scale or orig_dtype"
    for name in qstate.scales:
        if name not in qstate.quantized or name in qstate.passthrough:
            return f"tensor {name!r} has inconsistent roles"
    for name, q in qstate.quantized.items():
        fault = _quantized_fault(q, qstate.scales[name], qstate.qmeta[name])
        if fault:
            return f"quantized tensor {name!r}: {fault}"
    return None


def _quantized_fault(q: Tensor, s: Tensor, meta: dict) -> str | None:
    """Why codes ``q`` and scale ``s`` cannot be dequantized together (one phrase), or None."""
    if q.dtype != torch.int8:
        return f"codes are {q.dtype}, not int8"
    if not s.is_floating_point():
        return f"scale is {s.dtype}, not floating point"
    if meta.get("scheme") == "per_row" or s.ndim > 0:
        if q.ndim < 1 or s.numel() != q.shape[0]:
            return f"{s.numel()} row scales for codes of shape {list(q.shape)}"
    elif s.numel() != 1:
        return f"a per-tensor scale of {s.numel()} elements"
    return None
