"""Tests for golf.quant: official int8 export fidelity, codecs, the artifact format and the byte budget."""

from __future__ import annotations

import json
import os
import struct
import zlib

import pytest
import torch

from golf.quant.artifact import (
    HEADER_BYTES,
    ArtifactError,
    decode_manifest,
    encode_manifest,
    load_state_dict_from_artifact,
    read_artifact,
    write_artifact,
)
from golf.quant.budget import (
    BudgetExceededError,
    build_budget_report,
    check_budget,
    format_report,
)
from golf.quant.compress import CodecError, compress, decompress
from golf.quant.config import QuantConfig, QuantConfigError
from golf.quant.int8 import dequantize_state, quantize_state_dict, quantize_state_dict_int8

CLIP_Q = 99.99984 / 100.0  # official INT8_CLIP_Q


# ----------------------------------------------------------------------------- fixtures


def _with_outliers(t: torch.Tensor, gen: torch.Generator, n: int = 6, mag: float = 25.0) -> torch.Tensor:
    flat = t.view(-1)
    idx = torch.randint(0, flat.numel(), (n,), generator=gen)
    flat[idx] = mag * torch.sign(torch.randn(n, generator=gen)) * flat[idx].abs().max()
    return t


def realish_state_dict(num_layers: int = 1) -> dict[str, torch.Tensor]:
    """Official-shaped tensors (d=512, GQA kv=256, MLP 1024, vocab 1024): trained-like scales plus outliers."""
    g = torch.Generator().manual_seed(1337)
    sd: dict[str, torch.Tensor] = {"tok_emb.weight": (0.005 * torch.randn(1024, 512, generator=g)).bfloat16()}
    shapes = {"attn.c_q.weight": (512, 512), "attn.c_k.weight": (256, 512), "attn.c_v.weight": (256, 512),
              "attn.proj.weight": (512, 512), "mlp.fc.weight": (1024, 512), "mlp.proj.weight": (512, 1024)}
    for i in range(num_layers):
        for j, (name, shape) in enumerate(shapes.items()):
            std = 1.5 if j % 2 == 0 else 0.02  # above and below the 1/127 scale floor
            sd[f"blocks.{i}.{name}"] = _with_outliers(std * torch.randn(*shape, generator=g), g)
        sd[f"blocks.{i}.attn_scale"] = 1 + 0.1 * torch.randn(512, generator=g)
        sd[f"blocks.{i}.mlp_scale"] = 1 + 0.1 * torch.randn(512, generator=g)
        sd[f"blocks.{i}.resid_mix"] = torch.stack([torch.ones(512), torch.zeros(512)]) + 0.01 * torch.randn(2, 512)
        sd[f"blocks.{i}.attn.q_gain"] = torch.full((8,), 1.5)
    sd["skip_weights"] = torch.ones(1, 512)
    return sd


def odd_state_dict() -> dict[str, torch.Tensor]:
    """Every passthrough/quantization branch: small non-control floats, non-floats, 3-D, empty, 0-dim."""
    g = torch.Generator().manual_seed(7)
    return {
        "norm.bias": torch.randn(512, generator=g),  # small fp32, non-control -> fp16
        "emb_small.weight": torch.randn(64, 64, generator=g).bfloat16(),  # small bf16 -> fp16
        "half.weight": torch.randn(100, generator=g).half(),  # small fp16 -> unchanged
        "double.weight": torch.randn(10, generator=g).double(),  # small fp64 -> unchanged
        "blocks.0.attn_scale": torch.randn(512, generator=g).bfloat16(),  # control bf16 -> fp32
        "step": torch.tensor(12345, dtype=torch.int64),  # 0-dim non-float
        "mask": torch.rand(33, generator=g) > 0.5,
        "tokens": torch.randint(0, 1024, (7, 3), generator=g, dtype=torch.int32),
        "empty": torch.zeros(0, 4),
        "boundary.weight": torch.randn(256, 256, generator=g),  # numel 65,536 -> passthrough
        "wide.weight": _with_outliers(torch.randn(1, 65537, generator=g), g),  # numel 65,537 -> per-row
        "conv.weight": _with_outliers(0.3 * torch.randn(2, 256, 256, generator=g), g),  # 3-D -> per-tensor
    }


@pytest.fixture(scope="module")
def sd() -> dict[str, torch.Tensor]:
    return realish_state_dict()


@pytest.fixture(scope="module")
def qstate(sd):
    return quantize_state_dict_int8(sd, QuantConfig())


# ----------------------------------------------------------------------------- official formula, re-derived


def reference_per_row(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """train_gpt.py quantize_float_tensor, 2-D branch, written row by row."""
    w = w.float()
    qs, scales = [], []
    for row in w:
        clip = torch.quantile(row.abs(), CLIP_Q)
        scale = torch.maximum(clip / 127.0, torch.tensor(1.0 / 127.0))
        clipped = torch.clamp(row, min=-clip, max=clip)
        qs.append(torch.clamp(torch.round(clipped / scale), -127, 127).to(torch.int8))
        scales.append(scale)
    return torch.stack(qs), torch.stack(scales).half()


def reference_per_tensor(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """train_gpt.py quantize_float_tensor, non-2-D branch (no 1/127 floor; scale 1.0 when clip is 0)."""
    w = w.float()
    clip = torch.quantile(w.abs().reshape(-1), CLIP_Q).item()
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0)
    return torch.clamp(torch.round(torch.clamp(w, -clip, clip) / scale), -127, 127).to(torch.int8), scale


def test_per_row_int8_matches_official_formula_bit_for_bit(sd, qstate):
    for name, w in sd.items():
        if w.numel() <= 65536:
            continue
        q_ref, s_ref = reference_per_row(w)
        assert qstate.qmeta[name]["scheme"] == "per_row" and qstate.qmeta[name]["bits"] == 8
        assert qstate.quantized[name].dtype == torch.int8 and qstate.scales[name].dtype == torch.float16
        assert torch.equal(qstate.quantized[name], q_ref), name
        assert torch.equal(qstate.scales[name], s_ref), name
        assert qstate.dtypes[name] == str(w.dtype).removeprefix("torch.")


def test_per_tensor_and_wide_rows_match_official_formula():
    sd = odd_state_dict()
    q = quantize_state_dict_int8(sd, QuantConfig())
    q_ref, s_ref = reference_per_tensor(sd["conv.weight"])
    assert q.qmeta["conv.weight"]["scheme"] == "per_tensor"
    assert torch.equal(q.quantized["conv.weight"], q_ref) and torch.equal(q.scales["conv.weight"], s_ref)
    assert q.scales["conv.weight"].dtype == torch.float32 and q.scales["conv.weight"].ndim == 0
    q_ref, s_ref = reference_per_row(sd["wide.weight"])
    assert torch.equal(q.quantized["wide.weight"], q_ref) and torch.equal(q.scales["wide.weight"], s_ref)


def test_scale_floor_is_one_over_127_for_small_rows(sd, qstate):
    # std 0.02 rows have clip << 1, so the official clamp_min(1/127) fixes their step at 1/127.
    w = sd["blocks.0.attn.c_k.weight"]
    s = qstate.scales["blocks.0.attn.c_k.weight"].float()
    small_rows = w.abs().amax(dim=1) < 1.0  # rows without an injected outlier
    assert small_rows.sum() > 200
    assert torch.all(s[small_rows] == torch.tensor(1 / 127).half().float())
    assert torch.all(qstate.scales["blocks.0.attn.c_q.weight"].float() > 1 / 127)


def test_round_trip_error_is_half_a_step_except_clipped(sd, qstate):
    deq = dequantize_state(qstate)
    for name, w in sd.items():
        if name not in qstate.quantized or w.dtype != torch.float32:
            continue
        clip = torch.quantile(w.abs(), CLIP_Q, dim=1)[:, None]
        s32 = (clip / 127.0).clamp_min(1 / 127)
        s16 = qstate.scales[name].float()[:, None]
        err = (w - deq[name]).abs()
        # q uses the fp32 scale; the stored scale is fp16, so 127 steps can drift by |s32 - s16| each.
        bound = s32 / 2 + 127 * (s32 - s16).abs() + 1e-6 * w.abs()
        clipped = w.abs() > clip
        assert torch.all(err[~clipped] <= bound.expand_as(w)[~clipped]), name
        assert torch.all(err[clipped] <= (w.abs() - clip + bound).expand_as(w)[clipped]), name
        assert clipped.any(), "fixture outliers should exercise clipping"


def test_passthrough_rules():
    sd = odd_state_dict()
    q = quantize_state_dict_int8(sd, QuantConfig())
    pt, orig = q.passthrough, q.passthrough_orig_dtypes
    assert pt["blocks.0.attn_scale"].dtype == torch.float32 and "blocks.0.attn_scale" not in orig
    assert pt["norm.bias"].dtype == torch.float16 and orig["norm.bias"] == "float32"
    assert pt["emb_small.weight"].dtype == torch.float16 and orig["emb_small.weight"] == "bfloat16"
    assert pt["boundary.weight"].dtype == torch.float16  # numel == 65,536 stays float
    assert pt["half.weight"].dtype == torch.float16 and "half.weight" not in orig
    assert pt["double.weight"].dtype == torch.float64
    for name in ("step", "mask", "tokens"):
        assert torch.equal(pt[name], sd[name]) and pt[name].dtype == sd[name].dtype
    assert set(q.quantized) == {"wide.weight", "conv.weight"}
    deq = dequantize_state(q)
    assert list(deq) == list(sd)  # state-dict order kept
    assert deq["norm.bias"].dtype == torch.float32 and torch.equal(deq["norm.bias"], sd["norm.bias"].half().float())
    assert deq["emb_small.weight"].dtype == torch.bfloat16
    assert deq["blocks.0.attn_scale"].dtype == torch.float32  # official: control tensors come back fp32
    assert torch.equal(deq["blocks.0.attn_scale"], sd["blocks.0.attn_scale"].float())


def test_control_tensors_in_official_model_stay_fp32_exact(sd, qstate):
    for name in ("blocks.0.attn_scale", "blocks.0.mlp_scale", "blocks.0.resid_mix", "blocks.0.attn.q_gain",
                 "skip_weights"):
        assert qstate.passthrough[name].dtype == torch.float32 and torch.equal(qstate.passthrough[name], sd[name])


def test_official_baseline_payload_bytes():
    # Baseline log: "payload:17178912" for 9 layers, d=512, vocab 1024, tied bf16 embedding.
    block = {k.removeprefix("blocks.0."): v for k, v in realish_state_dict().items() if k.startswith("blocks.0.")}
    sd = {"tok_emb.weight": torch.zeros(1024, 512, dtype=torch.bfloat16)}
    for i in range(9):
        sd.update({f"blocks.{i}.{k}": torch.zeros_like(v) for k, v in block.items()})
    sd["skip_weights"] = torch.ones(4, 512)
    q = quantize_state_dict_int8(sd, QuantConfig())
    assert q.stats["param_count"] == 17_059_912
    assert q.stats["int8_payload_bytes"] == q.payload_nbytes() == 17_178_912


def test_scheme_none_is_exact_passthrough(sd):
    q = quantize_state_dict(sd, QuantConfig(scheme="none"))
    deq = dequantize_state(q)
    assert all(torch.equal(deq[k], v) and deq[k].dtype == v.dtype for k, v in sd.items())


def test_config_validation_names_key_and_allowed():
    with pytest.raises(QuantConfigError, match=r"quant\.scheme='int3'.*'int8'"):
        QuantConfig(scheme="int3")
    with pytest.raises(QuantConfigError, match=r"quant\.codec='zip'.*'zlib'"):
        QuantConfig(codec="zip")
    with pytest.raises(QuantConfigError, match=r"quant\.level=12 is not an int in \[-1, 9\]"):
        QuantConfig(level=12)


# ----------------------------------------------------------------------------- codecs


def test_zlib_round_trip_and_corruption():
    data = bytes(range(256)) * 200
    blob = compress(data, "zlib", 9)
    assert blob == zlib.compress(data, 9) and decompress(blob, "zlib") == data
    assert decompress(compress(data, "none"), "none") == data
    with pytest.raises(CodecError, match="zlib"):
        decompress(blob[: len(blob) // 2], "zlib")
    with pytest.raises(CodecError, match="zlib"):
        decompress(b"\x00garbage" + blob, "zlib")
    with pytest.raises(CodecError, match="unknown codec 'zstd9'"):
        compress(data, "zstd9")


# ----------------------------------------------------------------------------- artifact


def _assert_same_state(a, b):
    assert a.scheme == b.scheme and a.names == b.names and a.dtypes == b.dtypes
    assert a.passthrough_orig_dtypes == b.passthrough_orig_dtypes and a.qmeta == b.qmeta and a.stats == b.stats
    for field in ("quantized", "scales", "passthrough"):
        x, y = getattr(a, field), getattr(b, field)
        assert list(x) == list(y)
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and torch.equal(x[k], y[k]), (field, k)


@pytest.mark.parametrize("which", ["realish", "odd", "none"])
def test_artifact_round_trip_bit_exact(tmp_path, sd, qstate, which):
    q = {"realish": qstate, "odd": quantize_state_dict_int8(odd_state_dict(), QuantConfig()),
         "none": quantize_state_dict(odd_state_dict(), QuantConfig(scheme="none"))}[which]
    path = tmp_path / "model.golf"
    info = write_artifact(path, q, codec="zlib", level=9, config={"model": {"d": 512}}, extra={"run": "t"})
    assert info.file_bytes == os.path.getsize(path) == HEADER_BYTES + info.manifest_bytes + info.compressed_bytes
    assert info.payload_bytes == q.payload_nbytes()
    back, manifest = read_artifact(path)
    _assert_same_state(q, back)
    assert manifest["created_with"].startswith("golf ") and manifest["extra"] == {"run": "t"}
    assert len(manifest["config_fingerprint"]) == 64
    d1, d2 = dequantize_state(q), load_state_dict_from_artifact(path)
    assert all(torch.equal(d1[k], d2[k]) and d1[k].dtype == d2[k].dtype for k in d1)
    # deterministic bytes: writing again gives the identical file
    write_artifact(tmp_path / "again.golf", q, config={"model": {"d": 512}}, extra={"run": "t"})
    assert (tmp_path / "again.golf").read_bytes() == path.read_bytes()


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("art") / "ok.golf"
    write_artifact(path, quantize_state_dict_int8(odd_state_dict(), QuantConfig()))
    return path.read_bytes()


def _manifest_len(data: bytes) -> int:
    return struct.unpack_from("<Q", data, 12)[0]


def _corrupt(data: bytes, how: str) -> bytes:
    end = HEADER_BYTES + _manifest_len(data)
    if how == "bad magic":
        return b"PK\x03\x04" + data[4:]
    if how == "truncated header":
        return data[:10]
    if how == "truncated manifest":
        return data[: HEADER_BYTES + 50]
    if how == "truncated payload":
        return data[: len(data) - 100]
    if how == "flipped payload byte":
        i = end + (len(data) - end) // 2
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    if how == "bad version":
        return data[:8] + struct.pack("<I", 99) + data[12:]
    if how == "malformed manifest":
        return data[:HEADER_BYTES] + b"{" * _manifest_len(data) + data[end:]
    if how == "manifest not an object":
        m = encode_manifest([1, 2])  # a valid zlib + JSON stream of the wrong type
        return data[:12] + struct.pack("<Q", len(m)) + m + data[end:]
    if how == "trailing bytes":
        return data + b"\x00" * 3
    if how == "wrong raw size":
        manifest = decode_manifest(data[HEADER_BYTES:end])
        manifest["raw_payload_bytes"] += 1
        m = encode_manifest(manifest)
        return data[:12] + struct.pack("<Q", len(m)) + m + data[end:]
    raise AssertionError(how)


@pytest.mark.parametrize("how, message", [
    ("bad magic", "bad magic"),
    ("truncated header", "truncated"),
    ("truncated manifest", "truncated"),
    ("truncated payload", "truncated"),
    ("flipped payload byte", "checksum mismatch"),
    ("bad version", "unsupported format version 99"),
    ("malformed manifest", "manifest malformed"),
    ("manifest not an object", "manifest malformed: top level is list"),
    ("trailing bytes", "payload size mismatch"),
    ("wrong raw size", "payload size mismatch"),
])
def test_artifact_failure_modes_name_file_and_fault(tmp_path, small_artifact, how, message):
    path = tmp_path / "broken.golf"
    path.write_bytes(_corrupt(small_artifact, how))
    with pytest.raises(ArtifactError, match=message) as err:
        read_artifact(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_failed_write_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "model.golf"
    write_artifact(path, quantize_state_dict_int8(odd_state_dict(), QuantConfig()))
    before = path.read_bytes()
    bad = quantize_state_dict(odd_state_dict(), QuantConfig(scheme="none"))
    bad.passthrough["mask"] = torch.zeros(3, dtype=torch.complex64)
    with pytest.raises(ArtifactError, match=r"model.golf.*'mask'.*complex64"):
        write_artifact(path, bad)
    with pytest.raises(ArtifactError, match="not JSON-serializable"):
        write_artifact(path, bad.__class__(scheme="none"), extra={"x": object()})

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_artifact(path, quantize_state_dict(odd_state_dict(), QuantConfig(scheme="none")))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.golf"]  # no temporary file left behind


# ----------------------------------------------------------------------------- budget


def test_budget_report_totals_and_exceeded(tmp_path, qstate):
    info = write_artifact(tmp_path / "m.golf", qstate)
    code_bytes, files = 1200, [("train_gpt.py", 1200)]
    report = build_budget_report(qstate, info, code_bytes, files, target_bytes=16_000_000)
    assert report.artifact_bytes == os.path.getsize(tmp_path / "m.golf")
    assert report.total_bytes == report.artifact_bytes + report.code_bytes == report.artifact_bytes + 1200
    assert report.headroom_bytes == 16_000_000 - report.total_bytes and report.fits
    assert sum(r.raw_bytes for r in report.rows) == report.payload_raw_bytes == qstate.stats["int8_payload_bytes"]
    kinds = {r.name: r.kind for r in report.rows}
    assert kinds["tok_emb.weight"] == "int8" and kinds["blocks.0.attn_scale"] == "passthrough"
    json.dumps(report.to_dict())
    text = format_report(report)
    assert "raw utf-8 bytes of 1 file" in text and "whole file" in text and "fits" in text
    check_budget(report)

    tight = build_budget_report(qstate, info, code_bytes, files, target_bytes=report.total_bytes - 5)
    assert not tight.fits and tight.headroom_bytes == -5
    with pytest.raises(BudgetExceededError, match=rf"{tight.total_bytes:,}.*{tight.target_bytes:,}.*by 5 bytes"):
        check_budget(tight)
    assert "OVER BUDGET" in format_report(tight, show_tensors=False)


