"""The golf artifact: one self-describing file holding a quantized state dict, with no pickle anywhere.

Layout (all integers little-endian)::

    magic            8 bytes   b"GOLFART\\x00"
    format_version   u32       FORMAT_VERSION
    manifest_length  u64       bytes of the manifest that follows
    manifest         JSON, utf-8, compact, zlib-9 compressed
    payload          codec-compressed concatenation of raw little-endian tensor bytes

The manifest holds format_version, created_with ("golf <version>"), scheme, codec, level, byte_shuffle (stride,
0 = off), payload_sha256 (of the COMPRESSED payload),
raw_payload_sha256 (of the decompressed, un-shuffled payload),
payload_bytes (compressed), raw_payload_bytes, config_fingerprint (sha256 of the run config), stats, extra, and a
tensor table: one entry per stored tensor, ``{name, role ("quantized" | "scale" | "passthrough"), shape, dtype,
offset, nbytes, orig_dtype, bits, clip, scheme ("per_row" | "per_tensor"), axis, group, method ("rtn" | "gptq"),
packing ("int8" | "bitpack"), codec}``, where offset/nbytes locate the tensor in the decompressed payload
(golf.quant.payload). Reading validates every field and never unpickles anything.

Payload = byte_unshuffle(decompress(blob, codec), byte_shuffle). Packing of N < 8-bit codes (quant.packing):
``int8`` stores each code q in [-(2^(N-1)-1), 2^(N-1)-1] as one int8 byte; ``bitpack`` stores q + 2^(N-1) - 1
in N bits, LSB first (golf.quant.packing); ``auto`` (default) bit-packs N = 2 and 4 and uses int8 otherwise.
Measured on the trained 4L d256 smoke model (all matrices + embedding, clip=search, codes + scales, bytes after
zlib-9 / zstd-22 / lzma-9 / brotli-11):

    N  int8 containers                          bit-packed
    2  256,786 / 235,685 / 221,420 / 220,056    230,336 / 212,836 / 200,720 / 189,123
    3  665,968 / 614,848 / 609,248 / 564,004    694,513 / 680,708 / 635,508 / 623,912
    4  1,002,182 / 887,310 / 930,672 / 861,075  878,738 / 871,407 / 867,684 / 854,775
    5  1,292,712 / 1,176,315 / 1,195,008 / 1,144,221   1,309,215 / 1,311,386 / 1,291,444 / 1,273,899
    6  1,485,185 / 1,441,333 / 1,436,948 / 1,412,610   1,538,161 / 1,534,970 / 1,529,848 / 1,504,539
    7  1,698,295 / 1,698,566 / 1,699,464 / 1,675,165   1,848,903 / 1,849,261 / 1,847,680 / 1,849,352

Codes of 3, 5, 6, 7 bits straddle byte boundaries when packed and the byte-oriented compressors can no longer
model them, while the constant upper bits of an int8 container cost almost nothing; 2- and 4-bit codes pack
into whole bytes and come out smaller packed.

Budget accounting: the "model bytes" counted against the 16,000,000-byte cap are the WHOLE artifact file size
(header + manifest + compressed payload), i.e. ``ArtifactInfo.file_bytes`` = ``os.path.getsize(path)``. The
official baseline counts its ``torch.save`` + zlib file the same way (train_gpt.py L1086-1092).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import Tensor

from golf.errors import GolfError
from golf.io import StagedFile
from golf.quant.compress import (
    CodecError,
    best_candidates,
    byte_shuffle,
    byte_unshuffle,
    compress,
    compress_best,
    decompress,
    get_codec,
)
from golf.quant.config import BEST_CODEC
from golf.quant.config import PERGROUP_CODEC as PERGROUP
from golf.quant.int8 import DTYPES, QuantizationError, QuantizedState, dequantize_state
from golf.quant.packing import PackingError
from golf.quant.payload import PayloadError, build_payload, entry_fault, tensor_from_payload
from golf.validate import MAX_DEPTH, depth_exceeds

MAGIC = b"GOLFART\x00"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sIQ")
HEADER_BYTES = _HEADER.size  # 20
MAX_MANIFEST_BYTES = 64 * 2**20  # decompressed; a guard against a crafted zlib bomb
MAX_RAW_PAYLOAD_BYTES = 2**32
"""Largest decompressed payload a manifest may declare (4 GiB; the 16 MB challenge needs ~100 MB at most).
Decompression never produces more than the declared size (golf.quant.compress bounded decompressors)."""
_MANIFEST_KEYS = ("format_version", "codec", "level", "byte_shuffle", "scheme", "payload_sha256",
                  "raw_payload_sha256", "payload_bytes", "raw_payload_bytes", "tensors")


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
    codec: str = "zlib"
    level: int | None = 9
    byte_shuffle: int = 0
    codec_trials: list[dict] = field(default_factory=list)
    """codec=best: ``{codec, level, shuffle, compressed_bytes}`` of every candidate tried."""
    streams: list[dict] = field(default_factory=list)
    """codec=pergroup: ``{name, codec, raw_bytes, compressed_bytes}`` of every stream (golf.quant.pergroup)."""


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


def compress_payload(raw: bytes, codec: str, level: int | None, shuffle: int,
                     table: list[dict] | None = None) -> tuple[bytes, str, int | None, int, list[dict]]:
    """(blob, codec, level, shuffle, trials): ``codec`` as given, or for "best" the smallest of every codec at its
    maximum level with and without the byte shuffle; "pergroup" (needs ``table``) returns its streams as trials.
    Raises CodecError for a bad codec or level."""
    if codec == PERGROUP:
        from golf.quant.pergroup import compress_pergroup  # lazy: only codec=pergroup ships it

        blob, streams = compress_pergroup(raw, table or [])
        return blob, PERGROUP, None, 0, [asdict(s) for s in streams]
    if codec == BEST_CODEC:
        blob, best, trials = compress_best(raw, best_candidates(shuffle))
        return blob, best.codec, best.level, best.shuffle, [asdict(t) for t in trials]
    level = get_codec(codec).check_level(level)
    return compress(byte_shuffle(raw, shuffle), codec, level), codec, level, shuffle, []


def build_artifact(
    qstate: QuantizedState,
    codec: str = "zlib",
    level: int | None = 9,
    config: dict | str | None = None,
    extra: dict | None = None,
    byte_shuffle: int = 0,
    name: str | Path = "artifact",
) -> tuple[list[bytes], ArtifactInfo]:
    """The artifact's bytes (header, manifest, payload) and its sizes, without touching the disk.

    Arguments as ``write_artifact``; ``name`` only labels errors and ``ArtifactInfo.path``.
    Raises ArtifactError (unsupported dtype, codes outside their bit range, bad codec/level, non-JSON
    config/extra).
    """
    path = Path(name)
    try:
        raw, table = build_payload(qstate)
        blob, codec, level, byte_shuffle, trials = compress_payload(raw, codec, level, byte_shuffle, table)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_with": f"golf {golf_version()}",
            "scheme": qstate.scheme,
            "codec": codec,
            "level": level,
            "byte_shuffle": byte_shuffle,
            "payload_sha256": hashlib.sha256(blob).hexdigest(),
            "raw_payload_sha256": hashlib.sha256(raw).hexdigest(),
            "payload_bytes": len(blob),
            "raw_payload_bytes": len(raw),
            "config_fingerprint": config_fingerprint(config),
            "stats": dict(qstate.stats),
            "extra": extra if extra is not None else {},
            "tensors": [{**e, "codec": codec} for e in table],
        }
        manifest_bytes = encode_manifest(manifest)
    except (CodecError, PayloadError, PackingError) as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{path}: manifest not JSON-serializable: {exc}") from exc
    chunks = [_HEADER.pack(MAGIC, FORMAT_VERSION, len(manifest_bytes)), manifest_bytes, blob]
    info = ArtifactInfo(path=path, file_bytes=sum(len(c) for c in chunks), payload_bytes=len(raw),
                        compressed_bytes=len(blob), manifest_bytes=len(manifest_bytes), codec=codec, level=level,
                        byte_shuffle=byte_shuffle, codec_trials=[] if codec == PERGROUP else trials,
                        streams=trials if codec == PERGROUP else [])
    return chunks, info


def stage_artifact(path: str | Path, qstate: QuantizedState, **kwargs) -> tuple[StagedFile, ArtifactInfo]:
    """Write the artifact to a temp file beside ``path`` (``StagedFile.tmp``) without replacing ``path``:
    the caller checks it (budget, round-trip) and then ``commit()``s or ``discard()``s it.

    Keyword arguments as ``write_artifact``. Raises ArtifactError, golf.io.OutputError / DiskFullError.
    """
    chunks, info = build_artifact(qstate, name=path, **kwargs)
    staged = StagedFile(path)
    staged.write(chunks)
    return staged, info


def write_artifact(
    path: str | Path,
    qstate: QuantizedState,
    codec: str = "zlib",
    level: int | None = 9,
    config: dict | str | None = None,
    extra: dict | None = None,
    byte_shuffle: int = 0,
) -> ArtifactInfo:
    """Serialize ``qstate`` to ``path`` atomically (golf.io: temp file beside it, fsync, rename).

    ``codec`` is a registered codec or "best" (the smallest of all; every trial's size is returned in
    ``ArtifactInfo.codec_trials``, not stored in the file);
    ``byte_shuffle`` >= 2 byte-transposes the raw payload with that stride first (#38). ``config`` is
    fingerprinted (sha256) into the manifest; ``extra`` (JSON-serializable) is stored verbatim. The output is
    deterministic: the same inputs give byte-identical files, created with the user's umask. Raises
    ArtifactError (unsupported dtype, codes outside their bit range, bad codec/level, non-JSON config/extra),
    golf.io.DiskFullError / OutputError; on any failure an existing file at ``path`` is left untouched and no
    temporary file remains.
    """
    staged, info = stage_artifact(path, qstate, codec=codec, level=level, config=config, extra=extra,
                                  byte_shuffle=byte_shuffle)
    staged.commit()
    return info


def encode_manifest(manifest: dict) -> bytes:
    """Compact JSON (no NaN), zlib-9 compressed: the manifest counts against the budget like the payload."""
    return zlib.compress(json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode("utf-8"), 9)


def decode_manifest(blob: bytes) -> dict:
    """Inverse of ``encode_manifest``; raises zlib.error / UnicodeDecodeError / JSONDecodeError."""
    d = zlib.decompressobj()
    text = d.decompress(blob, MAX_MANIFEST_BYTES)
    if d.unconsumed_tail or not d.eof or d.unused_data:
        raise zlib.error("manifest stream is truncated, too large or followed by extra bytes")
    return json.loads(text.decode("utf-8"))


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
        manifest = decode_manifest(data[HEADER_BYTES:end])
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest malformed: {exc}") from None
    except RecursionError:
        raise ArtifactError(f"{path}: manifest malformed: nesting too deep") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: manifest malformed: top level is {type(manifest).__name__}, not an object")
    if depth_exceeds(manifest):
        raise ArtifactError(f"{path}: manifest malformed: nests deeper than {MAX_DEPTH} levels")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path}: manifest malformed: missing keys {missing}")
    if manifest["format_version"] != version:
        raise ArtifactError(f"{path}: manifest malformed: format_version {manifest['format_version']!r} != header {version}")
    fault = _manifest_type_fault(manifest)
    if fault:
        raise ArtifactError(f"{path}: manifest malformed: {fault}")
    return manifest, end


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _manifest_type_fault(m: dict) -> str | None:
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


def _check_entry(path: Path, i: int, e: object, raw_len: int, codec: str) -> None:
    fault = entry_fault(e, raw_len)
    if fault is None and e["orig_dtype"] is not None and (not isinstance(e["orig_dtype"], str)
                                                        or e["orig_dtype"] not in DTYPES):
        fault = f"unsupported orig_dtype {e['orig_dtype']!r}"
    if fault is None and e["codec"] != codec:
        fault = f"codec {e['codec']!r} differs from the payload codec {codec!r}"
    if fault is not None:
        raise ArtifactError(f"{path}: manifest malformed: tensor entry {i}: {fault}")


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
    shuffle = manifest["byte_shuffle"]
    try:
        if manifest["codec"] == PERGROUP:
            if not isinstance(manifest["tensors"], list) or not all(
                    isinstance(e, dict) and entry_fault(e, 1 << 62) is None for e in manifest["tensors"]):
                raise CodecError("pergroup payload with a malformed tensor table")
            from golf.quant.pergroup import decompress_pergroup  # lazy

            raw = byte_unshuffle(decompress_pergroup(blob, manifest["tensors"]), shuffle)
            if len(raw) > manifest["raw_payload_bytes"]:
                raise CodecError(f"pergroup payload inflates beyond the declared {manifest['raw_payload_bytes']:,} bytes")
        else:
            raw = byte_unshuffle(decompress(blob, manifest["codec"], max_bytes=manifest["raw_payload_bytes"]), shuffle)
    except CodecError as exc:
        raise ArtifactError(f"{path}: payload does not decompress: {exc}") from exc
    if len(raw) != manifest["raw_payload_bytes"]:
        raise ArtifactError(
            f"{path}: payload size mismatch: decompressed {len(raw)} bytes, manifest says {manifest['raw_payload_bytes']}")
    if hashlib.sha256(raw).hexdigest() != manifest["raw_payload_sha256"]:
        raise ArtifactError(f"{path}: checksum mismatch: decompressed payload sha256 differs from the manifest "
                            f"(wrong codec/byte_shuffle in the manifest)")
    for i, e in enumerate(manifest["tensors"]):
        _check_entry(path, i, e, len(raw), manifest["codec"])
    unused = _unused_bytes(manifest["tensors"], len(raw))
    if unused:
        raise ArtifactError(f"{path}: manifest malformed: {unused}")

    qstate = QuantizedState(scheme=str(manifest["scheme"]), stats=dict(manifest.get("stats") or {}))
    seen: set[tuple[str, str]] = set()
    for e in manifest["tensors"]:
        name, role = e["name"], e["role"]
        if (name, role) in seen:
            raise ArtifactError(f"{path}: manifest malformed: duplicate {role} entry for tensor {name!r}")
        seen.add((name, role))
        if name not in qstate.names:
            qstate.names.append(name)
        try:
            t = tensor_from_payload(raw, e)
        except PackingError as exc:
            raise ArtifactError(f"{path}: tensor {name!r}: {exc}") from exc
        if e["group"] is not None:
            qstate.groups[name] = e["group"]
        if role == "quantized":
            qstate.quantized[name] = t
            qstate.dtypes[name] = e["orig_dtype"]
            meta = {"scheme": e["scheme"], "bits": e["bits"], "clip": e["clip"], "method": e["method"],
                    "group": e["group"], "packing": e["packing"]}
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
    for name, q in qstate.quantized.items():
        fault = _quantized_fault(q, qstate.scales[name], qstate.qmeta[name])
        if fault:
            raise ArtifactError(f"{path}: manifest malformed: quantized tensor {name!r}: {fault}")
    return qstate, manifest


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


def dequantized_state(path: str | Path, qstate: QuantizedState) -> dict[str, Tensor]:
    """``dequantize_state`` of an artifact's (validated) tensors; QuantizationError becomes ArtifactError."""
    try:
        return dequantize_state(qstate)
    except QuantizationError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def load_state_dict_from_artifact(path: str | Path) -> dict[str, Tensor]:
    """Read ``path`` and dequantize: name -> tensor in its original dtype, ready for ``load_state_dict``."""
    qstate, _ = read_artifact(path)
    return dequantized_state(path, qstate)
