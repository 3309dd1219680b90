"""Per-row intN (N = 2..8), clip modes (percentile, rowmax, GPTQ-lite search, SDClip), tensor groups, the mixed
scheme's equivalence with the official int8 export, bit packing and the new config keys."""

from __future__ import annotations

import pytest
import torch
from test_quant import odd_state_dict, realish_state_dict

from golf.quant.artifact import read_artifact, write_artifact
from golf.quant.config import BudgetConfig, GroupQuant, QuantConfig, QuantConfigError, QuantGroups
from golf.quant.groups import rule_for, tensor_group
from golf.quant.int8 import dequantize_state, quantize_state_dict, quantize_state_dict_int8
from golf.quant.intn import quantize_rows_tensors
from golf.quant.packing import PackingError, pack_codes, packed_nbytes, qmax_for, unpack_codes


def heavy_tailed(rows: int = 96, cols: int = 160, seed: int = 0) -> torch.Tensor:
    """Student-t rows with per-row spread: outliers make the clip choice matter."""
    g = torch.Generator().manual_seed(seed)
    chi2 = torch.randn(3, rows, cols, generator=g).square().sum(0)
    t3 = torch.randn(rows, cols, generator=g) / (chi2 / 3).sqrt()  # Student-t, 3 degrees of freedom
    return t3 * (0.02 + 0.5 * torch.rand(rows, 1, generator=g))


def mixed(**groups) -> QuantConfig:
    """scheme=mixed with every large-tensor group given ``groups`` fields (patterns kept)."""
    defaults = QuantGroups()
    return QuantConfig(scheme="mixed", groups=QuantGroups(**{
        g: GroupQuant(**{**groups, "patterns": defaults.get(g).patterns}) for g in ("embed", "attn", "mlp", "other")}))


@pytest.mark.parametrize("bits", range(2, 9))
def test_rowmax_round_trip_error_within_half_step(bits):
    w = heavy_tailed(seed=bits)
    rule = GroupQuant(bits=bits, clip="rowmax", scale_floor="none")
    q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
    qmax = qmax_for(bits)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax and s.dtype == torch.float16
    s = s.float()[:, None]
    err = (w - q.float() * s).abs()
    # Codes use the stored fp16 scale; when fp16 rounds the scale down, |w| may exceed qmax * s and is clipped.
    bound = s / 2 + (w.abs() - qmax * s).clamp_min(0) + 1e-7
    assert torch.all(err <= bound)
    assert torch.allclose(s.squeeze(1), (w.abs().amax(1) / qmax).half().float())


@pytest.mark.parametrize("bits", [3, 5, 8])
def test_percentile_clip_matches_official_formula_for_any_bits(bits):
    w = heavy_tailed(seed=1)
    q, s, _ = quantize_rows_tensors(w, GroupQuant(bits=bits, clip="percentile"), torch.float16)
    qmax = qmax_for(bits)
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    s32 = (clip / qmax).clamp_min(1.0 / qmax)
    ref = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / s32[:, None]), -qmax, qmax)
    assert torch.equal(q, ref.to(torch.int8)) and torch.equal(s, s32.half())


@pytest.mark.parametrize("sd_kind", ["realish", "odd"])
def test_mixed_scheme_defaults_reproduce_official_int8_bit_for_bit(sd_kind):
    sd = realish_state_dict() if sd_kind == "realish" else odd_state_dict()
    a = quantize_state_dict_int8(sd, QuantConfig())
    b = quantize_state_dict(sd, QuantConfig(scheme="mixed"))
    assert list(a.quantized) == list(b.quantized) and list(a.passthrough) == list(b.passthrough)
    for name in a.quantized:
        assert torch.equal(a.quantized[name], b.quantized[name]) and torch.equal(a.scales[name], b.scales[name])
        assert a.scales[name].dtype == b.scales[name].dtype
    for name in a.passthrough:
        assert torch.equal(a.passthrough[name], b.passthrough[name])
        assert a.passthrough[name].dtype == b.passthrough[name].dtype
    assert a.qmeta == b.qmeta and a.passthrough_orig_dtypes == b.passthrough_orig_dtypes and a.stats == b.stats


@pytest.mark.parametrize("search", ["matrix", "row"])
@pytest.mark.parametrize("bits", [3, 4, 6, 8])
def test_gptq_lite_search_never_worse_than_rowmax(bits, search):
    for seed, floor in ((1, "qmax"), (2, "auto"), (3, "none")):
        w = heavy_tailed(seed=seed)
        errs = {}
        for clip in ("rowmax", "search"):
            rule = GroupQuant(bits=bits, clip=clip, clip_search=search, scale_floor=floor)
            q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
            errs[clip] = (w - q.float() * s.float()[:, None]).square().sum(dim=1)
        if search == "row":
            assert torch.all(errs["search"] <= errs["rowmax"])
        assert errs["search"].sum() <= errs["rowmax"].sum()
    if bits <= 6:  # heavy tails without the 1/qmax scale floor: clipping below the row max pays off
        assert errs["search"].sum() < 0.999 * errs["rowmax"].sum()


def test_search_labels_and_candidates_recorded():
    sd = {"blocks.0.mlp.fc.weight": heavy_tailed(256, 300, seed=4)}
    q = quantize_state_dict(sd, mixed(bits=4, clip="search"))
    assert q.qmeta["blocks.0.mlp.fc.weight"]["clip"] in {"rowmax", "p99.9", "p99.95", "p99.99", "p99.999"}
    q = quantize_state_dict(sd, mixed(bits=4, clip="search", clip_search="row"))
    label = q.qmeta["blocks.0.mlp.fc.weight"]["clip"]
    assert label.startswith("row:") and sum(int(p.split("=")[1]) for p in label[4:].split(",")) == 256


def test_sdclip_scale_is_k_sigma_over_qmax():
    w = heavy_tailed(seed=5)
    q, s, _ = quantize_rows_tensors(w, GroupQuant(bits=6, clip="std", clip_sigmas=12.85), torch.float16)
    assert torch.equal(s, (12.85 * w.std(dim=1) / 31).clamp_min(1e-10).half())
    assert int(q.abs().max()) <= 31


def test_groups_membership_and_rules():
    sd = realish_state_dict()
    cfg = QuantConfig(scheme="mixed")
    groups = {n: tensor_group(n, t, cfg) for n, t in sd.items()}
    assert groups["tok_emb.weight"] == "embed" and groups["blocks.0.attn.c_q.weight"] == "attn"
    assert groups["blocks.0.mlp.proj.weight"] == "mlp" and groups["blocks.0.attn_scale"] == "small"
    assert tensor_group("x.weight", torch.zeros(300, 300), cfg) == "other"
    assert tensor_group("steps", torch.zeros(10**6, dtype=torch.int64), cfg) == "small"
    cfg = QuantConfig(scheme="mixed", groups=QuantGroups(mlp=GroupQuant(bits=5, patterns=[".mlp."]),
                                                         embed=GroupQuant(passthrough="float16", patterns=["tok_emb"])))
    q = quantize_state_dict(sd, cfg)
    assert q.qmeta["blocks.0.mlp.fc.weight"]["bits"] == 5 and q.qmeta["blocks.0.attn.c_q.weight"]["bits"] == 8
    assert q.passthrough["tok_emb.weight"].dtype == torch.float16 and q.groups["tok_emb.weight"] == "embed"
    assert dequantize_state(q)["tok_emb.weight"].dtype == torch.bfloat16  # original dtype restored
    assert rule_for("tok_emb.weight", sd["tok_emb.weight"], QuantConfig()).clip == "percentile"
    assert rule_for("tok_emb.weight", sd["tok_emb.weight"], QuantConfig(scheme="none")) is None


@pytest.mark.parametrize("bits", range(2, 9))
def test_bit_packing_round_trip(bits):
    qmax = qmax_for(bits)
    q = torch.randint(-qmax, qmax + 1, (33, 17), dtype=torch.int8)
    packed = pack_codes(q, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(q.numel(), bits) == -(-33 * 17 * bits // 8)
    assert torch.equal(unpack_codes(packed, bits, [33, 17]), q)
    with pytest.raises(PackingError, match="outside"):
        pack_codes(torch.tensor([-qmax - 1], dtype=torch.int8), bits)
    with pytest.raises(PackingError, match="packed bytes"):
        unpack_codes(packed[:-1], bits, [33, 17])


@pytest.mark.parametrize("packing", ["int8", "bitpack"])
def test_intn_artifact_round_trip_records_scheme_per_tensor(tmp_path, packing):
    sd = realish_state_dict()
    cfg = QuantConfig(scheme="mixed", packing=packing, codec="zstd", groups=QuantGroups(
        embed=GroupQuant(bits=7, clip="search", patterns=["tok_emb"]), attn=GroupQuant(bits=6, clip="rowmax",
        patterns=[".attn."]), mlp=GroupQuant(bits=5, clip="std", clip_sigmas=10.0, patterns=[".mlp."])))
    q = quantize_state_dict(sd, cfg)
    info = write_artifact(tmp_path / "m.golf", q, codec="zstd", level=None)
    back, manifest = read_artifact(tmp_path / "m.golf")
    assert back.qmeta == q.qmeta and back.groups == q.groups
    for name in q.quantized:
        assert torch.equal(back.quantized[name], q.quantized[name]) and torch.equal(back.scales[name], q.scales[name])
    entries = {(e["name"], e["role"]): e for e in manifest["tensors"]}
    fc = entries[("blocks.0.mlp.fc.weight", "quantized")]
    assert (fc["bits"], fc["clip"], fc["codec"], fc["group"], fc["method"]) == (5, "std10", "zstd", "mlp", "rtn")
    assert fc["shape"] == [1024, 512] and fc["dtype"] == "int8" and fc["packing"] == packing
    assert fc["nbytes"] == (1024 * 512 * 5 // 8 if packing == "bitpack" else 1024 * 512)
    assert entries[("tok_emb.weight", "quantized")]["bits"] == 7
    assert entries[("blocks.0.attn_scale", "passthrough")]["group"] == "small"
    assert info.payload_bytes == q.stats["int8_payload_bytes"] == manifest["raw_payload_bytes"]


def test_config_validation_names_quant_keys():
    cases = [
        (dict(groups=QuantGroups(mlp=GroupQuant(bits=9))), r"quant\.groups\.mlp\.bits=9"),
        (dict(groups=QuantGroups(attn=GroupQuant(clip="mse"))), r"quant\.groups\.attn\.clip='mse'.*'search'"),
        (dict(groups=QuantGroups(embed=GroupQuant(passthrough="fp8"))), r"quant\.groups\.embed\.passthrough"),
        (dict(groups=QuantGroups(other=GroupQuant(method="awq"))), r"quant\.groups\.other\.method='awq'"),
        (dict(groups=QuantGroups(mlp=GroupQuant(clip_candidates=[]))), r"quant\.groups\.mlp\.clip_candidates"),
        (dict(packing="nibble"), r"quant\.packing='nibble'"),
        (dict(byte_shuffle=-1), r"quant\.byte_shuffle=-1"),
        (dict(codec="zstd", level=23), r"quant\.level=23"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            QuantConfig(**kwargs)
    QuantConfig(codec="best", level=None)
    with pytest.raises(QuantConfigError, match=r"budget\.fit_bits"):
        BudgetConfig(fit_bits=[1])
    with pytest.raises(QuantConfigError, match=r"budget\.fit_groups='small'"):
        BudgetConfig(fit_groups=["small"])


def test_auto_packing_bitpacks_byte_aligned_widths_only():
    sd = {"blocks.0.mlp.fc.weight": heavy_tailed(128, 200, seed=6), "blocks.0.attn.c_q.weight": heavy_tailed(128, 200)}
    cfg = QuantConfig(scheme="mixed", groups=QuantGroups(mlp=GroupQuant(bits=4, patterns=[".mlp."]),
                                                         attn=GroupQuant(bits=6, patterns=[".attn."])))
    cfg.keep_float_max_numel = 0
    q = quantize_state_dict(sd, cfg)
    assert q.qmeta["blocks.0.mlp.fc.weight"]["packing"] == "bitpack"
    assert q.qmeta["blocks.0.attn.c_q.weight"]["packing"] == "int8"
    assert q.stats["int8_payload_bytes"] == 128 * 200 // 2 + 128 * 200 + 2 * 128 * 2
