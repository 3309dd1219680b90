"""Training options of issue 3: Muon WD / cautious WD / Polar Express / MuonEq-R, AdamW groups, fraction
warmdown, WSD-S, min-lr floor, GPTQ reserve, EMA / SWA / LAWA averaging, gradient clipping in the loop.

Every expected value is written out from the technique's formula (record code or paper), independently of
golf's implementation; each test fails when the option is switched off or implemented differently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, run_golf
from torch import nn

from golf.optim import (
    NS5_COEFFS,
    POLAR_EXPRESS_COEFFS,
    Muon,
    OptimConfig,
    OptimConfigError,
    ScheduleConfig,
    apply_lr_scale,
    build_optimizers,
    lr_multiplier,
    zeropower_via_newtonschulz5,
)
from golf.train.averaging import (
    EMAAverager,
    LAWAAverager,
    SWAAverager,
    build_averager,
)
from golf.train.config import AveragingConfig, AveragingConfigError

# ----------------------------------------------------------------------------------------------
# Muon: decoupled and cautious weight decay
# ----------------------------------------------------------------------------------------------


def _identity_ns(G, steps, coeffs=None, compute_dtype=torch.float64, **_):
    """An orthogonalizer that returns its input, so a test controls the update's signs exactly."""
    return G.to(compute_dtype)


def test_muon_weight_decay_shrinks_by_one_minus_lr_wd_with_the_scheduled_lr():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    p = nn.Parameter(w0.clone())
    opt = Muon([p], lr=0.04, momentum=0.95, backend_steps=5, compute_dtype=torch.float64, weight_decay=0.5)
    opt.param_groups[0]["base_lr"] = 0.04
    apply_lr_scale([opt], 0.25)  # decay must use the scheduled lr 0.01, as the records' group["lr"]
    p.grad = torch.zeros_like(w0)  # NS(0) = 0: the step is pure decay
    opt.step()
    assert torch.equal(p.detach(), w0 * (1 - 0.01 * 0.5))
    p_no_grad = nn.Parameter(w0.clone())  # records decay every matrix of the group, with or without a grad
    Muon([p_no_grad], lr=0.04, momentum=0.95, backend_steps=5, weight_decay=0.5,
         compute_dtype=torch.float64).step()
    assert torch.equal(p_no_grad.detach(), w0 * (1 - 0.04 * 0.5))


def test_muon_weight_decay_is_applied_before_the_orthogonalized_update():
    gen = torch.Generator().manual_seed(1)
    w0, g = torch.randn(8, 6, generator=gen, dtype=torch.float64), torch.randn(8, 6, generator=gen, dtype=torch.float64)
    plain, decayed = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    kwargs = dict(lr=0.04, momentum=0.9, backend_steps=5, compute_dtype=torch.float64)
    opt_plain, opt_wd = Muon([plain], **kwargs), Muon([decayed], weight_decay=0.2, **kwargs)
    plain.grad, decayed.grad = g.clone(), g.clone()
    opt_plain.step()
    opt_wd.step()
    update = (w0 - plain.detach()) / 0.04  # the official Muon update u
    torch.testing.assert_close(decayed.detach(), w0 * (1 - 0.04 * 0.2) - 0.04 * update, rtol=0, atol=1e-12)


def test_cautious_weight_decay_only_decays_where_update_and_weight_agree():
    w0 = torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.5, 0.5, -0.5, -0.5]], dtype=torch.float64)
    g = torch.tensor([[2.0, 1.0, -1.0, -3.0], [0.0, -1.0, 1.0, -1.0]], dtype=torch.float64)  # 0·w counts as agreeing
    lr, wd = 0.1, 0.5
    results = {}
    for cautious in (False, True):
        p = nn.Parameter(w0.clone())
        opt = Muon([p], lr=lr, momentum=0.0, backend_steps=1, nesterov=False, compute_dtype=torch.float64,
                   zeropower_fn=_identity_ns, weight_decay=wd, cautious_wd=cautious)
        p.grad = g.clone()
        opt.step()
        results[cautious] = p.detach()
    agree = (g * w0) >= 0  # update u = g (identity orthogonalizer, no momentum, wide matrix: scale 1)
    assert agree.tolist() == [[True, False, False, True], [True, False, False, True]]
    expected = w0 - lr * wd * w0 * agree - lr * g
    torch.testing.assert_close(results[True], expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(results[False], w0 * (1 - lr * wd) - lr * g, rtol=0, atol=1e-15)
    assert not torch.allclose(results[True], results[False])


def test_build_optimizers_wires_muon_options():
    model = _TwoMatrix()
    cfg = OptimConfig(muon_wd=0.07, muon_cautious_wd=True, muon_row_normalize=True, muon_ns_coeffs="polar_express",
                      muon_ns_norm_scale=1.02)
    muon = next(o for o in build_optimizers(model, cfg, tie_embeddings=True) if isinstance(o, Muon))
    group = muon.param_groups[0]
    assert (group["weight_decay"], group["cautious_wd"], group["row_normalize"]) == (0.07, True, True)
    assert muon.coeffs == POLAR_EXPRESS_COEFFS and muon.norm_scale == 1.02
    official = next(o for o in build_optimizers(model, OptimConfig(), tie_embeddings=True) if isinstance(o, Muon))
    assert official.param_groups[0]["weight_decay"] == 0.0 and official.coeffs == NS5_COEFFS


# ----------------------------------------------------------------------------------------------
# Polar Express and MuonEq-R
# ----------------------------------------------------------------------------------------------


def _polynomial_reference(G: torch.Tensor, coeffs, norm_scale: float = 1.0) -> torch.Tensor:
    """Each iteration maps every normalized singular value s to a·s + b·s³ + c·s⁵ (singular vectors fixed)."""
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    s = S / ((G.double().norm() + 1e-7) * norm_scale)
    for a, b, c in coeffs:
        s = a * s + b * s**3 + c * s**5
    return U @ torch.diag(s) @ Vh


def test_polar_express_coefficients_are_the_published_ones():
    assert len(POLAR_EXPRESS_COEFFS) == 5
    assert POLAR_EXPRESS_COEFFS[0] == (8.156554524902461, -22.48329292557795, 15.878769915207462)
    assert POLAR_EXPRESS_COEFFS[4] == (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_polar_express_applies_the_five_tuples_in_order(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = zeropower_via_newtonschulz5(G, 5, coeffs=POLAR_EXPRESS_COEFFS, compute_dtype=torch.float64)
    torch.testing.assert_close(got, _polynomial_reference(G, POLAR_EXPRESS_COEFFS), rtol=0, atol=1e-9)
    reversed_order = _polynomial_reference(G, POLAR_EXPRESS_COEFFS[::-1])
    assert (got - reversed_order).abs().max() > 1e-2  # the order matters, so the test pins it
    # fewer steps use the first tuples (the records' `_PE_COEFFS[:steps]`)
    three = zeropower_via_newtonschulz5(G, 3, coeffs=POLAR_EXPRESS_COEFFS, compute_dtype=torch.float64)
    torch.testing.assert_close(three, _polynomial_reference(G, POLAR_EXPRESS_COEFFS[:3]), rtol=0, atol=1e-9)
    # seed 001's 1.02 normalization margin
    scaled = zeropower_via_newtonschulz5(G, 5, coeffs=POLAR_EXPRESS_COEFFS, compute_dtype=torch.float64,
                                         norm_scale=1.02)
    torch.testing.assert_close(scaled, _polynomial_reference(G, POLAR_EXPRESS_COEFFS, 1.02), rtol=0, atol=1e-9)


def test_polar_express_orthogonalizes_more_tightly_than_the_fixed_quintic():
    G = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    fixed = torch.linalg.svdvals(zeropower_via_newtonschulz5(G, 5, compute_dtype=torch.float32))
    polar = torch.linalg.svdvals(zeropower_via_newtonschulz5(G, 5, coeffs=POLAR_EXPRESS_COEFFS,
                                                             compute_dtype=torch.float32))
    assert (polar - 1).abs().max() < 0.5 * (fixed - 1).abs().max()


def test_polar_express_config_rules():
    with pytest.raises(OptimConfigError, match="muon_backend_steps"):
        OptimConfig(muon_ns_coeffs="polar_express", muon_backend_steps=6)
    with pytest.raises(OptimConfigError, match="muon_ns_coeffs"):
        OptimConfig(muon_ns_coeffs="polar")
    with pytest.raises(OptimConfigError, match="muon_ns_norm_scale"):
        OptimConfig(muon_ns_norm_scale=0)


def test_muon_eq_r_normalizes_rows_before_newton_schulz():
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    g = torch.randn(6, 10, generator=gen, dtype=torch.float64) * torch.arange(1, 7, dtype=torch.float64)[:, None]
    seen = []

    def recording_ns(G, steps, coeffs=NS5_COEFFS, compute_dtype=torch.float64, **kw):
        seen.append(G.clone())
        return zeropower_via_newtonschulz5(G, steps, coeffs=coeffs, compute_dtype=compute_dtype, **kw)

    p = nn.Parameter(w0.clone())
    opt = Muon([p], lr=0.04, momentum=0.95, backend_steps=5, compute_dtype=torch.float64,
               zeropower_fn=recording_ns, row_normalize=True)
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(seen[0].norm(dim=1), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-12)
    nesterov = g + 0.95 * g  # first step: buf = g
    direct = _polynomial_reference(nesterov / nesterov.norm(dim=1, keepdim=True), [NS5_COEFFS] * 5)
    torch.testing.assert_close(p.detach(), w0 - 0.04 * direct, rtol=0, atol=1e-12)
    p_plain = nn.Parameter(w0.clone())
    opt_plain = Muon([p_plain], lr=0.04, momentum=0.95, backend_steps=5, compute_dtype=torch.float64,
                     zeropower_fn=recording_ns)
    p_plain.grad = g.clone()
    opt_plain.step()
    assert (seen[1].norm(dim=1) - 1).abs().max() > 0.5  # without the option the rows keep their norms


# ----------------------------------------------------------------------------------------------
# Adam / AdamW groups
# ----------------------------------------------------------------------------------------------


class _TwoMatrix(nn.Module):
    """tok_emb (embed), an untied lm_head (head), one block matrix (Muon) and one block scalar."""

    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(16, 8)
        self.lm_head = nn.Linear(8, 16, bias=False)
        self.blocks = nn.ModuleList([nn.Module()])
        self.blocks[0].fc = nn.Linear(8, 8, bias=False)
        self.blocks[0].attn_scale = nn.Parameter(torch.ones(8))


def test_adamw_groups_decay_with_their_own_rates():
    model = _TwoMatrix()
    cfg = OptimConfig(embed_wd=0.1, head_wd=0.2, scalar_wd=0.3)
    optimizers = build_optimizers(model, cfg, tie_embeddings=False)
    embed, head, muon, scalar = optimizers
    assert [type(o).__name__ for o in optimizers] == ["AdamW", "AdamW", "Muon", "AdamW"]
    assert [o.param_groups[0]["weight_decay"] for o in (embed, head, scalar)] == [0.1, 0.2, 0.3]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's step is 0 for a zero gradient: only the decay acts
    apply_lr_scale(optimizers, 0.5)
    for opt in optimizers:
        opt.step()
    for name, lr, wd in (("tok_emb.weight", cfg.embed_lr, 0.1), ("lm_head.weight", cfg.head_lr, 0.2),
                         ("blocks.0.attn_scale", cfg.scalar_lr, 0.3)):
        torch.testing.assert_close(dict(model.named_parameters())[name].detach(),
                                   before[name] * (1 - 0.5 * lr * wd), rtol=1e-6, atol=0)
    official = build_optimizers(model, OptimConfig(), tie_embeddings=False)
    assert [type(o).__name__ for o in official] == ["Adam", "Adam", "Muon", "Adam"]


# ----------------------------------------------------------------------------------------------
# LR schedules
# ----------------------------------------------------------------------------------------------


def _records_lr_mul(step, elapsed_ms, iterations, cap_s, reserve_s, warmdown_frac, min_lr):
    """The records' training_frac + lr_mul (2026-04-23_…_PolarNS_MinLR_FusedCE), written out."""
    max_ms = 1000.0 * cap_s if cap_s > 0 else None
    if max_ms is not None:
        max_ms -= reserve_s * 1000.0
    frac = step / max(iterations, 1) if max_ms is None else elapsed_ms / max(max_ms, 1e-9)
    if warmdown_frac <= 0:
        return 1.0
    return max((1.0 - frac) / warmdown_frac, min_lr) if frac >= 1.0 - warmdown_frac else 1.0


def test_fraction_warmdown_values_without_cap():
    cfg = ScheduleConfig(name="fraction_warmdown", iterations=100, warmdown_frac=0.25, max_wallclock_seconds=0)
    assert [lr_multiplier(s, 0.0, cfg) for s in (0, 74, 75, 90, 99, 100, 120)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.4, 0.04, 0.0, 0.0])
    floored = ScheduleConfig(name="fraction_warmdown", iterations=100, warmdown_frac=0.25, min_lr=0.1,
                             max_wallclock_seconds=0)
    assert [lr_multiplier(s, 0.0, floored) for s in (90, 97, 99, 100, 150)] == pytest.approx([0.4, 0.12, 0.1, 0.1, 0.1])
    assert lr_multiplier(99, 0.0, ScheduleConfig(name="fraction_warmdown", warmdown_frac=0.0,
                                                 max_wallclock_seconds=0, iterations=100)) == 1.0


def test_fraction_warmdown_values_under_cap_with_gptq_reserve():
    cfg = ScheduleConfig(name="fraction_warmdown", warmdown_frac=0.25, min_lr=0.1, max_wallclock_seconds=600,
                         gptq_reserve_seconds=100)
    # frac is measured against 500 s: 250 s -> 0.5 (flat); 450 s -> 0.9 -> 0.4; 500 s and after -> floor
    assert [lr_multiplier(7, ms, cfg) for ms in (250e3, 375e3, 450e3, 500e3, 590e3)] == pytest.approx(
        [1.0, 1.0, 0.4, 0.1, 0.1])
    no_reserve = ScheduleConfig(name="fraction_warmdown", warmdown_frac=0.25, min_lr=0.1, max_wallclock_seconds=600)
    assert lr_multiplier(7, 450e3, no_reserve) == pytest.approx(1.0)  # 0.75 of 600 s: decay just starts
    for c in (cfg, no_reserve):
        for step, ms in ((0, 0.0), (10, 300e3), (11, 480e3), (12, 530e3), (13, 610e3)):
            expected = _records_lr_mul(step, ms, c.iterations, c.max_wallclock_seconds, c.gptq_reserve_seconds,
                                       c.warmdown_frac, c.min_lr)
            assert lr_multiplier(step, ms, c) == pytest.approx(expected)


def test_min_lr_and_reserve_also_apply_to_the_official_warmdown():
    base = dict(iterations=100, warmdown_iters=20, max_wallclock_seconds=0)
    assert lr_multiplier(99, 0.0, ScheduleConfig(**base)) == pytest.approx(0.05)  # official
    assert lr_multiplier(99, 0.0, ScheduleConfig(min_lr=0.2, **base)) == pytest.approx(0.2)
    capped = ScheduleConfig(warmdown_iters=1200, max_wallclock_seconds=600.0, gptq_reserve_seconds=150.0)
    # 375 ms/step -> window 450 s; the cap is now 450 s, so at 225 s half the window remains
    assert lr_multiplier(600, 225_000.0, capped) == pytest.approx(0.5)
    with pytest.raises(OptimConfigError, match="gptq_reserve_seconds"):
        ScheduleConfig(max_wallclock_seconds=10, gptq_reserve_seconds=10)


def test_wsd_s_values():
    cfg = ScheduleConfig(name="wsd_s", iterations=100, max_wallclock_seconds=0, lr_warmup_steps=10,
                         warmdown_frac=0.2)
    steps = (0, 4, 9, 10, 50, 80, 90, 95, 100)
    assert [lr_multiplier(s, 0.0, cfg) for s in steps] == pytest.approx([0.1, 0.5, 1, 1, 1, 1, 0.5, 0.25, 0])
    floor = ScheduleConfig(name="wsd_s", iterations=100, max_wallclock_seconds=0, warmdown_frac=0.2, min_lr=0.1)
    assert lr_multiplier(90, 0.0, floor) == pytest.approx(0.1 + 0.9 * 0.5)
    cosine = ScheduleConfig(name="wsd_s", iterations=100, max_wallclock_seconds=0, warmdown_frac=0.2,
                            decay_shape="cosine")
    assert lr_multiplier(85, 0.0, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    sqrt = ScheduleConfig(name="wsd_s", iterations=100, max_wallclock_seconds=0, warmdown_frac=0.2,
                          decay_shape="1-sqrt")
    assert lr_multiplier(85, 0.0, sqrt) == pytest.approx(0.5)
    # "-S": two cycles; after the first decay the LR returns to peak and decays again at the end
    cycles = ScheduleConfig(name="wsd_s", iterations=100, max_wallclock_seconds=0, warmdown_frac=0.2, wsd_cycles=2)
    assert [lr_multiplier(s, 0.0, cycles) for s in (30, 40, 45, 49, 50, 80, 95, 100)] == pytest.approx(
        [1, 1, 0.5, 0.1, 1, 1, 0.5, 0])
    timed = ScheduleConfig(name="wsd_s", max_wallclock_seconds=100, warmdown_frac=0.2)
    assert lr_multiplier(3, 90_000.0, timed) == pytest.approx(0.5)


def test_wsd_only_fields_are_rejected_under_other_schedules():
    with pytest.raises(OptimConfigError, match="only used by schedule.name=wsd_s"):
        ScheduleConfig(lr_warmup_steps=10)
    with pytest.raises(OptimConfigError, match="decay_shape"):
        ScheduleConfig(name="wsd_s", decay_shape="exp")
    with pytest.raises(OptimConfigError, match="min_lr"):
        ScheduleConfig(min_lr=1.5)


# ----------------------------------------------------------------------------------------------
# Weight averaging hooks
# ----------------------------------------------------------------------------------------------


class _Toy(nn.Module):
    def __init__(self, dtype=torch.float32) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3, 2, dtype=dtype))
        self.register_buffer("running", torch.zeros(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def _set(model: _Toy, value: float) -> None:
    with torch.no_grad():
        model.w.fill_(value)
        model.running.fill_(2 * value)
        model.count.fill_(int(value * 10))


def _drive(hook, model, values, scales=None) -> None:
    """Training stand-in: weights become values[i] after step i+1, then the hook sees that step."""
    hook.on_train_start(model, [])
    for i, v in enumerate(values):
        _set(model, v)
        hook.on_step_end(i + 1, 1.0 if scales is None else scales[i], model)


def test_ema_equals_the_closed_form_and_is_swapped_in_at_the_end():
    model, d = _Toy(), 0.9
    _set(model, 0.5)  # θ0 at train start
    values = [1.0, 2.0, -1.0, 3.0, 0.25]
    hook = EMAAverager(d)
    _drive(hook, model, values)
    n = len(values)
    closed = d**n * 0.5 + (1 - d) * sum(d ** (n - i) * v for i, v in enumerate(values, start=1))
    hook.on_train_end(model)
    torch.testing.assert_close(model.w.detach(), torch.full((3, 2), closed), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.running, torch.full((2,), 2 * closed), rtol=1e-6, atol=1e-7)
    assert model.count.item() == int(0.25 * 10)  # integer buffers are not averaged
    assert hook.shadow["w"].dtype == torch.float32


def test_ema_shadow_is_fp32_and_cast_back_for_bf16_weights():
    model = _Toy(dtype=torch.bfloat16)
    hook = EMAAverager(0.5)
    _drive(hook, model, [1.0, 3.0])  # fp32 math: 0.25·0 + 0.25·1 + 0.5·3 = 1.75
    assert hook.shadow["w"].dtype == torch.float32
    hook.on_train_end(model)
    assert model.w.dtype == torch.bfloat16 and torch.equal(model.w.detach(), torch.full((3, 2), 1.75).bfloat16())


def test_swa_averages_only_snapshots_below_the_threshold_every_n_steps():
    model = _Toy()
    values = [float(i) for i in range(1, 13)]
    scales = [1.0, 1.0, 0.9, 0.5, 0.45, 0.4, 0.3, 0.2, 0.19, 0.1, 0.05, 0.0]
    hook = SWAAverager(every=2, threshold=0.5)
    _drive(hook, model, values, scales)
    # steps with scale < 0.5 (strict) and step % 2 == 0: 6, 8, 10, 12; not 4 (scale exactly 0.5) nor 5 (odd)
    assert hook.steps == [6, 8, 10, 12]
    hook.on_train_end(model)
    torch.testing.assert_close(model.w.detach(), torch.full((3, 2), (6 + 8 + 10 + 12) / 4))


def test_swa_with_a_single_snapshot_keeps_the_final_weights():
    model = _Toy()
    hook = SWAAverager(every=4, threshold=0.5)
    _drive(hook, model, [1.0, 2.0, 3.0, 4.0, 5.0], [0.4] * 5)
    assert hook.steps == [4]
    hook.on_train_end(model)  # records apply SWA only when swa_count > 1
    assert torch.equal(model.w.detach(), torch.full((3, 2), 5.0))


def test_lawa_averages_the_latest_k_snapshots():
    model = _Toy()
    hook = LAWAAverager(k=3, every=2)
    _drive(hook, model, [float(i) for i in range(1, 12)])
    assert list(hook.steps) == [6, 8, 10]  # snapshots at 2, 4, 6, 8, 10; the latest 3 are kept
    hook.on_train_end(model)
    torch.testing.assert_close(model.w.detach(), torch.full((3, 2), 8.0))


def test_build_averager_and_config_rules():
    assert build_averager(AveragingConfig()) is None
    assert isinstance(build_averager(AveragingConfig(name="ema")), EMAAverager)
    assert isinstance(build_averager(AveragingConfig(name="swa")), SWAAverager)
    assert isinstance(build_averager(AveragingConfig(name="lawa")), LAWAAverager)
    for bad in (dict(name="polyak"), dict(ema_decay=1.0), dict(swa_lr_threshold=0.0), dict(lawa_k=0)):
        with pytest.raises(AveragingConfigError, match="averaging."):
            AveragingConfig(**bad)


@pytest.mark.parametrize("overrides", [
    ["optim=muon_wd"], ["optim=muon_polar"], ["optim=muon_eqr"], ["optim=muon_pr1787"],
    ["schedule=fraction_warmdown"], ["schedule=wsd_s"], ["averaging=ema"], ["averaging=swa"], ["averaging=lawa"],
])
def test_yaml_options_compose_and_validate(overrides):
    from hydra import compose, initialize_config_dir

    from golf.config import register_configs, to_typed
    from golf.train.config import TrainRunConfig
    from golf.train.techniques import build_hooks

    register_configs()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides), TrainRunConfig)
        official = to_typed(compose("train"), TrainRunConfig)
    group, option = overrides[0].split("=")
    assert getattr(cfg, group) != getattr(official, group)
    assert official.averaging.name == "none" and build_hooks(official) == []
    if group == "averaging":
        assert type(build_hooks(cfg)[0]).__name__.lower().startswith(option)


# ----------------------------------------------------------------------------------------------
# Through the real training loop (train.py subprocess on the FineWeb sample)
# ----------------------------------------------------------------------------------------------

# Smaller steps than TINY_OVERRIDES (2,048 tokens/step) so each run takes seconds. The one priming step stays:
# without it the RoPE cache is first built inside the step-0 validation's inference_mode and training fails.
_FAST = [*TINY_OVERRIDES, "trainer.train_batch_tokens=2048"]


def _val_history(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["val/loss"] for r in rows if "val/loss" in r}


@pytest.mark.slow
def test_lawa_weights_are_what_the_loop_evaluates_and_checkpoints(data_root: Path, tmp_path: Path):
    """LAWA with k=1 and a snapshot every 4 steps over 6 steps must leave exactly the step-4 weights: the final
    validation and the checkpoint (scored again by eval.py) reproduce the live validation taken at step 4."""
    run = tmp_path / "lawa"
    run_golf("train.py", *_FAST, "schedule.iterations=6", "schedule.val_loss_every=4", "averaging=lawa",
             "averaging.lawa_k=1", "averaging.lawa_every=4", f"hydra.run.dir={run}", data_root=data_root)
    metrics = json.loads((run / "metrics.json").read_text())
    vals = _val_history(run)
    assert metrics["steps"] == 6 and set(vals) == {0, 4, 6}
    assert vals[4] < vals[0] - 0.01  # training moved the weights
    assert metrics["val_loss"] == vals[6] == pytest.approx(vals[4], abs=1e-6)
    run_golf("eval.py", f"path={run / 'checkpoint.pt'}", "logger=none", "eval.max_tokens=16384",
             "eval.batch_tokens=16384", f"out={tmp_path / 'eval.json'}", data_root=data_root)
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["val_loss"] == pytest.approx(vals[4], abs=1e-6)


def _initial_weights() -> dict[str, torch.Tensor]:
    """The loop's initial weights for the TINY_OVERRIDES model: seed, then build (golf/train/trainer.py: Trainer.build order)."""
    from golf.model import ModelConfig, build_model
    from golf.train.context import seed_everything

    seed_everything(1337)
    model = build_model(ModelConfig(num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ema_weights_are_what_the_loop_checkpoints(data_root: Path, tmp_path: Path):
    """With decay 0.999 the EMA after 4 steps sits within (1 − 0.999)·4 of the initial weights, while one live
    Adam step alone moves the embedding by ~lr (0.05·scale): the checkpoint must hold the EMA."""
    run = tmp_path / "ema"
    run_golf("train.py", *_FAST, "schedule.iterations=4", "averaging=ema", "averaging.ema_decay=0.999",
             f"hydra.run.dir={run}", data_root=data_root)
    from golf.train.checkpoint import load_checkpoint

    saved = load_checkpoint(run / "checkpoint.pt").model
    init = _initial_weights()
    drift = max((saved[k] - init[k]).abs().max().item() for k in init)
    assert 0 < drift < 2e-3, drift


def test_loop_clips_the_global_gradient_norm(data_root: Path, tmp_path: Path):
    """A global-norm clip of 1e-12 leaves Adam and Muon steps far below their eps, so three steps at the
    official learning rates must leave the validation loss where it started (unclipped, the same three steps
    move it from 6.93 to 7.78)."""
    run = tmp_path / "clip"
    run_golf("train.py", *_FAST, "schedule.iterations=3", "schedule.val_loss_every=3", "schedule.warmdown_iters=0",
             "optim.grad_clip_norm=1e-12", f"hydra.run.dir={run}", data_root=data_root)
    vals = _val_history(run)
    assert set(vals) == {0, 3}
    assert abs(vals[3] - vals[0]) < 1e-3, vals
