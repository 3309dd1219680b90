"""Every architecture option trains and matters: a tiny model with the option on, driven by the real Trainer
(golf/train/trainer.py: seed, build, official optimizers and schedules, hooks, sequential FineWeb loader on sp1024
shards made from ../shared/data), learns, and its per-step losses differ from the same run with the option off —
alone and all options together."""

from __future__ import annotations

import time

import pytest
import torch

from golf.model import ModelConfig, build_model
from golf.train.config import TrainRunConfig
from golf.train.context import NullTracker, RunContext
from golf.train.looping import EnableLoopingHook
from golf.train.techniques import build_hooks
from golf.train.trainer import Trainer

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


class Recorder(NullTracker):
    """Tracker that keeps what the Trainer logs, and the model's depth after each step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []
        self.depths: list[int] = []
        self.trainer: Trainer | None = None

    def log(self, metrics: dict, step: int) -> None:
        self.rows.append((step, metrics))
        if "train/loss" in metrics:
            self.depths.append(self.trainer.model.effective_depth)

    @property
    def losses(self) -> list[float]:
        return [m["train/loss"] for _, m in self.rows if "train/loss" in m]


def train(model_cfg: dict, data_root, tmp_path) -> tuple[Trainer, Recorder]:
    """STEPS optimizer steps of the real Trainer (seed 1337, official optimizers, flat lr, no priming)."""
    cfg = TrainRunConfig.from_dict({
        "data": {"root": str(data_root)},
        "model": {"vocab_size": 1024, "num_layers": 4, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2,
                  **model_cfg},
        "trainer": {"train_seq_len": SEQ, "train_batch_tokens": BATCH_TOKENS, "grad_accum_base": 1, "device": "cpu",
                    "compile": "off", "checkpoint": False},
        "schedule": {"iterations": STEPS, "warmup_steps": 0, "warmdown_iters": 0, "max_wallclock_seconds": 0,
                     "val_loss_every": 0, "train_log_every": 1},
        "eval": {"batch_tokens": 1024, "max_tokens": 1024},
        "logger": {"name": "none"},
    })
    recorder = Recorder()
    trainer = recorder.trainer = Trainer(cfg, RunContext(tmp_path), recorder)
    trainer.run()
    assert len(recorder.losses) == STEPS
    return trainer, recorder


def assert_learns(losses: list[float]) -> None:
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses


@pytest.fixture(scope="module")
def baseline_losses(data_root, tmp_path_factory) -> list[float]:
    """Per-step losses of the same run with every option off."""
    _, rec = train({}, data_root, tmp_path_factory.mktemp("baseline"))
    assert_learns(rec.losses)
    return rec.losses


def assert_changes_outcome(losses: list[float], baseline: list[float]) -> None:
    """The option is not a no-op: some step's loss moved by more than float noise."""
    assert max(abs(a - b) for a, b in zip(losses, baseline, strict=True)) > 1e-3, (losses, baseline)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_trains_on_fineweb_and_changes_the_run(name, data_root, tmp_path, baseline_losses):
    _, rec = train(OPTIONS[name], data_root, tmp_path)
    assert_learns(rec.losses)
    assert_changes_outcome(rec.losses, baseline_losses)


def test_all_options_compose_and_train(data_root, tmp_path, baseline_losses):
    trainer, rec = train(ALL_ON, data_root, tmp_path)
    assert_learns(rec.losses)
    assert_changes_outcome(rec.losses, baseline_losses)
    (hook,) = trainer.hooks
    assert hook.enabled_at_step == 5 and trainer.model.looping and trainer.model.effective_depth == 6


def test_looping_hook_switches_at_the_training_fraction(data_root, tmp_path):
    trainer, rec = train(dict(num_loops=2, loop_start=1, loop_end=2, enable_looping_at=0.4), data_root, tmp_path)
    assert_learns(rec.losses)
    # plain stack for steps 1-4, looped (4 + 2·2 layers) from frac 0.4 on: the switch comes after step 4
    assert rec.depths == [4] * 3 + [8] * 7
    assert (4, {"model/looping_enabled_step": 4.0}) in rec.rows
    assert trainer.model.looping


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
