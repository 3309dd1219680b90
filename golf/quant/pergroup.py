"""Per-group compression of the artifact payload (``quant.codec=pergroup``).

Source: 2026-04-27 record (PR #1855, ``COMPRESSOR=pergroup``; lineage PR #1586 / #1667 / #1729).

The int8 code matrices of each role are compressed together, one stream per role, in this order::

    tok_emb.weight, attn.c_k.weight, attn.c_q.weight, attn.c_v.weight, attn.proj.weight, mlp.fc.weight,
    mlp.proj.weight

(``blocks.<i>.<role>`` by ascending layer). Rows of the embedding, c_q and fc codes are first reordered by a
greedy L1 nearest-neighbour walk from row 0 (``similarity_order``), then every matrix is written transposed
(column-major), so neighbouring bytes are numerically close. Each role stream is compressed with the system
``lrzip -z -L 9`` (ZPAQ back-end); when ``lrzip`` is not installed, brotli-11 is used instead and a one-line
notice is logged. Everything else in the payload (scales, fp16 passthrough, LQER factors, gate codes) is one
brotli-11 stream (window 2^24) in payload order; the row permutations (uint16) are a last brotli-11 stream.

Blob layout: ``b"GPG1"``, u32 stream count, then per stream ``u8 codec (0 brotli, 1 lrzip, 2 empty), u32
length``, then the streams. Decompression needs the payload's tensor table (the artifact manifest), which
says where every tensor sits, so the raw payload — and its sha256 — is restored exactly.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass

import brotli
import numpy as np
import torch

from golf.quant.compress import CodecError
from golf.quant.config import PERGROUP_CODEC

log = logging.getLogger("golf.quant")

PERGROUP = PERGROUP_CODEC
MAGIC = b"GPG1"
ROLES = ("tok_emb.weight", "attn.c_k.weight", "attn.c_q.weight", "attn.c_v.weight", "attn.proj.weight",
         "mlp.fc.weight", "mlp.proj.weight")
SIMSORT_ROLES = frozenset({"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"})
_CODEC_IDS = {"brotli": 0, "lrzip": 1, "empty": 2}
_CODEC_NAMES = {v: k for k, v in _CODEC_IDS.items()}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_notified = False


def lrzip_available() -> bool:
    """True when the ``lrzip`` program (Debian package lrzip) is on PATH."""
    return shutil.which("lrzip") is not None


def _lrzip(args: list[str], data: bytes, suffix_in: str, suffix_out: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="golf_lrzip_") as tmp:
        src, dst = os.path.join(tmp, "in" + suffix_in), os.path.join(tmp, "out" + suffix_out)
        with open(src, "wb") as f:
            f.write(data)
        proc = subprocess.run(["lrzip", *args, "-o", dst, src], capture_output=True)
        if proc.returncode != 0 or not os.path.isfile(dst):
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise CodecError(f"lrzip {' '.join(args)} failed: {msg[-1] if msg else proc.returncode}")
        with open(dst, "rb") as f:
            return f.read()


def lrzip_compress(data: bytes) -> bytes:
    """``lrzip -z -L 9`` (ZPAQ, level 9) of ``data``. Raises CodecError when lrzip fails."""
    return _lrzip(["-q", "-z", "-L", "9"], data, ".bin", ".lrz")


def lrzip_decompress(data: bytes) -> bytes:
    """Inverse of lrzip_compress. Raises CodecError when lrzip is missing or fails."""
    if not lrzip_available():  # run-time: the lrzip binary
        raise CodecError("this artifact has lrzip-compressed groups; install lrzip (apt-get install lrzip)")
    return _lrzip(["-q", "-d", "-f"], data, ".lrz", ".bin")


def similarity_order(codes: np.ndarray) -> np.ndarray:
    """Greedy L1 nearest-neighbour row order of an int8 matrix [rows, cols]: start at row 0, repeatedly append
    the unused row closest in L1 distance to the last one (lowest index on ties). Returns uint16 [rows].

    Raises CodecError for more than 65,536 rows (permutations are stored as uint16).
    """
    n = codes.shape[0]
    if n > 65536:
        raise CodecError(f"similarity sort of {n} rows: at most 65,536 rows fit uint16 permutations")
    m = torch.from_numpy(codes.astype(np.float32))
    remaining = torch.arange(1, n)
    order = [0]
    cur = m[0]
    for _ in range(n - 1):
        d = (m[remaining] - cur).abs().sum(dim=1)  # exact: small integers in fp32
        j = int(torch.argmin(d))
        best = int(remaining[j])
        order.append(best)
        remaining = torch.cat((remaining[:j], remaining[j + 1:]))
        cur = m[best]
    return np.asarray(order, dtype=np.uint16)


def _role_of(entry: dict) -> tuple[str, int] | None:
    """(role, layer) of a table entry that goes into a role stream, else None."""
    if entry["role"] != "quantized" or entry["dtype"] != "int8" or entry.get("packing") not in (None, "int8") \
            or len(entry["shape"]) != 2:
        return None
    if entry["name"] == "tok_emb.weight":
        return "tok_emb.weight", 0
    m = _BLOCK.match(entry["name"])
    if m and m.group(2) in ROLES:
        return m.group(2), int(m.group(1))
    return None


def _plan(table: list[dict]) -> tuple[dict[str, list[dict]], list[dict]]:
    grouped: dict[str, list[tuple[int, dict]]] = {r: [] for r in ROLES}
    rest = []
    for e in table:
        rl = _role_of(e)
        if rl is None:
            rest.append(e)
        else:
            grouped[rl[0]].append((rl[1], e))
    order = {r: [e for _, e in sorted(v, key=lambda t: t[0])] for r, v in grouped.items()}
    return order, sorted(rest, key=lambda e: e["offset"])


@dataclass
class StreamInfo:
    """One compressed stream of a pergroup blob (reported in export.json)."""

    name: str
    codec: str
    raw_bytes: int
    compressed_bytes: int


def _compress_stream(data: bytes, use_lrzip: bool) -> tuple[str, bytes]:
    if not data:
        return "empty", b""
    if use_lrzip:
        return "lrzip", lrzip_compress(data)
    return "brotli", brotli.compress(data, quality=11, lgwin=24)


def compress_pergroup(raw: bytes, table: list[dict], use_lrzip: bool | None = None) -> tuple[bytes, list[StreamInfo]]:
    """Compress a payload (golf.quant.payload.build_payload output) per role group; see the module docstring.

    ``use_lrzip`` None = lrzip when installed (else brotli with a one-line notice). Returns (blob, streams).
    """
    global _notified
    if use_lrzip is None:
        use_lrzip = lrzip_available()
        if not use_lrzip and not _notified:
            log.warning("pergroup: lrzip not installed (apt-get install lrzip); role groups use brotli-11 instead")
            _notified = True
    groups, rest = _plan(table)
    streams: list[tuple[str, str, bytes, int]] = []
    perms = []
    for role in ROLES:
        parts = []
        for e in groups[role]:
            arr = np.frombuffer(raw, dtype=np.int8, count=e["nbytes"], offset=e["offset"]).reshape(e["shape"])
            if role in SIMSORT_ROLES:
                order = similarity_order(arr)
                perms.append(order.tobytes())
                arr = arr[order]
            parts.append(np.ascontiguousarray(arr.T).tobytes())
        data = b"".join(parts)
        codec, blob = _compress_stream(data, use_lrzip)
        streams.append((role, codec, blob, len(data)))
    rest_raw = b"".join(raw[e["offset"]: e["offset"] + e["nbytes"]] for e in rest)
    streams.append(("remainder", *_compress_stream(rest_raw, False), len(rest_raw)))
    perm_raw = b"".join(perms)
    streams.append(("permutations", *_compress_stream(perm_raw, False), len(perm_raw)))
    header = MAGIC + struct.pack("<I", len(streams))
    header += b"".join(struct.pack("<BI", _CODEC_IDS[c], len(b)) for _, c, b, _ in streams)
    blob = header + b"".join(b for _, _, b, _ in streams)
    return blob, [StreamInfo(n, c, r, len(b)) for n, c, b, r in streams]


def _split(blob: bytes) -> list[tuple[str, bytes]]:
    if blob[:4] != MAGIC or len(blob) < 8:
        raise CodecError("not a pergroup blob (bad magic)")
    (n,) = struct.unpack_from("<I", blob, 4)
    if n != len(ROLES) + 2 or len(blob) < 8 + 5 * n:
        raise CodecError(f"pergroup blob has {n} streams, expected {len(ROLES) + 2}")
    heads = [struct.unpack_from("<BI", blob, 8 + 5 * i) for i in range(n)]
    off, out = 8 + 5 * n, []
    for cid, length in heads:
        if cid not in _CODEC_NAMES or off + length > len(blob):
            raise CodecError("pergroup blob is truncated or names an unknown stream codec")
        out.append((_CODEC_NAMES[cid], blob[off: off + length]))
        off += length
    if off != len(blob):
        raise CodecError(f"pergroup blob has {len(blob) - off} trailing bytes")
    return out


def _decompress_stream(codec: str, data: bytes) -> bytes:
    if codec == "empty":
        return b""
    if codec == "lrzip":
        return lrzip_decompress(data)
    try:
        return brotli.decompress(data)
    except brotli.error as exc:
        raise CodecError(f"pergroup brotli stream does not decompress: {exc}") from None


def decompress_pergroup(blob: bytes, table: list[dict]) -> bytes:
    """Inverse of compress_pergroup given the same tensor table. Raises CodecError on a malformed blob,
    a missing lrzip, or streams that do not fit the table."""
    try:
        return _decompress_pergroup(blob, table)
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"pergroup blob does not fit the tensor table: {exc}") from None


def _decompress_pergroup(blob: bytes, table: list[dict]) -> bytes:
    streams = [_decompress_stream(c, d) for c, d in _split(blob)]
    groups, rest = _plan(table)
    size = max((e["offset"] + e["nbytes"] for e in table), default=0)
    raw = bytearray(size)
    perm_raw, perm_off = streams[-1], 0
    for role, data in zip(ROLES, streams, strict=False):
        off = 0
        for e in groups[role]:
            rows, cols = e["shape"]
            if off + rows * cols > len(data):
                raise CodecError(f"pergroup stream {role} is shorter than its tensors")
            arr = np.frombuffer(data, dtype=np.int8, count=rows * cols, offset=off).reshape(cols, rows).T
            off += rows * cols
            if role in SIMSORT_ROLES:
                perm = np.frombuffer(perm_raw, dtype=np.uint16, count=rows, offset=perm_off).astype(np.int64)
                perm_off += 2 * rows
                restored = np.empty_like(arr)
                restored[perm] = arr
                arr = restored
            raw[e["offset"]: e["offset"] + e["nbytes"]] = np.ascontiguousarray(arr).tobytes()
    rest_raw, off = streams[len(ROLES)], 0
    for e in rest:
        raw[e["offset"]: e["offset"] + e["nbytes"]] = rest_raw[off: off + e["nbytes"]]
        off += e["nbytes"]
    if off != len(rest_raw):
        raise CodecError("pergroup remainder stream does not fit the tensor table")
    return bytes(raw)
