"""Architecture options of issue 3: each changes the computation exactly as its record describes, and the
defaults stay bit-identical to the frozen baseline. Training on FineWeb: test_model_options_train.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from baseline_reference import ReferenceGPT

from golf.model import (
    ModelConfig,
    ModelConfigError,
    build_model,
    count_params,
    count_params_for,
    declared_scalar_params,
)
from golf.model.attention import exclusive_self_attention
from golf.model.embeddings import bigram_hash_mul, bigram_hash_xor
from golf.model.layers import Rotary, apply_rotary_emb, rms_norm
from golf.model.recurrence import layer_schedules
from golf.optim import OptimConfig, build_optimizers, split_params

V = 1024


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> ModelConfig:
    base = dict(vocab_size=V, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2)
    return ModelConfig(**{**base, **overrides})


def make(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg)


def ids(batch: int = 2, seq: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, V, (batch, seq), generator=g)


def randomize(model: torch.nn.Module, seed: int = 3) -> None:
    """Give every parameter non-trivial values (zero-init projections would hide most differences)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim < 2 else 0.0))


# --- defaults ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [True, False])
def test_defaults_are_bit_identical_to_frozen_baseline(tie):
    cfg = tiny(tie_embeddings=tie)
    torch.manual_seed(0)
    ref = ReferenceGPT(cfg)
    new = make(cfg, 0)
    sr, sn = ref.state_dict(), new.state_dict()
    assert list(sr) == list(sn)
    assert all(torch.equal(sr[k], sn[k]) for k in sr)  # same RNG draws in the same order
    randomize(ref)
    new.load_state_dict(ref.state_dict())
    x, y = ids(), ids(seed=2)
    assert torch.equal(ref.logits(x), new.logits(x))
    assert torch.equal(ref(x, y), new(x, y))


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(smear_gate="v3"), "model.smear_gate"),
    (dict(smear_gate_width=0), "model.smear_gate_width"),
    (dict(bos_id=V), "model.bos_id"),
    (dict(bigram_hash="crc"), "model.bigram_hash"),
    (dict(bigram_buckets=-1), "model.bigram_buckets"),
    (dict(value_embed_dim=8), "model.value_embed_layers"),
    (dict(value_embed_dim=8, value_embed_layers=[4]), "model.value_embed_layers"),
    (dict(value_embed_layers=[1]), "model.value_embed_layers"),
    (dict(embed_dim=16, tie_embeddings=False), "model.embed_dim"),
    (dict(ortho_init="xavier"), "model.ortho_init"),
    (dict(mlp_activation="gelu"), "model.mlp_activation"),
    (dict(rope_dims=3), "model.rope_dims"),
    (dict(rope_dims=32), "model.rope_dims"),
    (dict(xsa_last_n=5), "model.xsa_last_n"),
    (dict(attn_gate="sigmoid"), "model.attn_gate"),
    (dict(skip_placement="middle"), "model.skip_placement"),
    (dict(num_loops=1, loop_start=2, loop_end=4), "model.loop_start"),
    (dict(num_loops=1, loop_start=3, loop_end=2), "model.loop_start"),
    (dict(block_repeats=2, num_loops=1, loop_end=1), "model.block_repeats"),
    (dict(enable_looping_at=0.5), "model.enable_looping_at"),
    (dict(num_loops=1, loop_start=1, loop_end=2, enable_looping_at=1.0), "model.enable_looping_at"),
    (dict(parallel_start_layer=4), "model.parallel_start_layer"),
    (dict(num_loops=1, loop_start=1, loop_end=2, parallel_start_layer=2), "model.parallel_start_layer"),
    (dict(parallel_start_layer=2, parallel_final_lane="sum"), "model.parallel_final_lane"),
])
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ModelConfigError, match=key.replace(".", r"\.")):
        tiny(**overrides)


# --- embedding side -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("after_norm", [False, True])
def test_smear_gate_v1_formula_at_init(after_norm):
    model = make(tiny(smear_gate="v1", smear_gate_after_norm=after_norm))
    x = ids()
    e = model.tok_emb(x)
    g = torch.sigmoid(torch.tensor(3.0))
    assert torch.allclose(torch.sigmoid(model.smear.gate), torch.full((64,), 0.9526), atol=1e-4)

    def smear(t):
        return g * t + (1 - g) * torch.cat((torch.zeros_like(t[:, :1]), t[:, :-1]), dim=1)

    expected = smear(rms_norm(e)) if after_norm else rms_norm(smear(e))
    assert torch.allclose(model.embed(x), expected, atol=1e-6)


def test_smear_gate_v2_is_identity_at_init_and_never_leaks_across_bos():
    cfg = tiny(smear_gate="v2", smear_gate_width=8, bos_id=1)
    model = make(cfg)
    x = ids()
    assert torch.equal(model.embed(x), rms_norm(model.tok_emb(x)))  # λ = 0, W = 0
    with torch.no_grad():
        model.smear.lam.fill_(1.0)
        model.smear.proj.weight.normal_()
    x[:, 7] = 1  # BOS at position 7 starts a new document
    before = model.embed(x)
    leak = x.clone()
    leak[:, 6] = (leak[:, 6] + 5) % V  # last token of the previous document
    after = model.embed(leak)
    assert torch.equal(after[:, 7], before[:, 7])  # BOS embedding untouched by the previous document
    assert not torch.allclose(after[:, 6], before[:, 6])
    inside = x.clone()
    inside[:, 3] = (inside[:, 3] + 5) % V  # inside a document the previous token does flow in
    assert not torch.allclose(model.embed(inside)[:, 4], before[:, 4])
    e = model.tok_emb(x)
    gate = torch.sigmoid(e[:, 1:, :8] @ model.smear.proj.weight.T)
    manual = torch.cat((e[:, :1], e[:, 1:] + gate * e[:, :-1] * (x[:, 1:] != 1).unsqueeze(-1)), dim=1)
    assert torch.allclose(before, rms_norm(manual), atol=1e-6)


def test_bigram_hash_functions_match_records():
    x = torch.tensor([[5, 7, 1000, 3]])
    assert bigram_hash_mul(x, 4096).tolist() == [[5, (5 * 92821 + 7) % 4096, (7 * 92821 + 1000) % 4096,
                                                  (1000 * 92821 + 3) % 4096]]
    assert bigram_hash_xor(x, 2048).tolist() == [[2047, ((36313 * 7) ^ (27191 * 5)) % 2047,
                                                  ((36313 * 1000) ^ (27191 * 7)) % 2047,
                                                  ((36313 * 3) ^ (27191 * 1000)) % 2047]]
    full = torch.randint(0, V, (4, 64))
    assert int(bigram_hash_xor(full, 2048).max()) < 2048 and int(bigram_hash_mul(full, 4096).min()) >= 0


def test_bigram_variants_params_init_and_routing():
    mul = make(tiny(bigram_buckets=256, bigram_dim=32, bigram_hash="mul"))
    xor = make(tiny(bigram_buckets=256, bigram_dim=32, bigram_hash="xor"))
    base = count_params_for(tiny())
    assert count_params(mul) == base + 256 * 32 + 32 * 64
    assert count_params(xor) == base + 256 * 32 + 32 * 64 + 1
    x = ids()
    assert torch.equal(mul.bigram(x), torch.zeros(2, 16, 64)) and torch.equal(xor.bigram(x), torch.zeros(2, 16, 64))
    assert 0.005 < mul.bigram.table.weight.std() < 0.015 and xor.bigram.scale.item() == pytest.approx(0.05)
    with torch.no_grad():
        mul.bigram.proj.weight.normal_()
    assert not torch.allclose(mul.embed(x), rms_norm(mul.tok_emb(x)))  # the pair term reaches the stream
    groups = {g: [n for n, _ in v] for g, v in split_params(xor, OptimConfig()).items()}
    assert "bigram.table.weight" in groups["embed"] and "bigram.proj.weight" in groups["matrix"]
    assert "bigram.scale" in groups["scalar"]
    # PR #162 OrthoInit rewrites the constructor-zeroed xor projection (dims >= 64), scaled by 1/sqrt(2L)
    ortho = make(tiny(model_dim=128, bigram_buckets=256, bigram_dim=64, bigram_hash="xor", ortho_init="pr162"))
    w = ortho.bigram.proj.weight * math.sqrt(2 * 4)
    assert torch.allclose(w.T @ w, torch.eye(64), atol=1e-5)
    protected = make(tiny(model_dim=128, bigram_buckets=256, bigram_dim=64, bigram_hash="mul", ortho_init="pr65"))
    assert torch.equal(protected.bigram.proj.weight, torch.zeros(128, 64))  # PR #65 keeps it zero


def test_value_embedding_params_and_injection_layers():
    cfg = tiny(value_embed_dim=16, value_embed_layers=[1, 3])
    model = make(cfg)
    assert count_params(model) == count_params_for(tiny()) + V * 16 + 16 * 32 + 1 + 2
    assert model.value_embed.scale.item() == pytest.approx(0.1)
    seen = {}
    for i, block in enumerate(model.blocks):
        block.attn.register_forward_pre_hook(
            lambda mod, args, i=i: seen.__setitem__(i, args[1] is not None if len(args) > 1 else False))
    randomize(model)
    x = ids()
    model.logits(x)
    assert seen == {0: False, 1: True, 2: False, 3: True}
    before = model.logits(x)
    with torch.no_grad():
        model.value_embed.layer_scales[1].zero_()
        model.value_embed.layer_scales[0].zero_()
    assert not torch.allclose(model.logits(x), before)  # removing the VE term changes the output
    groups = {g: [n for n, _ in v] for g, v in split_params(model, OptimConfig()).items()}
    assert "value_embed.embed.weight" in groups["embed"] and "value_embed.proj.weight" in groups["matrix"]


def test_factored_tied_embedding():
    model = make(tiny(embed_dim=16))
    assert model.tok_emb.weight.shape == (V, 16)
    assert count_params(model) == count_params_for(tiny()) - V * 64 + V * 16 + 16 * 64 + 64 * 16
    randomize(model)
    x = ids()
    h = model.hidden(x)
    z = F.linear(model.factored.head_proj(h), model.tok_emb.weight)
    assert torch.allclose(model.logits(x), 30.0 * torch.tanh(z / 30.0), atol=1e-5)
    assert torch.allclose(model.embed(x), rms_norm(model.factored.embed_proj(model.tok_emb(x))))
    groups = {g: [n for n, _ in v] for g, v in split_params(model, OptimConfig()).items()}
    assert {"factored.embed_proj.weight", "factored.head_proj.weight"} <= set(groups["matrix"])


def _is_orthogonal(w: torch.Tensor) -> bool:
    m = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(m, torch.eye(m.shape[0]), atol=1e-5)


def test_ortho_init_variants():
    pr65 = make(tiny(ortho_init="pr65"))
    attn = pr65.blocks[0].attn
    for w in (attn.c_q.weight, attn.c_k.weight, attn.c_v.weight, pr65.blocks[0].mlp.fc.weight):
        assert _is_orthogonal(w)
    assert torch.equal(attn.proj.weight, torch.zeros(64, 64))  # zero-init outputs stay zero
    pr162 = make(tiny(ortho_init="pr162"))
    assert _is_orthogonal(pr162.blocks[0].attn.c_q.weight)  # 64x64
    assert not _is_orthogonal(pr162.blocks[0].attn.c_k.weight)  # 32x64: min dim < 64 keeps default init
    assert not _is_orthogonal(make(tiny()).blocks[0].attn.c_q.weight)


def test_leaky_relu_squared_activation():
    model = make(tiny(mlp_activation="leaky_relu2", mlp_leaky_slope=0.5))
    mlp = model.blocks[0].mlp
    randomize(mlp)
    x = torch.randn(2, 5, 64)
    h = x @ mlp.fc.weight.T
    expected = torch.where(h > 0, h, 0.5 * h).square() @ mlp.proj.weight.T
    assert torch.allclose(mlp(x), expected, atol=1e-5)


# --- attention ---------------------------------------------------------------------------------------------------
def test_partial_rope_rotates_only_first_k_dims():
    x = torch.randn(2, 4, 10, 16)
    rot = Rotary(16, rope_dims=8)
    assert rot.inv_freq.numel() == 4
    assert torch.allclose(rot.inv_freq, 1.0 / 10000 ** (torch.arange(0, 8, 2) / 8))
    cos, sin = rot(10, x.device, x.dtype)
    out = apply_rotary_emb(x, cos, sin, rope_dims=8)
    assert torch.equal(out[..., 8:], x[..., 8:])
    assert torch.allclose(out[..., :8], apply_rotary_emb(x[..., :8], cos, sin))
    assert not torch.allclose(out[..., :8], x[..., :8])
    model = make(tiny(rope_dims=8))
    assert model.blocks[0].attn.rope_dims == 8 and make(tiny(rope_dims=16)).blocks[0].attn.rope_dims == 0


def test_ln_scale_factor_applied_per_physical_layer():
    model = make(tiny(ln_scale=True))
    rms = {}
    for i, block in enumerate(model.blocks):
        block.attn.register_forward_pre_hook(lambda m, a, i=i: rms.__setitem__(("attn", i), a[0].pow(2).mean().sqrt()))
        block.mlp.register_forward_pre_hook(lambda m, a, i=i: rms.__setitem__(("mlp", i), a[0].pow(2).mean().sqrt()))
    model.logits(ids())
    for (_, i), value in rms.items():
        assert value.item() == pytest.approx(1.0 / math.sqrt(i + 1), rel=1e-4)


def test_xsa_matches_reference_and_is_orthogonal_to_own_value():
    y = torch.randn(2, 8, 6, 16)
    v = torch.randn(2, 4, 6, 16)
    out = exclusive_self_attention(y, v)
    v_full = F.normalize(v.repeat_interleave(2, dim=1), dim=-1)  # head h uses kv head h // 2 (SDPA GQA map)
    ref = y - (y * v_full).sum(-1, keepdim=True) * v_full
    assert torch.allclose(out, ref, atol=1e-6)
    assert (out * v_full).sum(-1).abs().max() < 1e-5
    model = make(tiny(xsa_last_n=2))
    assert [b.attn.xsa for b in model.blocks] == [False, False, True, True]


@pytest.mark.parametrize("kind", ["out", "sparse", "dense"])
def test_attention_output_gates(kind):
    cfg = tiny(attn_gate=kind, attn_gate_width=8, attn_gate_scale=0.5, attn_gate_init_std=0.01)
    gated = make(cfg).blocks[0].attn
    plain = make(tiny()).blocks[0].attn
    randomize(plain)
    gated.load_state_dict({**plain.state_dict(), "gate.weight": gated.gate.weight.detach().clone()})
    x = torch.randn(2, 6, 64)
    if kind == "out":
        assert torch.allclose(gated(x), plain(x), atol=1e-6)  # 2σ(0) = 1: transparent at init
    if kind == "sparse":
        assert torch.allclose(gated(x), 0.5 * plain(x), atol=1e-6)  # σ(0) = 0.5 (proj is linear)
    with torch.no_grad():
        gated.gate.weight.normal_()
    captured = {}
    gated.proj.register_forward_pre_hook(lambda m, a: captured.__setitem__("gated", a[0]))
    plain.proj.register_forward_pre_hook(lambda m, a: captured.__setitem__("plain", a[0]))
    gated(x)
    plain(x)
    w = gated.gate.weight
    z = x @ w.T if kind == "dense" else x[..., :8] @ w.T
    g = {"out": 2 * torch.sigmoid(z), "sparse": torch.sigmoid(0.5 * z), "dense": torch.sigmoid(z)}[kind]
    expected = (captured["plain"].view(2, 6, 4, 16) * g.unsqueeze(-1)).reshape(2, 6, 64)
    assert torch.allclose(captured["gated"], expected, atol=1e-6)
    assert "blocks.0.attn.gate.weight" in declared_scalar_params(make(cfg))


# --- depth --------------------------------------------------------------------------------------------------------
def test_schedules_match_record_examples():
    full, plain = layer_schedules(ModelConfig(num_layers=11, num_loops=2, loop_start=4, loop_end=5))
    assert full.encoder == (0, 1, 2, 3, 4, 5, 4) and full.decoder == (5, 4, 5, 6, 7, 8, 9, 10)  # 04-05
    full, plain = layer_schedules(ModelConfig(num_layers=11, num_loops=2, loop_start=3, loop_end=5))
    assert full.encoder == (0, 1, 2, 3, 4, 5, 3, 4) and full.decoder == (5, 3, 4, 5, 6, 7, 8, 9, 10)  # 04-09+
    assert full.depth == 17 and full.num_skips == 8 and plain.depth == 11
    seed001, _ = layer_schedules(ModelConfig(num_layers=3, block_repeats=3))
    assert seed001.encoder + seed001.decoder == (0, 1, 2, 0, 1, 2, 0, 1, 2) and seed001.num_skips == 4


def test_block_repeats_reuse_weights_for_nine_effective_layers():
    model = make(tiny(num_layers=3, block_repeats=3))
    assert model.effective_depth == 9 and len(model.blocks) == 3
    assert count_params(model) == count_params_for(tiny(num_layers=3)) + (4 - 1) * 64  # only more skip weights
    calls = []
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
    model.logits(ids())
    assert calls == [0, 1, 2, 0, 1, 2, 0, 1, 2]


def test_looping_switch_changes_output_only_when_enabled():
    cfg = tiny(num_loops=1, loop_start=1, loop_end=2)
    model = make(cfg)
    randomize(model)
    assert model.looping and model.effective_depth == 6  # built as the trained architecture
    x = ids()
    looped = model.logits(x)
    model.set_looping(False)
    assert model.effective_depth == 4
    plain = model.logits(x)
    assert not torch.allclose(plain, looped)
    reference = make(tiny())
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if k != "skip_weights"}, strict=False)
    with torch.no_grad():
        reference.skip_weights.copy_(model.skip_weights[:2])
    assert torch.allclose(plain, reference.logits(x), atol=1e-6)  # loop off = the plain stack
    model.set_looping(True)
    assert torch.equal(model.logits(x), looped)


def test_unused_skip_weights_still_get_gradients_before_looping():
    model = make(tiny(num_loops=2, loop_start=1, loop_end=2, skip_gates=True))
    model.set_looping(False)
    model(ids(), ids(seed=2)).backward()
    assert all(p.grad is not None for p in model.parameters())  # DDP needs every parameter in the graph


def test_skip_gates_and_placement():
    gated = make(tiny(skip_gates=True))
    assert torch.equal(gated.skip_gates, torch.zeros(2, 64))
    x, skip, w = torch.randn(2, 3, 64), torch.randn(2, 3, 64), gated.skip_weights[0]
    assert torch.allclose(gated._skip(x, skip, 0), 0.5 * x + 0.5 * w * skip)
    before, after = make(tiny()), make(tiny(skip_placement="after"))
    randomize(before)
    after.load_state_dict(before.state_dict())
    assert not torch.allclose(before.logits(ids()), after.logits(ids()))


def test_parallel_lanes_follow_the_two_lane_update():
    cfg = tiny(num_layers=4, parallel_start_layer=3, parallel_final_lane="mean")
    model = make(cfg)
    assert count_params(model) == count_params_for(tiny()) + 4 * 4 + 4 * 2
    assert torch.allclose(model.parallel.resid_lambdas, torch.full((4, 2), 1.1))
    randomize(model)
    x = ids()
    # manual forward: blocks 0,1 encoder; decoder block 2 sequential, block 3 two-lane
    h = model.embed(x)
    x0 = h
    s0 = model.blocks[0](h, x0)
    s1 = model.blocks[1](s0, x0)
    h = model.blocks[2](s1 + model.skip_weights[0] * s1, x0)
    lane0, lane1 = h + model.skip_weights[1] * s0, h
    blk, r, p = model.blocks[3], model.parallel.resid_lambdas[3], model.parallel.post_lambdas[3]
    a = blk.attn_scale * blk.attn(rms_norm(blk.resid_mix[0] * lane0 + blk.resid_mix[1] * x0))
    m = blk.mlp_scale * blk.mlp(rms_norm(lane1))
    new0 = r[0] * lane0 + p[0, 0] * a + p[1, 0] * m
    new1 = r[1] * lane1 + p[0, 1] * a + p[1, 1] * m
    assert torch.allclose(model.hidden(x), rms_norm(0.5 * (new0 + new1)), atol=1e-5)
    model.parallel.final_lane = "mlp"
    assert torch.allclose(model.hidden(x), rms_norm(new1), atol=1e-5)


def test_every_option_is_routed_and_declared_scalars_are_control_tensors():
    cfg = tiny(smear_gate="v2", bigram_buckets=64, bigram_hash="xor", bigram_dim=16, value_embed_dim=16,
               value_embed_layers=[3], embed_dim=32, attn_gate="sparse", skip_gates=True, num_loops=1,
               loop_start=1, loop_end=2, parallel_start_layer=3, xsa_last_n=2, rope_dims=8, ln_scale=True)
    model = make(cfg)
    groups = split_params(model, OptimConfig())
    routed = {n for v in groups.values() for n, _ in v}
    assert routed == {n for n, _ in model.named_parameters()}
    assert build_optimizers(model, OptimConfig(), tie_embeddings=True)
    scalars = declared_scalar_params(model)
    assert {"skip_gates", "smear.lam", "parallel.post_lambdas", "blocks.1.attn.gate.weight"} <= scalars
    assert scalars <= {n for n, _ in groups["scalar"]}

