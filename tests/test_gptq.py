"""Full-Hessian GPTQ on real activations: a tiny model trained on FineWeb (tiny_run), calibration batches from its
training shards, layer-output error compared with GPTQ-lite (round to nearest with the searched clip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from golf.quant.config import GPTQConfig, GroupQuant, QuantConfig, QuantGroups
from golf.quant.gptq import GPTQError, calibration_batches, collect_hessians, gptq_quantize, hessian_sources
from golf.quant.int8 import dequantize_state, quantize_state_dict
from golf.quant.intn import quantize_rows_tensors
from golf.quant.packing import qmax_for
from golf.train.load import load_for_eval


@pytest.fixture(scope="module")
def calibrated(tiny_run: Path):
    """(model, state dict, Hessians of every matrix incl. the tied embedding) from 4 train batches."""
    loaded = load_for_eval(tiny_run / "checkpoint.pt", torch.device("cpu"))
    cfg = loaded.run_config
    batches = calibration_batches(cfg.data.train_glob(), 4, 4096, cfg.trainer.train_seq_len,
                                  torch.device("cpu"))
    hessians, seconds = collect_hessians(loaded.model, batches)
    return loaded.model, {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}, hessians, seconds


def output_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """Mean squared layer-output error per token on the calibration data: tr(D H D^T), D = W - W_hat."""
    d = (w - w_hat).double()
    return float(torch.einsum("ij,jk,ik->", d, h.double(), d))


def test_hessians_cover_every_linear_and_the_tied_embedding(calibrated):
    model, state, hessians, seconds = calibrated
    matrices = {n for n, t in state.items() if t.ndim == 2 and n.endswith(".weight")}
    assert set(hessians) == matrices and seconds > 0  # tok_emb via the final-norm output (tied head)
    for name, h in hessians.items():
        cols = state[name].shape[1]
        assert h.shape == (cols, cols) and torch.allclose(h, h.T, atol=1e-5) and torch.all(h.diagonal() >= 0), name
    assert set(hessian_sources(model, {"tok_emb.weight"})) == {"tok_emb.weight"}
    assert not any(h.requires_grad for h in hessians.values())


@pytest.mark.parametrize("bits", [4, 6])
def test_full_gptq_beats_gptq_lite_on_layer_output_error(calibrated, bits):
    _, state, hessians, _ = calibrated
    rule = GroupQuant(bits=bits, clip="search", scale_floor="none")
    lite_total = gptq_total = 0.0
    for name, h in hessians.items():
        w = state[name].float()
        q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
        lite = output_error(w, q.float() * s.float()[:, None], h)
        q_gptq = gptq_quantize(name, w, h, s.float(), qmax_for(bits), GPTQConfig(block_size=32))
        full = output_error(w, q_gptq.float() * s.float()[:, None], h)
        assert full <= lite * 1.001, (name, full, lite)
        lite_total, gptq_total = lite_total + lite, gptq_total + full
    assert gptq_total < 0.9 * lite_total


def test_gptq_with_identity_hessian_is_round_to_nearest():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g)
    rule = GroupQuant(bits=4, clip="rowmax", scale_floor="none")
    q, s, _ = quantize_rows_tensors(w, rule, torch.float16)
    for act_order in (True, False):
        q_gptq = gptq_quantize("w", w, torch.eye(40), s.float(), 7, GPTQConfig(act_order=act_order, block_size=8))
        assert torch.equal(q_gptq, q)  # no off-diagonal curvature: no error to feed forward


def test_dead_columns_are_zero_and_bad_hessians_fail_clearly():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 16, generator=g)
    x[:, 3] = 0.0
    h = x.T @ x / 200
    w = torch.randn(8, 16, generator=g)
    s = (w.abs().amax(1) / 7).half().float()
    assert torch.all(gptq_quantize("w", w, h, s, 7)[:, 3] == 0)
    with pytest.raises(GPTQError, match=r"'w'.*shape \(15, 15\)"):
        gptq_quantize("w", w, h[:15, :15], s, 7)
    with pytest.raises(GPTQError, match="non-finite"):
        gptq_quantize("w", w, h * float("nan"), s, 7)


def test_mixed_scheme_gptq_method_records_and_round_trips(calibrated):
    model, state, hessians, _ = calibrated
    cfg = QuantConfig(scheme="mixed", keep_float_max_numel=4096, gptq=GPTQConfig(block_size=32), groups=QuantGroups(
        embed=GroupQuant(bits=8, clip="std", clip_sigmas=20.0, method="gptq", patterns=["tok_emb"]),
        attn=GroupQuant(bits=6, clip="std", method="gptq", patterns=[".attn."]),
        mlp=GroupQuant(bits=5, clip="std", method="gptq", patterns=[".mlp."])))
    q = quantize_state_dict(state, cfg, hessians)
    methods = {q.qmeta[n]["method"] for n in q.quantized}
    assert methods == {"gptq"} and q.qmeta["tok_emb.weight"]["clip"] == "std20"
    model.load_state_dict(dequantize_state(q))  # loads strictly into the real architecture
    with pytest.raises(ValueError, match="needs calibration Hessians"):
        quantize_state_dict(state, cfg)
