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
(golf.quant.payload). Reading validates every field (golf.quant.artifact_checks) and never unpickles anything.

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
from golf.quant.int8 import QuantizationError, QuantizedState, dequantize_state
from golf.quant.packing import PackingError
from golf.quant.payload import PayloadError, build_payload, tensor_from_payload

MAGIC = b"GOLFART\x00"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sIQ")
HEADER_BYTES = _HEADER.size  # 20
MAX_MANIFEST_BYTES = 64 * 2**20  # decompressed; a guard against a crafted zlib bomb


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
        # the codec, level and shuffle used ("best" picks them) get names of their own: the requested ones stay
        # unchanged, so a record's file folds them as constants (golf.record.arguments)
        blob, used_codec, used_level, used_shuffle, trials = compress_payload(raw, codec, level, byte_shuffle, table)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_with": f"golf {golf_version()}",
            "scheme": qstate.scheme,
            "codec": used_codec,
            "level": used_level,
            "byte_shuffle": used_shuffle,
            "payload_sha256": hashlib.sha256(blob).hexdigest(),
            "raw_payload_sha256": hashlib.sha256(raw).hexdigest(),
            "payload_bytes": len(blob),
            "raw_payload_bytes": len(raw),
            "config_fingerprint": config_fingerprint(config),
            "stats": dict(qstate.stats),
            "extra": extra if extra is not None else {},
            "tensors": [{**e, "codec": used_codec} for e in table],
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
                        compressed_bytes=len(blob), manifest_bytes=len(manifest_bytes), codec=used_codec,
                        level=used_level, byte_shuffle=used_shuffle,
                        codec_trials=[] if used_codec == PERGROUP else trials,
                        streams=trials if used_codec == PERGROUP else [])
    return chunks, info


def stage_artifact(
    path: str | Path,
    qstate: QuantizedState,
    codec: str = "zlib",
    level: int | None = 9,
    config: dict | str | None = None,
    extra: dict | None = None,
    byte_shuffle: int = 0,
) -> tuple[StagedFile, ArtifactInfo]:
    """Write the artifact to a temp file beside ``path`` (``StagedFile.tmp``) without replacing ``path``:
    the caller checks it (budget, round-trip) and then ``commit()``s or ``discard()``s it.

    Arguments as ``write_artifact`` (spelled out, not ``**kwargs``: a record's generated file folds the ones its
    config passes as constants, golf.record.arguments). Raises ArtifactError, golf.io.OutputError / DiskFullError.
    """
    chunks, info = build_artifact(qstate, codec=codec, level=level, config=config, extra=extra,
                                  byte_shuffle=byte_shuffle, name=path)
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


def _parse_header_and_manifest(path: Path, data: bytes, verify: bool) -> tuple[dict, int]:
    if verify:
        _check_header(path, data)
    manifest_len = _HEADER.unpack_from(data)[2]
    end = HEADER_BYTES + manifest_len
    try:
        manifest = decode_manifest(data[HEADER_BYTES:end])
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest malformed: {exc}") from None
    except RecursionError:
        raise ArtifactError(f"{path}: manifest malformed: nesting too deep") from None
    if verify:
        from golf.quant.artifact_checks import manifest_fault  # lazy: golf's readers of untrusted files

        fault = manifest_fault(manifest, FORMAT_VERSION)
        if fault:
            raise ArtifactError(f"{path}: manifest malformed: {fault}")
    return manifest, end


def _check_header(path: Path, data: bytes) -> None:
    """Magic, format version and the manifest's length against the file's (ArtifactError naming the fault)."""
    if len(data) < len(MAGIC):
        raise ArtifactError(f"{path}: truncated: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    if data[: len(MAGIC)] != MAGIC:
        raise ArtifactError(f"{path}: bad magic {data[:len(MAGIC)]!r} (expected {MAGIC!r}); not a golf artifact")
    if len(data) < HEADER_BYTES:
        raise ArtifactError(f"{path}: truncated: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    _, version, manifest_len = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported format version {version} (this golf reads {FORMAT_VERSION})")
    if HEADER_BYTES + manifest_len > len(data):
        raise ArtifactError(f"{path}: truncated: manifest needs {manifest_len} bytes, file has {len(data) - HEADER_BYTES}")


def _check_sizes(path: Path, manifest: dict, blob: bytes) -> None:
    """The compressed payload's size against the manifest's (ArtifactError: truncated or trailing bytes)."""
    expected = manifest["payload_bytes"]
    if len(blob) < expected:
        raise ArtifactError(f"{path}: truncated: payload has {len(blob)} of {expected} bytes")
    if len(blob) > expected:
        raise ArtifactError(f"{path}: payload size mismatch: {len(blob) - expected} bytes after the {expected}-byte payload")


def _check_raw(path: Path, manifest: dict, raw: bytes) -> None:
    """The decompressed payload's size and sha256 against the manifest's (a wrong codec or byte_shuffle)."""
    if len(raw) != manifest["raw_payload_bytes"]:
        raise ArtifactError(
            f"{path}: payload size mismatch: decompressed {len(raw)} bytes, manifest says {manifest['raw_payload_bytes']}")
    if hashlib.sha256(raw).hexdigest() != manifest["raw_payload_sha256"]:
        raise ArtifactError(f"{path}: checksum mismatch: decompressed payload sha256 differs from the manifest "
                            f"(wrong codec/byte_shuffle in the manifest)")


def read_artifact(path: str | Path, verify: bool = True) -> tuple[QuantizedState, dict]:
    """Read an artifact; return (QuantizedState, manifest dict). Raises ArtifactError naming the file and fault.

    Always verified: the sha256 of the compressed payload (a file damaged on disk). With `verify` (every golf
    reader: the file may come from anywhere) also the magic, the format version, the compressed and decompressed
    sizes, the decompressed payload's sha256, the manifest's structure, every tensor entry and the roles
    (golf.quant.artifact_checks), so a crafted, truncated or hand-edited file gives one line, never a traceback.
    A record's train_gpt.py reads back only the file it has just written, with the code that wrote it, and
    passes verify=False: it ships the payload checksum, not the structural checks.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if verify:
        from golf.quant.artifact_checks import entries_fault, state_fault, table_is_sound  # lazy: see above
    manifest, start = _parse_header_and_manifest(path, data, verify)
    blob = data[start:]
    if verify:
        _check_sizes(path, manifest, blob)
    if hashlib.sha256(blob).hexdigest() != manifest["payload_sha256"]:
        raise ArtifactError(f"{path}: checksum mismatch: payload sha256 differs from the manifest (corrupt file)")
    shuffle = manifest["byte_shuffle"]
    try:
        if manifest["codec"] == PERGROUP:
            if verify and not table_is_sound(manifest["tensors"]):
                raise CodecError("pergroup payload with a malformed tensor table")
            from golf.quant.pergroup import decompress_pergroup  # lazy

            raw = byte_unshuffle(decompress_pergroup(blob, manifest["tensors"]), shuffle)
            if len(raw) > manifest["raw_payload_bytes"]:
                raise CodecError(f"pergroup payload inflates beyond the declared {manifest['raw_payload_bytes']:,} bytes")
        else:
            raw = byte_unshuffle(decompress(blob, manifest["codec"], max_bytes=manifest["raw_payload_bytes"]), shuffle)
    except CodecError as exc:
        raise ArtifactError(f"{path}: payload does not decompress: {exc}") from exc
    if verify:
        _check_raw(path, manifest, raw)
        fault = entries_fault(manifest["tensors"], len(raw), manifest["codec"])
        if fault:
            raise ArtifactError(f"{path}: manifest malformed: {fault}")

    qstate = QuantizedState(scheme=str(manifest["scheme"]), stats=dict(manifest.get("stats") or {}))
    for e in manifest["tensors"]:
        name, role = e["name"], e["role"]
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
    if verify:
        fault = state_fault(qstate)
        if fault:
            raise ArtifactError(f"{path}: manifest malformed: {fault}")
    return qstate, manifest


def dequantized_state(path: str | Path, qstate: QuantizedState) -> dict[str, Tensor]:
    """``dequantize_state`` of an artifact's (validated) tensors; QuantizationError becomes ArtifactError."""
    try:
        return dequantize_state(qstate)
    except QuantizationError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def load_state_dict_from_artifact(path: str | Path, verify: bool = True) -> dict[str, Tensor]:
    """Read ``path`` and dequantize: name -> tensor in its original dtype, ready for ``load_state_dict``.
    `verify`: as in read_artifact."""
    qstate, _ = read_artifact(path, verify)
    return dequantized_state(path, qstate)
