"""Bad inputs for the fault benchmark and tests: shards, artifacts and checkpoints with one fault each.

Artifacts are re-written through golf's own format pieces with every checksum recomputed, so a fault reaches
the check it targets instead of stopping at the payload hash. Nothing here is used by golf itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golf.data.shards import HEADER_BYTES as SHARD_HEADER_BYTES
from golf.data.shards import HEADER_INTS, SHARD_MAGIC, SHARD_VERSION, write_shard
from golf.quant.artifact import FORMAT_VERSION, HEADER_BYTES, MAGIC, decode_manifest, encode_manifest
from golf.quant.compress import byte_shuffle, byte_unshuffle, compress, decompress

ROOT = Path(__file__).resolve().parents[2]
"""The golf checkout whose entry points (train.py, export.py, eval.py) the cases run."""
SHARED = ROOT.parent / "shared" / "data"
TINY = [
    "experiment=smoke", "logger=none", "model.num_layers=2", "model.model_dim=128", "model.num_heads=4",
    "model.num_kv_heads=2", "trainer.train_seq_len=128", "trainer.train_batch_tokens=8192",
    "schedule.iterations=30", "schedule.warmup_steps=1", "schedule.warmdown_iters=10",
    "eval.batch_tokens=16384", "eval.max_tokens=16384",
]
CLASSES = ("data", "artifact", "checkpoint", "config", "outputs")


@dataclass
class Case:
    """One bad input: run `script args` with GOLF_DATA_DIR=data_root; `watch` directories must not change."""

    cls: str
    name: str
    script: str
    args: list[str]
    data_root: Path
    watch: list[Path]
    check: Callable[[str], str | None] | None = None
    """(stderr) -> a fault description, or None when the case's own expectation holds."""
    around: Callable[[], Callable[[], None]] | None = None
    """Started before the run (e.g. a lock holder); returns the function that stops it."""
    keeps: tuple[str, ...] = ()
    """Glob patterns (relative to the first watched directory) of complete files the failing run may leave,
    e.g. the resume point and log of a training that ran until the disk filled; temp files never qualify."""


# ---------------------------------------------------------------------------------------------- shards
def shard_bytes(tokens, magic: int = SHARD_MAGIC, version: int = SHARD_VERSION, count: int | None = None) -> bytes:
    """Raw shard file bytes with a chosen header (count defaults to len(tokens))."""
    arr = np.asarray(tokens, dtype="<u2")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = magic, version, arr.size if count is None else count
    return header.tobytes() + arr.tobytes()


def write_raw(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def data_root_with(src_root: Path, dst_root: Path, train: dict[str, bytes | None] | None = None,
                   val: dict[str, bytes | None] | None = None) -> Path:
    """A GOLF_DATA_DIR whose tokenizers and shards link to ``src_root``'s, except as given.

    ``train``: None links the source train shards; a dict gives exactly the train files (name -> raw bytes,
    or None for a directory of that name). ``val``: None links the source val shards; a dict replaces the named
    ones (others stay linked).
    """
    src_ds = src_root / "datasets" / "fineweb10B_sp1024"
    ds = dst_root / "datasets" / "fineweb10B_sp1024"
    ds.mkdir(parents=True)
    (dst_root / "tokenizers").symlink_to((src_root / "tokenizers").resolve(), target_is_directory=True)
    for f in sorted(src_ds.glob("fineweb_*.bin")):
        is_train = "_train_" in f.name
        if (is_train and train is None) or (not is_train and (val is None or f.name not in val)):
            (ds / f.name).symlink_to(f.resolve())
    for name, data in {**(train or {}), **(val or {})}.items():
        if data is None:
            (ds / name).mkdir()
        else:
            write_raw(ds / name, data)
    return dst_root


def read_train_tokens(src_root: Path) -> np.ndarray:
    from golf.data.shards import read_shard

    files = sorted((src_root / "datasets" / "fineweb10B_sp1024").glob("fineweb_train_*.bin"))
    return np.concatenate([read_shard(f) for f in files])


def good_shard(tokens: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_shard(path, tokens)
    return path


# ------------------------------------------------------------------------------------------- artifacts
def split_artifact(data: bytes) -> tuple[dict, bytes]:
    """(manifest, raw un-shuffled payload) of a valid artifact."""
    _, _, mlen = struct.unpack_from("<8sIQ", data)
    manifest = decode_manifest(data[HEADER_BYTES:HEADER_BYTES + mlen])
    blob = data[HEADER_BYTES + mlen:]
    raw = byte_unshuffle(decompress(blob, manifest["codec"]), manifest["byte_shuffle"])
    return manifest, raw


def join_artifact(manifest: dict, raw: bytes, blob: bytes | None = None, fix_sizes: bool = True) -> bytes:
    """Artifact bytes for ``manifest`` and ``raw`` with the payload (re)compressed and the hashes recomputed.

    ``blob`` replaces the compressed payload as given; ``fix_sizes=False`` keeps the manifest's declared sizes.
    """
    m = dict(manifest)
    if blob is None:
        blob = compress(byte_shuffle(raw, m["byte_shuffle"]), m["codec"], m.get("level"))
    m["payload_sha256"] = hashlib.sha256(blob).hexdigest()
    m["raw_payload_sha256"] = hashlib.sha256(raw).hexdigest()
    if fix_sizes:
        m["payload_bytes"], m["raw_payload_bytes"] = len(blob), len(raw)
    mb = encode_manifest(m)
    return struct.pack("<8sIQ", MAGIC, FORMAT_VERSION, len(mb)) + mb + blob


def mutate_artifact(src: Path, dst: Path, fn: Callable[[dict, bytes], tuple[dict, bytes]]) -> Path:
    """Write ``dst`` = ``src`` with ``fn(manifest, raw) -> (manifest, raw)`` applied, checksums valid."""
    manifest, raw = split_artifact(src.read_bytes())
    manifest, raw = fn(json.loads(json.dumps(manifest)), raw)
    return write_raw(dst, join_artifact(manifest, raw))


def drop_tensor(manifest: dict, raw: bytes, name: str) -> tuple[dict, bytes]:
    """Remove every entry of tensor ``name`` and its bytes (offsets of later tensors shifted)."""
    gone = sorted((e for e in manifest["tensors"] if e["name"] == name), key=lambda e: e["offset"], reverse=True)
    for e in gone:
        raw = raw[:e["offset"]] + raw[e["offset"] + e["nbytes"]:]
        for o in manifest["tensors"]:
            if o["offset"] > e["offset"]:
                o["offset"] -= e["nbytes"]
    manifest["tensors"] = [e for e in manifest["tensors"] if e["name"] != name]
    return manifest, raw


def add_tensor(manifest: dict, raw: bytes, name: str, values: np.ndarray) -> tuple[dict, bytes]:
    """Append a float32 passthrough tensor ``name``."""
    data = values.astype("<f4").tobytes()
    manifest["tensors"].append({"name": name, "role": "passthrough", "shape": list(values.shape),
                                "dtype": "float32", "offset": len(raw), "nbytes": len(data), "orig_dtype": None,
                                "bits": 32, "clip": None, "scheme": None, "axis": None, "group": None,
                                "method": None, "packing": None, "codec": manifest["codec"]})
    return manifest, raw + data


def bomb_artifact(src: Path, dst: Path, inflated_bytes: int = 1_500_000_000) -> Path:
    """``src``'s manifest over a zstd payload that inflates to ``inflated_bytes`` zeros (declared sizes kept)."""
    import zstandard

    manifest, raw = split_artifact(src.read_bytes())
    cctx = zstandard.ZstdCompressor(level=3)
    chunk = bytes(16 * 2**20)
    co = cctx.compressobj(size=inflated_bytes)
    parts, left = [], inflated_bytes
    while left:
        n = min(left, len(chunk))
        parts.append(co.compress(chunk[:n]))
        left -= n
    parts.append(co.flush())
    blob = b"".join(parts)
    manifest["codec"] = "zstd"
    for e in manifest["tensors"]:
        e["codec"] = "zstd"
    manifest["byte_shuffle"] = 0
    manifest["payload_bytes"] = len(blob)
    return write_raw(dst, join_artifact(manifest, raw, blob=blob, fix_sizes=False))


# ----------------------------------------------------------------------------------------- checkpoints
def mutate_checkpoint(src: Path, dst: Path, fn: Callable[[dict], object]) -> Path:
    """Write ``dst`` = torch.save(fn(payload)) of ``src``'s payload (a plain dict)."""
    payload = torch.load(src, map_location="cpu", weights_only=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fn(payload), dst)
    return dst


def with_config(payload: dict, edit: Callable[[dict], None]) -> dict:
    cfg = json.loads(payload["config_json"])
    edit(cfg)
    payload["config_json"] = json.dumps(cfg)
    return payload


class _RunsCode:
    """Pickles to a call of os.system (what a malicious checkpoint does)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def malicious_checkpoint(src: Path, dst: Path, marker: Path) -> Path:
    """``src``'s payload plus an object whose unpickling would create ``marker``."""
    return mutate_checkpoint(src, dst, lambda p: {**p, "extra": _RunsCode(f"touch {marker}")})


def deep(n: int) -> list:
    out: list = []
    for _ in range(n):
        out = [out]
    return out


__all__ = ["CLASSES", "ROOT", "SHARED", "TINY", "Case", "SHARD_HEADER_BYTES", "add_tensor", "bomb_artifact", "data_root_with", "deep", "drop_tensor",
           "good_shard", "malicious_checkpoint", "mutate_artifact", "mutate_checkpoint", "read_train_tokens",
           "shard_bytes", "split_artifact", "join_artifact", "with_config", "write_raw"]
