"""Read the records of an offline W&B run file (`wandb/offline-run-*/run-*.wandb`) without a W&B server.

The file is W&B's transaction log: a 7-byte header (b":W&B", u16 magic 0xBEE1, u8 version 0) followed by the
LevelDB log format — 32 KiB blocks of chunks, each chunk a 7-byte header (u32 CRC, u16 length, u8 type:
1 full, 2 first, 3 middle, 4 last) and its bytes; a block tail shorter than a header is zero padding.
Each reassembled record is a `wandb.proto.wandb_internal_pb2.Record`. (wandb >= 0.20 no longer ships a
Python reader; this is the format its Go core writes.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """The file is not a W&B transaction log or is corrupt; the message names the file."""


def iter_records(path: str | Path) -> Iterator[wandb_internal_pb2.Record]:
    """Yield every record of the run file in order. Raises WandbFileError on a bad header or chunk."""
    data = Path(path).read_bytes()
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0) if len(data) >= 7 else (b"", 0, 0)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise WandbFileError(f"{path}: not a W&B offline run file (bad header)")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK_HEADER.size:  # zero padding at the end of a block
            pos += room
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # trailing zeros of a block that was never filled
            pos += room
            continue
        start = pos + _CHUNK_HEADER.size
        chunk = data[start:start + length]
        if len(chunk) != length or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            raise WandbFileError(f"{path}: corrupt chunk at byte {pos}")
        pos = start + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def run_file(run_dir: str | Path) -> Path:
    """The single offline .wandb file under <run_dir>/wandb/. Raises FileNotFoundError naming the folder."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run under {run_dir}/wandb")
    return files[-1]


def summary_of(path: str | Path) -> dict:
    """Final summary values (JSON-decoded) from the run file's summary records."""
    import json

    out: dict = {}
    for record in iter_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                out[key] = json.loads(item.value_json)
    return out


def run_info(path: str | Path) -> dict:
    """Group, job_type, tags, display name and config (flat key -> JSON value) of the run."""
    import json

    info: dict = {"config": {}}
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(group=record.run.run_group, job_type=record.run.job_type, tags=list(record.run.tags),
                        name=record.run.display_name, run_id=record.run.run_id)
            for item in record.run.config.update:
                info["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                info["config"][item.key] = json.loads(item.value_json)
    return info
