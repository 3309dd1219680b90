"""Options that make the seed presets match their sources (issue 10): each test fails without its option."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from golf.model import ModelConfig, build_model
from golf.model.layers import ntk_base
from golf.optim.muon import NS_COEFFICIENTS, POLAR_EXPRESS_COEFFS, compiled_zeropower
from golf.quant.config import GroupQuant
from golf.quant.intn import quantize_rows_tensors
from golf.train.averaging import build_averager
from golf.train.config import AveragingConfig

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
pytestmark = pytest.mark.usefixtures("one_thread")


def _seed_text(prefix: str) -> str:
    files = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if not files:
        pytest.skip(f"seed {prefix} not found under {SEEDS}")
    return files[0].read_text(encoding="utf-8")


def _heavy(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) / torch.randn(rows, cols, generator=g).abs().clamp_min(0.3) * 0.02


def test_polar_express_tuples_are_the_ones_seed_001_prints():
    text = _seed_text("001")
    printed = ast.literal_eval(re.search(r"_POLAR_EXPRESS_COEFFS = (\[.*?\])", text, re.S).group(1))
    assert list(NS_COEFFICIENTS["polar_express_seed001"]) == [tuple(t) for t in printed]
    assert list(POLAR_EXPRESS_COEFFS) != [tuple(t) for t in printed]  # the 04-23 full-precision set stays selectable


def test_gptq_lite_per_row_fp32_scale_is_seed_001s_rule():
    """Seed 001 `quantize_float_tensor`: per row, keep the candidate with the least MSE; clip, quantize and judge
    with the fp32 scale (floor 1e-10), store fp16. Reference written from the seed's printed formulas."""
    w = _heavy(64, 200)
    bits, qmax = 6, 31
    best_q = torch.zeros_like(w)
    best_s = torch.zeros(w.size(0))
    best = torch.full((w.size(0),), float("inf"))
    for pct in (0.999, 0.9995, 0.9999, 0.99999, 1.0):
        ca = torch.quantile(w.abs(), pct, dim=1)
        s = (ca / qmax).clamp_min(1e-10)
        q = torch.round(torch.clamp(w, -ca[:, None], ca[:, None]) / s[:, None]).clamp(-qmax, qmax)
        mse = ((w - q * s[:, None]) ** 2).mean(dim=1)
        better = mse < best
        best_q[better], best_s[better], best[better] = q[better], s[better], mse[better]
    rule = GroupQuant(bits=bits, clip="search", clip_search="row", clip_search_scale="fp32")
    rule.validate("t")
    q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
    assert torch.equal(q, best_q.to(torch.int8)) and torch.equal(s, best_s.to(torch.float16))
    stored = GroupQuant(bits=bits, clip="search", clip_search="row")
    q2, _, _ = quantize_rows_tensors(w * 40, stored, torch.float16)
    q3, _, _ = quantize_rows_tensors(w * 40, rule, torch.float16)
    assert not torch.equal(q2, q3)  # the fp16-rounded scale gives other codes: the option matters


def test_nanoforge_tensor_scope_is_the_seed_000_code():
    """Seed 000's code: one 99.99984th-percentile clip of the whole matrix, scale clip / 31, codes in [-31, 31]."""
    text = _seed_text("000")
    assert "torch.quantile(w.abs().flatten(), 0.9999984)" in text
    w = _heavy(96, 300, seed=1)
    clip_abs = torch.quantile(w.abs().flatten(), 0.9999984).item()
    scale = clip_abs / 31.0
    expected = torch.clamp(torch.round(w.clamp(-clip_abs, clip_abs) / scale), -31, 31).to(torch.int8)
    rule = GroupQuant(bits=6, clip="percentile", clip_scope="tensor", scale_floor="none")
    rule.validate("t")
    q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
    assert torch.equal(q, expected)
    assert torch.equal(s, torch.full((96,), scale).to(torch.float16))
    per_row = GroupQuant(bits=6, clip="percentile", scale_floor="none")
    assert not torch.equal(quantize_rows_tensors(w, per_row, torch.float16)[0], expected)


def test_smear_gate_before_bigram_is_seed_001s_trunk_order():
    cfg = ModelConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, smear_gate="v1",
                      smear_gate_before_bigram=True, bigram_buckets=16, bigram_dim=8)
    model = build_model(cfg)
    with torch.no_grad():
        model.bigram.proj.weight.normal_()
        model.smear.gate.normal_()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    x = model.tok_emb(ids)
    gate = torch.sigmoid(-model.smear.gate)  # seed: (1 - gate) x + gate x_prev; golf v1: σ(θ) x + (1 - σ(θ)) x_prev
    x = (1 - gate) * x + gate * F.pad(x[:, :-1], (0, 0, 1, 0))
    x = x + model.bigram(ids)
    expected = F.rms_norm(x, (x.size(-1),))
    torch.testing.assert_close(model.embed(ids), expected, rtol=1e-6, atol=1e-6)
    after = build_model(ModelConfig(**{**cfg.__dict__, "smear_gate_before_bigram": False}))
    after.load_state_dict(model.state_dict())
    assert not torch.allclose(after.embed(ids), expected, atol=1e-4)


def test_ema_and_lawa_compose():
    """averaging=ema_lawa: the result is the mean of the latest k snapshots of the EMA weights."""
    model = nn.Linear(3, 2, bias=False)
    avg = build_averager(AveragingConfig(name="ema_lawa", ema_decay=0.5, lawa_k=2, lawa_every=2))
    avg.on_train_start(model, [])
    ema = model.weight.detach().clone()
    snaps = []
    for step in range(1, 7):
        with torch.no_grad():
            model.weight.add_(float(step))
        ema = 0.5 * ema + 0.5 * model.weight.detach()
        if step % 2 == 0:
            snaps.append(ema.clone())
        avg.on_step_end(step, 1.0, model)
    avg.on_train_end(model)
    torch.testing.assert_close(model.weight.detach(), (snaps[-1] + snaps[-2]) / 2)


def test_ntk_rope_base_of_the_pr374_line():
    assert int(ntk_base(10000.0, 2048, 1024, 16)) == 22081  # 10000 · 2^(16/14)
    assert ntk_base(10000.0, 1024, 1024, 16) == 10000.0
    assert ntk_base(10000.0, 4096, 0, 16) == 10000.0


def test_newton_schulz_is_compiled_on_cuda_as_official():
    from golf.optim.groups import _zeropower_fn

    cpu = [nn.Parameter(torch.zeros(4, 4))]
    assert _zeropower_fn("auto", cpu) is None
    assert _zeropower_fn("on", cpu) is compiled_zeropower()
    assert _zeropower_fn("off", cpu) is None
