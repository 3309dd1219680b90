"""Codecs (zlib-9, zstd-22, lzma-9, lzma-9e, brotli-11), byte shuffle (#38), codec=best and the artifact fields
that record them."""

from __future__ import annotations

import os
import struct

import pytest
import torch
from test_quant import realish_state_dict

from golf.quant.artifact import (
    HEADER_BYTES,
    ArtifactError,
    decode_manifest,
    encode_manifest,
    read_artifact,
    write_artifact,
)
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
from golf.quant.config import QuantConfig
from golf.quant.int8 import dequantize_state, quantize_state_dict

REAL_CODECS = ["zlib", "zstd", "lzma", "lzma_extreme", "brotli"]
SMALL = QuantConfig(keep_float_max_numel=4096)  # official rules, but every matrix below is quantized


def small_state() -> dict[str, torch.Tensor]:
    """A scaled-down official state dict (d=128): quick to compress with brotli-11 / lzma-9e."""
    sd = realish_state_dict()
    return {k: (v[:256, :128] if v.ndim == 2 else v[:128]).clone() for k, v in sd.items()}


@pytest.fixture(scope="module")
def payload() -> bytes:
    """Bytes that look like an artifact payload: int6 codes in int8 containers, fp16 scales, an odd tail."""
    g = torch.Generator().manual_seed(3)
    codes = torch.clamp(torch.round(torch.randn(300, 200, generator=g) * 6), -31, 31).to(torch.int8)
    scales = (torch.rand(300, generator=g) * 0.01).half()
    return codes.numpy().tobytes() + scales.view(torch.int16).numpy().tobytes() + b"\x07\x01\x02"


@pytest.mark.parametrize("codec", REAL_CODECS)
def test_each_codec_round_trips_bit_exactly(codec, payload):
    c = get_codec(codec)
    for level in sorted({c.min_level, c.default_level}):
        blob = compress(payload, codec, level)
        assert decompress(blob, codec) == payload and len(blob) < len(payload)
    assert decompress(compress(b"", codec), codec) == b""
    assert compress(payload, codec) == compress(payload, codec, c.default_level)  # deterministic


def test_codec_defaults_are_the_records_levels():
    assert {n: get_codec(n).default_level for n in REAL_CODECS} == {
        "zlib": 9, "zstd": 22, "lzma": 9, "lzma_extreme": 9, "brotli": 11}
    with pytest.raises(CodecError, match=r"codec 'zstd': level 23 is not an int in \[1, 22\]"):
        compress(b"x", "zstd", 23)
    with pytest.raises(CodecError, match=r"codec 'brotli': level 12"):
        compress(b"x", "brotli", 12)


@pytest.mark.parametrize("codec", REAL_CODECS)
def test_corrupt_or_truncated_stream_is_a_codec_error(codec, payload):
    blob = compress(payload, codec)
    for bad in (blob[: len(blob) // 2], b"\x00garbage" + blob):
        with pytest.raises(CodecError, match=codec.split("_")[0]):
            decompress(bad, codec)


@pytest.mark.parametrize("stride", [0, 1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000, 1001])
def test_byte_shuffle_round_trip(stride, n):
    data = os.urandom(n)
    shuffled = byte_shuffle(data, stride)
    assert len(shuffled) == n and byte_unshuffle(shuffled, stride) == data
    if stride >= 2 and n >= 5:
        assert shuffled == b"".join(data[k::stride] for k in range(stride))


def test_byte_shuffle_separates_fp16_halves(payload):
    # fp16 values: low bytes noisy, high bytes nearly constant -> the shuffle helps on 16-bit data.
    x = (torch.rand(20000, generator=torch.Generator().manual_seed(1)) * 0.01 + 0.01).half()
    raw = x.view(torch.int16).numpy().tobytes()
    assert len(compress(byte_shuffle(raw, 2), "zstd")) < len(compress(raw, "zstd"))


def test_compress_best_keeps_the_smallest(payload):
    cands = best_candidates(0)
    assert {c for c, _, _ in cands} == set(REAL_CODECS) and {s for _, _, s in cands} == {0, 2}
    blob, best, trials = compress_best(payload, cands)
    assert len(trials) == len(cands) and best.compressed_bytes == len(blob) == min(t.compressed_bytes for t in trials)
    assert byte_unshuffle(decompress(blob, best.codec), best.shuffle) == payload


@pytest.mark.parametrize("codec, shuffle", [("zstd", 0), ("lzma", 2), ("brotli", 2), ("lzma_extreme", 0)])
def test_artifact_with_codec_and_shuffle_round_trips(tmp_path, codec, shuffle):
    q = quantize_state_dict(small_state(), SMALL)
    info = write_artifact(tmp_path / "m.golf", q, codec=codec, level=None, byte_shuffle=shuffle)
    back, manifest = read_artifact(tmp_path / "m.golf")
    assert manifest["codec"] == codec and manifest["byte_shuffle"] == shuffle and info.codec == codec
    assert manifest["level"] == get_codec(codec).default_level
    assert all(e["codec"] == codec for e in manifest["tensors"])
    d1, d2 = dequantize_state(q), dequantize_state(back)
    assert all(torch.equal(d1[k], d2[k]) for k in d1)


def test_artifact_codec_best_reports_every_trial(tmp_path):
    q = quantize_state_dict(small_state(), SMALL)
    info = write_artifact(tmp_path / "m.golf", q, codec="best")
    _, manifest = read_artifact(tmp_path / "m.golf")
    trials = info.codec_trials
    assert "codec_trials" not in manifest  # reported, not stored: manifest bytes count against the budget
    assert len(trials) == 10 and info.compressed_bytes == min(t["compressed_bytes"] for t in trials)
    assert manifest["codec"] in REAL_CODECS and manifest["payload_bytes"] == info.compressed_bytes
    zlib_plain = next(t for t in trials if t["codec"] == "zlib" and t["shuffle"] == 0)
    assert zlib_plain["compressed_bytes"] == len(compress(write_raw(q), "zlib", 9))


def write_raw(q) -> bytes:
    from golf.quant.payload import build_payload

    return build_payload(q)[0]


def _rewrite_manifest(data: bytes, edit) -> bytes:
    n = struct.unpack_from("<Q", data, 12)[0]
    manifest = decode_manifest(data[HEADER_BYTES:HEADER_BYTES + n])
    edit(manifest)
    m = encode_manifest(manifest)
    return data[:12] + struct.pack("<Q", len(m)) + m + data[HEADER_BYTES + n:]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["tensors"][0].update(codec="zlib"), "differs from the payload codec"),
    (lambda m: m["tensors"][0].update(packing="nibble"), "unknown packing"),
    (lambda m: m["tensors"][0].update(nbytes=m["tensors"][0]["nbytes"] - 1), "do not fit shape"),
    (lambda m: m.update(byte_shuffle=99), "byte_shuffle 99"),
    (lambda m: m.update(byte_shuffle=0), "checksum mismatch: decompressed payload"),
    (lambda m: m.update(codec="brotli"), "does not decompress"),
    (lambda m: m["tensors"][0].pop("group"), "needs keys"),
])
def test_manifest_faults_are_one_line_artifact_errors(tmp_path, edit, message):
    q = quantize_state_dict(small_state(), SMALL)
    path = tmp_path / "m.golf"
    write_artifact(path, q, codec="zstd", level=None, byte_shuffle=2)
    path.write_bytes(_rewrite_manifest(path.read_bytes(), edit))
    with pytest.raises(ArtifactError, match=message) as err:
        read_artifact(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_export_imports_the_codecs_it_may_use():
    """golf.export_core.payload_codecs: what a submission's trace imports (and so ships) for each quant config."""
    from golf.export_core import payload_codecs
    from golf.quant.config import CODEC_LEVELS, BudgetConfig

    plain = BudgetConfig()
    assert payload_codecs(QuantConfig(codec="zlib"), plain) == {"zlib"}
    assert payload_codecs(QuantConfig(codec="best"), plain) == set(CODEC_LEVELS)
    assert payload_codecs(QuantConfig(codec="pergroup"), plain) == set()
    assert payload_codecs(QuantConfig(codec="pergroup"), BudgetConfig(fit=True)) == {"zstd"}  # fit_codec
    assert payload_codecs(QuantConfig(codec="zlib"), BudgetConfig(fit=True, fit_codec="brotli")) == {"zlib", "brotli"}
