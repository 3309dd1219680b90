"""LQER, the int8 quant gate and per-group compression (2026-04-27 record), against the record's own
gptq_mixed_quantize / dequantize_mixed / _serialize_pergroup on the same state dict and Hessians."""

from __future__ import annotations

import dataclasses
import tempfile

import pytest
import torch
from record_0427 import load_record_module, record_hparams

from golf.quant.artifact import ArtifactError, read_artifact, write_artifact
from golf.quant.config import GPTQConfig, GroupQuant, LQERConfig, QuantConfig, QuantConfigError, QuantGroups
from golf.quant.int8 import dequantize_state, quantize_state_dict
from golf.quant.lqer import SUFFIX_A, SUFFIX_B
from golf.quant.payload import build_payload
from golf.quant.pergroup import ROLES, compress_pergroup, decompress_pergroup, lrzip_available

pytestmark = pytest.mark.usefixtures("one_thread")
D, LAYERS = 384, 1  # the smallest width at which every role matrix is above the record's 65,536 passthrough


def _heavy(gen, *shape, scale=0.02):
    return (torch.distributions.StudentT(4.0).sample(shape) * scale).float()


@pytest.fixture(scope="module")
def case():
    """A state dict with the record's flat names (unbanked), SPD Hessians, and both quantizations."""
    tg = load_record_module("train_gpt")
    torch.manual_seed(0)
    flat = {"tok_emb.weight": _heavy(None, 1024, D)}
    for i in range(LAYERS):
        flat.update({f"blocks.{i}.attn.c_q.weight": _heavy(None, D, D), f"blocks.{i}.attn.c_k.weight": _heavy(None, D // 2, D),
                     f"blocks.{i}.attn.c_v.weight": _heavy(None, D // 2, D), f"blocks.{i}.attn.proj.weight": _heavy(None, D, D),
                     f"blocks.{i}.mlp.fc.weight": _heavy(None, 4 * D, D), f"blocks.{i}.mlp.proj.weight": _heavy(None, D, 4 * D),
                     f"blocks.{i}.attn.attn_gate_w": _heavy(None, 8, 12, scale=0.3), f"blocks.{i}.attn_scale": _heavy(None, D)})
    flat["skip_weights"] = _heavy(None, 1, D)
    hess = {}
    for k, v in flat.items():
        if v.ndim == 2 and v.numel() > 65536:
            x = torch.randn(1024, v.shape[1]) * torch.linspace(0.1, 2.0, v.shape[1])
            hess[k] = x.T @ x / 1024
    h = record_hparams(embed_bits=7, mlp_clip_sigmas=11.5, embed_clip_sigmas=14.0, gated_attn_quant_gate=True)
    res, meta = tg.gptq_mixed_quantize(flat, hess, h)
    cfg = record_quant_config()
    qs = quantize_state_dict(flat, cfg, hess)
    return {"tg": tg, "flat": flat, "hess": hess, "res": res, "meta": meta, "cfg": cfg, "qs": qs}


def record_quant_config(**changes) -> QuantConfig:
    """conf/quant/record_0427.yaml as a QuantConfig (gate pattern: the record's parameter name)."""
    groups = QuantGroups(
        embed=GroupQuant(bits=7, clip="std", clip_sigmas=14.0, method="gptq", patterns=["tok_emb"]),
        attn=GroupQuant(bits=6, clip="std", clip_sigmas=13.0, method="gptq", patterns=[".attn."]),
        mlp=GroupQuant(bits=6, clip="std", clip_sigmas=11.5, method="gptq", patterns=[".mlp."]),
        other=GroupQuant(bits=6, clip="std", clip_sigmas=12.85, method="gptq"),
        small=GroupQuant(passthrough="float16"))
    base = QuantConfig(scheme="mixed", codec="pergroup", keep_float_max_numel=65536, gate_int8=True,
                       gate_patterns=[".attn.attn_gate_w"], groups=groups, gptq=GPTQConfig(),
                       lqer=LQERConfig(enabled=True, rank=4, top_k=3, asym=True, asym_group=64))
    return dataclasses.replace(base, **changes)


def test_gptq_gate_and_lqer_codes_equal_record(case):
    res, meta, qs = case["res"], case["meta"], case["qs"]
    corrected = {n for n, m in meta.items() if "lqer" in m}
    assert set(qs.lqer) == corrected and len(corrected) == 3
    for name in case["flat"]:
        if name + ".q" in res:
            assert torch.equal(qs.quantized[name], res[name + ".q"]), name
            assert torch.equal(qs.scales[name], res[name + ".scale"]), name
        elif name + ".gq" in res:
            assert qs.qmeta[name]["clip"] == "gate_int8"
            assert torch.equal(qs.quantized[name], res[name + ".gq"]) and torch.equal(qs.scales[name], res[name + ".gs"])
        else:
            assert torch.equal(qs.passthrough[name], res[name])
    for name in corrected:
        assert torch.equal(qs.quantized[name + SUFFIX_A], res[name + ".lqA_a"])
        assert torch.equal(qs.scales[name + SUFFIX_A], res[name + ".lqAs_a"])
        assert torch.equal(qs.quantized[name + SUFFIX_B].reshape(res[name + ".lqB_a"].shape), res[name + ".lqB_a"])
        assert torch.equal(qs.scales[name + SUFFIX_B], res[name + ".lqBs_a"])


def test_dequantized_weights_equal_record(case):
    ours = dequantize_state(case["qs"])
    theirs = case["tg"].dequantize_mixed(case["res"], case["meta"], case["flat"])
    assert sorted(ours) == sorted(theirs) == sorted(case["flat"])
    for k in theirs:
        assert torch.equal(ours[k].float(), theirs[k].float()), k


def test_lqer_reduces_error_of_the_corrected_tensors(case):
    without = quantize_state_dict(case["flat"], record_quant_config(lqer=LQERConfig(enabled=False)), case["hess"])
    d_with, d_without = dequantize_state(case["qs"]), dequantize_state(without)
    for name in case["qs"].lqer:
        w = case["flat"][name]
        assert (w - d_with[name]).norm() < 0.97 * (w - d_without[name]).norm(), name
    untouched = next(n for n in without.quantized if n not in case["qs"].lqer)
    assert torch.equal(d_with[untouched], d_without[untouched])


def test_quant_gate_off_keeps_gate_float(case):
    qs = quantize_state_dict(case["flat"], record_quant_config(gate_int8=False, lqer=LQERConfig()), case["hess"])
    assert "blocks.0.attn.attn_gate_w" in qs.passthrough and "blocks.0.attn.attn_gate_w" not in qs.quantized


def test_artifact_round_trip_with_lqer(case, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no lrzip: the brotli fallback keeps the test fast
    info = write_artifact(tmp_path / "m.golf", case["qs"], codec="pergroup")
    assert [s["codec"] for s in info.streams] == ["brotli"] * 9
    qs2, manifest = read_artifact(tmp_path / "m.golf")
    assert manifest["codec"] == "pergroup"
    ours, back = dequantize_state(case["qs"]), dequantize_state(qs2)
    assert all(torch.equal(ours[k], back[k]) for k in ours)


@pytest.mark.parametrize("bad", [dict(scheme="int8", codec="zlib"), dict(lqer=LQERConfig(enabled=True, rank=0))])
def test_lqer_config_errors(bad):
    with pytest.raises(QuantConfigError, match="quant.lqer"):
        record_quant_config(**bad)


def test_pergroup_round_trips_and_sorts_rows(case):
    raw, table = build_payload(case["qs"])
    blob, streams = compress_pergroup(raw, table, use_lrzip=False)
    assert [s.name for s in streams] == [*ROLES, "remainder", "permutations"]
    assert decompress_pergroup(blob, table) == raw
    perms = next(s for s in streams if s.name == "permutations")
    assert perms.raw_bytes == 2 * (1024 + D * LAYERS + 4 * D * LAYERS)  # tok_emb, c_q, fc rows


@pytest.mark.slow
@pytest.mark.skipif(not lrzip_available(), reason="lrzip not installed (apt-get install lrzip)")
def test_pergroup_size_within_half_percent_of_record_serializer(case, tmp_path):
    with tempfile.TemporaryDirectory() as tmp:
        theirs = case["tg"]._serialize_pergroup(case["res"], case["meta"], LAYERS, tmp)
    info = write_artifact(tmp_path / "m.golf", case["qs"], codec="pergroup")
    their_streams = [len(s) for s in case["tg"]._unpack_streams(theirs)]
    assert [s["compressed_bytes"] for s in info.streams[: len(ROLES)]] == their_streams[: len(ROLES)]
    assert abs(info.file_bytes - len(theirs)) <= 0.005 * len(theirs)
    qs2, _ = read_artifact(tmp_path / "m.golf")
    assert all(torch.equal(qs2.quantized[k], case["qs"].quantized[k]) for k in case["qs"].quantized)


@pytest.mark.skipif(not lrzip_available(), reason="lrzip not installed (apt-get install lrzip)")
def test_lrzip_artifact_without_lrzip_fails_in_one_line(case, tmp_path, monkeypatch):
    write_artifact(tmp_path / "m.golf", case["qs"], codec="pergroup")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ArtifactError, match="install lrzip"):
        read_artifact(tmp_path / "m.golf")


@pytest.mark.parametrize("seed", [33, 34])
def test_gptq_codes_equal_record_on_rank_deficient_hessians(seed):
    """Real Hessians are rank deficient (fewer calibration tokens than columns) and ill-conditioned; the damping
    must be computed exactly as the record (mean of the contiguous diagonal, sorted after damping)."""
    tg = load_record_module("train_gpt")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 1536, generator=gen) * torch.rand(1536, generator=gen).square()
    h = x.T @ x / 512
    w = torch.randn(96, 1536, generator=gen) * 0.02
    q_rec, s_rec = tg.gptq_quantize_weight(w, h, clip_sigmas=11.5, clip_range=31)
    from golf.quant.gptq import gptq_quantize

    assert torch.equal(gptq_quantize("w", w, h, s_rec.float(), 31, GPTQConfig()), q_rec)
