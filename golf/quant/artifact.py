"""The golf artifact: one self-describing file holding a quantized state dict, with no pickle anywhere.

Layout (all integers little-endian)::

    magic            8 bytes   b"GOLFART\\x00"
    format_version   u32       FORMAT_VERSION
    manifest_length  u64       bytes of the manifest that follows
    manifest         JSON, utf-8, compact
    payload          codec-compressed concatenation of raw little-endian tensor bytes

The manifest holds format_version, created_with ("golf <version>"), scheme, codec, level, payload_sha256 (of the
COMPRESSED payload), payload_bytes (compressed), raw_payload_bytes, config_fingerprint (sha256 of the run config),
stats, extra, and a tensor table: one entry per stored tensor, ``{name, role ("quantized" | "scale" |
"passthrough"), shape, dtype, offset, nbytes, orig_dtype, bits, clip, scheme, axis}``, where offset/nbytes locate
the tensor in the decompressed payload. bf16 tensors are stored as their raw 16-bit patterns.

Budget accounting: the "model bytes" counted against the 16,000,000-byte cap are the WHOLE artifact file size
(header + manifest + compressed payload), i.e. ``ArtifactInfo.file_bytes`` = ``os.path.getsize(path)``. The
official baseline counts its ``torch.save`` + zlib file the same way (train_gpt.py L1086-1092).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from golf.errors import GolfError
from golf.quant.compress import CodecError, compress, decompress, get_codec
from golf.quant.int8 import DTYPES, QuantizedState, dequantize_state, dtype_name

MAGIC = b"GOLFART\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ")
HEADER_BYTES = _HEADER.size  # 20
ROLES = ("quantized", "scale", "passthrough")
# Little-endian numpy storage dtype per torch dtype; bf16 travels as its int16 bit pattern.
_NP_DTYPES: dict[str, str] = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<i2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
}
_ENTRY_KEYS = ("name", "role", "shape", "dtype", "offset", "nbytes", "orig_dtype", "bits", "clip", "scheme", "axis")
_MANIFEST_KEYS = ("format_version", "codec", "level", "scheme", "payload_sha256", "payload_bytes",
                  "raw_payload_bytes", "tensors")


class ArtifactError(GolfError, ValueError):
    """An artifact cannot be written or read; the message names the file and the fault in one line."""


@dataclass
class ArtifactInfo:
    """Sizes of a written artifact, in bytes. ``file_bytes`` is what counts against the budget."""

    path: Path
    file_bytes: int
    payload_bytes: int
    compressed_bytes: int
    manifest_bytes: int


def golf_version() -> str:
    """Installed golf package version ("0+unknown" when golf is not installed as a distribution)."""
    try:
        return metadata.version("golf")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def config_fingerprint(config: dict | str | None) -> str | None:
    """sha256 hex of a config: a JSON string as given, or a dict as canonical JSON (sorted keys, compact)."""
    if config is None:
        return None
    text = config if isinstance(config, str) else json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tensor_bytes(path: Path, name: str, t: Tensor) -> bytes:
    dname = dtype_name(t.dtype)
    if dname not in _NP_DTYPES:
        raise ArtifactError(f"{path}: tensor {name!r} has unsupported dtype {dname}; allowed: {sorted(_NP_DTYPES)}")
    t = t.detach().to("cpu").contiguous()
    arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return arr.astype(_NP_DTYPES[dname], copy=False).tobytes()


def _stored_tensors(path: Path, qstate: QuantizedState):
    """Yield (name, role, tensor, entry fields) in state-dict order; codes are followed by their scale."""
    for name in qstate.ordered_names():
        if name in qstate.quantized:
            meta = qstate.qmeta.get(name, {})
            common = {"scheme": meta.get("scheme"), "clip": meta.get("clip_percentile"), "axis": meta.get("axis")}
            yield name, "quantized", qstate.quantized[name], {
                **common, "orig_dtype": qstate.dtypes.get(name), "bits": meta.get("bits", 8)}
            yield name, "scale", qstate.scales[name], {**common, "orig_dtype": None, "bits": None}
        elif name in qstate.passthrough:
            yield name, "passthrough", qstate.passthrough[name], {
                "scheme": None, "clip": None, "axis": None,
                "orig_dtype": qstate.passthrough_orig_dtypes.get(name), "bits": None}
        else:
            raise ArtifactError(f"{path}: tensor {name!r} is listed but neither quantized nor passthrough")


def _build_payload(path: Path, qstate: QuantizedState) -> tuple[bytes, list[dict]]:
    chunks: list[bytes] = []
    table: list[dict] = []
    offset = 0
    for name, role, t, fields in _stored_tensors(path, qstate):
        data = _tensor_bytes(path, name, t)
        bits = fields["bits"] if fields["bits"] is not None else 8 * t.element_size()
        table.append({
            "name": name, "role": role, "shape": list(t.shape), "dtype": dtype_name(t.dtype), "offset": offset,
            "nbytes": len(data), "orig_dtype": fields["orig_dtype"], "bits": int(bits), "clip": fields["clip"],
            "scheme": fields["scheme"], "axis": fields["axis"],
        })
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks), table


def write_artifact(
    path: str | Path,
    qstate: QuantizedState,
    codec: str = "zlib",
    level: int | None = 9,
    config: dict | str | None = None,
    extra: dict | None = None,
) -> ArtifactInfo:
    """Serialize ``qstate`` to ``path`` atomically (tmp file in the same folder + os.replace).

    ``config`` is fingerprinted (sha256) into the manifest; ``extra`` (JSON-serializable) is stored verbatim.
    The output is deterministic: the same inputs give byte-identical files.
    Raises ArtifactError (unsupported dtype, bad codec/level, non-JSON config/extra); on any failure an
    existing file at ``path`` is left untouched and no temporary file remains.
    """
    path = Path(path)
    try:
        level = get_codec(codec).check_level(level)
        raw, table = _build_payload(path, qstate)
        blob = compress(raw, codec, level)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_with": f"golf {golf_version()}",
            "scheme": qstate.scheme,
            "codec": codec,
            "level": level,
            "payload_sha256": hashlib.sha256(blob).hexdigest(),
            "payload_bytes": len(blob),
            "raw_payload_bytes": len(raw),
            "config_fingerprint": config_fingerprint(config),
            "stats": dict(qstate.stats),
            "extra": extra if extra is not None else {},
            "tensors": table,
        }
        manifest_bytes = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except CodecError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{path}: manifest not JSON-serializable: {exc}") from exc

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(MAGIC, FORMAT_VERSION, len(manifest_bytes)))
            f.write(manifest_bytes)
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ArtifactInfo(
        path=path,
        file_bytes=path.stat().st_size,
        payload_bytes=len(raw),
        compressed_bytes=len(blob),
        manifest_bytes=len(manifest_bytes),
    )


def _parse_header_and_manifest(path: Path, data: bytes) -> tuple[dict, int]:
    if len(data) < len(MAGIC):
        raise ArtifactError(f"{path}: truncated: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    if data[: len(MAGIC)] != MAGIC:
        raise ArtifactError(f"{path}: bad magic {data[:len(MAGIC)]!r} (expected {MAGIC!r}); not a golf artifact")
    if len(data) < HEADER_BYTES:
        raise ArtifactError(f"{path}: truncated: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    _, version, manifest_len = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported format version {version} (this golf reads {FORMAT_VERSION})")
    end = HEADER_BYTES + manifest_len
    if end > len(data):
        raise ArtifactError(f"{path}: truncated: manifest needs {manifest_len} bytes, file has {len(data) - HEADER_BYTES}")
    try:
        manifest = json.loads(data[HEADER_BYTES:end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest malformed: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: manifest malformed: top level is {type(manifest).__name__}, not an object")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path}: manifest malformed: missing keys {missing}")
    if manifest["format_version"] != version:
        raise ArtifactError(f"{path}: manifest malformed: format_version {manifest['format_version']!r} != header {version}")
    return manifest, end


def _check_entry(path: Path, i: int, e: object, raw_len: int) -> None:
    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"{path}: manifest malformed: tensor entry {i}: {why}")

    if not isinstance(e, dict) or any(k not in e for k in _ENTRY_KEYS):
        raise bad(f"needs keys {list(_ENTRY_KEYS)}")
    if not isinstance(e["name"], str) or e["role"] not in ROLES or e["dtype"] not in _NP_DTYPES:
        raise bad(f"bad name/role/dtype ({e['name']!r}, {e['role']!r}, {e['dtype']!r})")
    if e["orig_dtype"] is not None and e["orig_dtype"] not in DTYPES:
        raise bad(f"unsupported orig_dtype {e['orig_dtype']!r}")
    shape, offset, nbytes = e["shape"], e["offset"], e["nbytes"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad(f"shape {shape!r} is not a list of non-negative ints")
    if not isinstance(offset, int) or not isinstance(nbytes, int) or offset < 0 or offset + nbytes > raw_len:
        raise bad(f"bytes [{offset}, {offset}+{nbytes}) outside the {raw_len}-byte payload")
    if math.prod(shape) * np.dtype(_NP_DTYPES[e["dtype"]]).itemsize != nbytes:
        raise bad(f"{nbytes} bytes do not fit shape {shape} of {e['dtype']}")


def _tensor_from_payload(raw: bytes, e: dict) -> Tensor:
    count = math.prod(e["shape"])
    arr = np.frombuffer(raw, dtype=_NP_DTYPES[e["dtype"]], count=count, offset=e["offset"])
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)  # native order, writable copy
    t = torch.from_numpy(arr).reshape(e["shape"])
    return t.view(torch.bfloat16) if e["dtype"] == "bfloat16" else t


def read_artifact(path: str | Path) -> tuple[QuantizedState, dict]:
    """Read and verify an artifact; return (QuantizedState, manifest dict).

    Verifies magic, format version, manifest structure, compressed size, sha256 of the compressed payload,
    decompressed size, and every tensor entry. Raises ArtifactError naming the file and the fault.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    manifest, start = _parse_header_and_manifest(path, data)
    blob = data[start:]
    expected = manifest["payload_bytes"]
    if len(blob) < expected:
        raise ArtifactError(f"{path}: truncated: payload has {len(blob)} of {expected} bytes")
    if len(blob) > expected:
        raise ArtifactError(f"{path}: payload size mismatch: {len(blob) - expected} bytes after the {expected}-byte payload")
    if hashlib.sha256(blob).hexdigest() != manifest["payload_sha256"]:
        raise ArtifactError(f"{path}: checksum mismatch: payload sha256 differs from the manifest (corrupt file)")
    try:
        raw = decompress(blob, manifest["codec"])
    except CodecError as exc:
        raise ArtifactError(f"{path}: payload does not decompress: {exc}") from exc
    if len(raw) != manifest["raw_payload_bytes"]:
        raise ArtifactError(
            f"{path}: payload size mismatch: decompressed {len(raw)} bytes, manifest says {manifest['raw_payload_bytes']}")
    if not isinstance(manifest["tensors"], list):
        raise ArtifactError(f"{path}: manifest malformed: 'tensors' is not a list")

    qstate = QuantizedState(scheme=str(manifest["scheme"]), stats=dict(manifest.get("stats") or {}))
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(manifest["tensors"]):
        _check_entry(path, i, e, len(raw))
        name, role = e["name"], e["role"]
        if (name, role) in seen:
            raise ArtifactError(f"{path}: manifest malformed: duplicate {role} entry for tensor {name!r}")
        seen.add((name, role))
        if name not in qstate.names:
            qstate.names.append(name)
        t = _tensor_from_payload(raw, e)
        if role == "quantized":
            qstate.quantized[name] = t
            qstate.dtypes[name] = e["orig_dtype"]
            meta = {"scheme": e["scheme"], "bits": e["bits"], "clip_percentile": e["clip"]}
            qstate.qmeta[name] = {**meta, "axis": e["axis"]} if e["axis"] is not None else meta
        elif role == "scale":
            qstate.scales[name] = t
        else:
            qstate.passthrough[name] = t
            if e["orig_dtype"] is not None:
                qstate.passthrough_orig_dtypes[name] = e["orig_dtype"]
    for name in qstate.quantized:
        if name not in qstate.scales or qstate.dtypes[name] is None:
            raise ArtifactError(f"{path}: manifest malformed: quantized tensor {name!r} lacks a scale or orig_dtype")
    for name in qstate.scales:
        if name not in qstate.quantized or name in qstate.passthrough:
            raise ArtifactError(f"{path}: manifest malformed: tensor {name!r} has inconsistent roles")
    return qstate, manifest


def load_state_dict_from_artifact(path: str | Path) -> dict[str, Tensor]:
    """Read ``path`` and dequantize: name -> tensor in its original dtype, ready for ``load_state_dict``."""
    qstate, _ = read_artifact(path)
    return dequantize_state(qstate)
