"""Every architecture option trains: a tiny model with the option on learns from real FineWeb tokens (sp1024
shards made from ../shared/data) with the optimizers built by golf.optim, alone and all options together."""

from __future__ import annotations

import time

import pytest
import torch

from golf.data.loader import DistributedTokenLoader
from golf.model import ModelConfig, build_model
from golf.optim import OptimConfig, build_optimizers, muon_momentum_at, set_muon_momentum
from golf.train.config import TrainRunConfig
from golf.train.looping import EnableLoopingHook
from golf.train.techniques import build_hooks

SEQ, BATCH_TOKENS, STEPS = 64, 1024, 10


pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {
    "smear_v1_pr65": dict(smear_gate="v1"),
    "smear_v1_pr162": dict(smear_gate="v1", smear_gate_init=0.0, smear_gate_after_norm=True),
    "smear_v2_bos": dict(smear_gate="v2", smear_gate_width=12),
    "bigram_mul": dict(bigram_buckets=512, bigram_dim=32, bigram_hash="mul"),
    "bigram_xor": dict(bigram_buckets=512, bigram_dim=32, bigram_hash="xor"),
    "value_embed": dict(value_embed_dim=16, value_embed_layers=[2, 3]),
    "factored_embed": dict(embed_dim=32),
    "ortho_pr65": dict(ortho_init="pr65"),
    "ortho_pr162": dict(ortho_init="pr162"),
    "mlp_float_leaky": dict(mlp_mult=2.5, mlp_activation="leaky_relu2"),
    "softcap_qk_gain": dict(logit_softcap=15.0, qk_gain_init=5.0),
    "partial_rope": dict(rope_dims=8),
    "ln_scale": dict(ln_scale=True),
    "xsa": dict(xsa_last_n=2),
    "attn_gate_out": dict(attn_gate="out"),
    "attn_gate_sparse": dict(attn_gate="sparse", attn_gate_scale=0.5),
    "attn_gate_dense": dict(attn_gate="dense"),
    "skip_gates": dict(skip_gates=True),
    "skips_after_block": dict(skip_placement="after"),
    "block_repeats": dict(num_layers=2, block_repeats=3),
    "loop_range": dict(num_loops=1, loop_start=1, loop_end=2),
    "parallel_lanes": dict(parallel_start_layer=3, parallel_final_lane="mlp", parallel_resid_init=1.1 ** 0.5),
}
ALL_ON = dict(smear_gate="v2", bigram_buckets=512, bigram_dim=32, bigram_hash="xor", value_embed_dim=16,
              value_embed_layers=[3], embed_dim=48, ortho_init="pr162", mlp_mult=2.5, mlp_activation="leaky_relu2",
              rope_dims=8, ln_scale=True, xsa_last_n=4, attn_gate="sparse", skip_gates=True, num_loops=1,
              loop_start=1, loop_end=2, enable_looping_at=0.5, parallel_start_layer=3, qk_gain_init=5.0)


def tiny(**overrides) -> ModelConfig:
    base = dict(vocab_size=1024, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2)
    return ModelConfig(**{**base, **overrides})


def train(cfg: ModelConfig, shards, steps: int = STEPS, hooks=()) -> tuple[torch.nn.Module, list[float]]:
    """Official step (Adam/Muon split, momentum warmup) on the sequential FineWeb stream; returns train losses."""
    torch.manual_seed(1337)
    model = build_model(cfg)
    optim_cfg = OptimConfig()
    optimizers = build_optimizers(model, optim_cfg, cfg.tie_embeddings)
    loader = DistributedTokenLoader(str(shards / "fineweb_train_*.bin"), 0, 1, torch.device("cpu"))
    for hook in hooks:
        hook.on_train_start(model, optimizers)
    losses = []
    for step in range(steps):
        x, y = loader.next_batch(BATCH_TOKENS, SEQ, 1)
        loss = model(x, y)
        loss.backward()
        set_muon_momentum(optimizers, muon_momentum_at(step, optim_cfg))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        for hook in hooks:
            hook.on_step_end(step + 1, 1.0, model)
    for hook in hooks:
        hook.on_train_end(model)
    return model, losses


def assert_learns(losses: list[float]) -> None:
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_trains_on_fineweb(name, sp1024_shards):
    _, losses = train(tiny(**OPTIONS[name]), sp1024_shards)
    assert_learns(losses)


def test_all_options_compose_and_train(sp1024_shards):
    cfg = tiny(**ALL_ON)
    hook = EnableLoopingHook(cfg.enable_looping_at, iterations=STEPS, max_wallclock_seconds=0)
    model, losses = train(cfg, sp1024_shards, hooks=[hook])
    assert_learns(losses)
    assert hook.enabled_at_step == 5 and model.looping and model.effective_depth == 6


def test_looping_hook_switches_at_the_training_fraction(sp1024_shards):
    cfg = tiny(num_loops=2, loop_start=1, loop_end=2, enable_looping_at=0.4)
    depths = []

    class Probe(EnableLoopingHook):
        def on_step_end(self, step, lr_scale, model):
            depths.append(model.effective_depth)
            return super().on_step_end(step, lr_scale, model)

    hook = Probe(cfg.enable_looping_at, iterations=STEPS, max_wallclock_seconds=0)
    model, losses = train(cfg, sp1024_shards, hooks=[hook])
    assert_learns(losses)
    assert depths == [4] * 4 + [8] * 6  # plain stack for steps 1-4, looped (4 + 2·2 layers) from frac 0.4 on
    assert model.looping


def test_looping_hook_wallclock_fraction_and_registration():
    now = [100.0]
    hook = EnableLoopingHook(0.5, iterations=1000, max_wallclock_seconds=10.0, clock=lambda: now[0])

    model = build_model(tiny(num_loops=1, loop_start=1, loop_end=2))
    hook.on_train_start(model, [])
    assert not model.looping
    now[0] = 104.0
    assert hook.on_step_end(3, 1.0, model) == {} and not model.looping
    now[0] = 105.5
    assert hook.on_step_end(4, 1.0, model) == {"model/looping_enabled_step": 4.0} and model.looping
    run = TrainRunConfig(model=tiny(num_loops=1, loop_start=1, loop_end=2, enable_looping_at=0.35))
    assert [type(h) for h in build_hooks(run)] == [EnableLoopingHook]
    assert build_hooks(TrainRunConfig(model=tiny(num_loops=1, loop_start=1, loop_end=2))) == []


@pytest.mark.slow
def test_torch_compile_fullgraph_cpu_default_and_looping_switch():
    """fullgraph compile works for the baseline and a looped model; toggling the loop recompiles (never folded)."""
    t0 = time.perf_counter()
    x = torch.randint(0, 1024, (2, 32))
    torch.manual_seed(0)
    base = build_model(tiny())
    compiled = torch.compile(base, dynamic=False, fullgraph=True)
    y = torch.randint(0, 1024, (2, 32))
    assert torch.allclose(compiled(x, y), base(x, y), atol=1e-5)
    if time.perf_counter() - t0 > 60:
        pytest.skip("CPU inductor compile took > 60 s on this machine")
    torch.manual_seed(0)
    looped = build_model(tiny(num_loops=1, loop_start=1, loop_end=2, skip_gates=True, rope_dims=8, xsa_last_n=2))
    with torch.no_grad():  # zero-init output projections would make every schedule the identity
        looped.tok_emb.weight.normal_(std=1.0)  # and a tiny tied embedding makes every loss ~ln(V)
        for block in looped.blocks:
            block.attn.proj.weight.normal_(std=0.5)
            block.mlp.proj.weight.normal_(std=0.5)
    compiled = torch.compile(looped, dynamic=False, fullgraph=True)
    on = compiled(x, y)
    looped.set_looping(False)
    off = compiled(x, y)
    assert torch.allclose(off, looped(x, y), atol=1e-5)
    assert (on - off).abs() > 1e-3  # a real change, not rounding noise (std 0.05 gave ~5e-5: flaky)
    looped.set_looping(True)
    assert torch.allclose(compiled(x, y), on, atol=1e-6)
