"""The baseline GPT matches the official architecture: parameter count, init and dtype layout."""

from __future__ import annotations

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


def test_attention_falls_back_to_sdpa_without_flash_attn():
    assert resolve_flash_kernel("sdpa") == ("sdpa", None)
    name, _ = resolve_flash_kernel("auto")
    assert name in {"fa3", "fa2", "sdpa"}
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    assert model.blocks[0].attn.backend == name


def test_rope_table_built_during_validation_is_usable_for_training():
    """Regression: validation at step 0 (inference mode) built the RoPE cache as inference tensors and the
    first training step then failed in backward."""
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    x = torch.randint(0, 1024, (2, 16))
    with torch.inference_mode():
        model(x, x)
    model(x, x).backward()
    assert model.blocks[0].attn.c_q.weight.grad is not None
