"""The baseline GPT matches the official architecture: parameter count, init and dtype layout."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from golf.model import ModelConfig, build_model, count_params
from golf.model.attention import resolve_flash_kernel


def test_baseline_parameter_count_is_official():
    model = build_model(ModelConfig())
    assert count_params(model) == 17_059_912
    assert model.tok_emb.weight.shape == (1024, 512) and model.skip_weights.shape == (4, 512)
    block = model.blocks[0]
    assert block.attn.c_k.weight.shape == (256, 512) and block.mlp.fc.weight.shape == (1024, 512)


def test_baseline_init():
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    assert abs(model.tok_emb.weight.std().item() - 0.005) < 2e-4
    for block in model.blocks:
        assert block.attn.proj.weight.abs().sum() == 0 and block.mlp.proj.weight.abs().sum() == 0
        assert torch.equal(block.attn.q_gain, torch.full((8,), 1.5))
        assert torch.equal(block.resid_mix[0], torch.ones(512)) and torch.equal(block.resid_mix[1], torch.zeros(512))
    assert model.lm_head is None and torch.equal(model.skip_weights, torch.ones(4, 512))


def test_zero_init_output_gives_uniform_start():
    """Output projections are zero, the embedding tiny: the initial loss is close to ln(V)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    x = torch.randint(0, 1024, (2, 32))
    y = torch.randint(0, 1024, (2, 32))
    assert abs(model(x, y).item() - torch.log(torch.tensor(1024.0)).item()) < 0.05
    assert torch.allclose(model.token_losses(x, y).mean(), model(x, y))


def test_softcap_bounds_logits():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1, logit_softcap=2.0))
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000)
    assert model.logits(torch.randint(0, 1024, (1, 8))).abs().max() <= 2.0


def _flash_module(name: str, calls: list) -> types.ModuleType:
    """A stand-in flash-attn package whose flash_attn_func records that it was called."""
    module = types.ModuleType(name)

    def flash_attn_func(q, k, v, causal):
        calls.append(name)
        raise AssertionError("flash kernels must not run on CPU fp32")

    module.flash_attn_func = flash_attn_func
    return module


@pytest.mark.parametrize("installed, expected", [
    (("flash_attn_interface", "flash_attn"), "fa3"),
    (("flash_attn",), "fa2"),
    ((), "sdpa"),
], ids=["fa3_present", "only_fa2", "neither"])
def test_attention_kernel_falls_back_fa3_fa2_sdpa(monkeypatch, installed, expected):
    """FA3 -> FA2 -> SDPA: each branch taken with the packages hidden (None in sys.modules makes the import fail)
    or present (stand-in modules); a model built with a flash kernel still runs SDPA on CPU fp32."""
    calls: list = []
    for name in ("flash_attn_interface", "flash_attn"):
        monkeypatch.setitem(sys.modules, name, _flash_module(name, calls) if name in installed else None)
    name, func = resolve_flash_kernel("auto")
    assert name == expected
    assert func is (None if expected == "sdpa" else sys.modules[{"fa3": "flash_attn_interface",
                                                                  "fa2": "flash_attn"}[expected]].flash_attn_func)
    assert resolve_flash_kernel("sdpa") == ("sdpa", None)
    for explicit, package in (("fa3", "flash_attn_interface"), ("fa2", "flash_attn")):
        if package in installed:
            assert resolve_flash_kernel(explicit)[0] == explicit
        else:
            with pytest.raises(ImportError, match=f"needs the '{package}' package"):
                resolve_flash_kernel(explicit)
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    assert model.blocks[0].attn.backend == expected
    x = torch.randint(0, 1024, (2, 16))
    assert torch.isfinite(model(x, x)) and calls == []


def test_rope_table_built_during_validation_is_usable_for_training():
    """Regression: validation at step 0 (inference mode) built the RoPE cache as inference tensors and the
    first training step then failed in backward."""
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    x = torch.randint(0, 1024, (2, 16))
    with torch.inference_mode():
        model(x, x)
    model(x, x).backward()
    assert model.blocks[0].attn.c_q.weight.grad is not None
