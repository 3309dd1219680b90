"""Tests for golf.optim: Newton–Schulz, Muon (single + 2-process gloo), routing, schedules, configs.

Each expected value is derived from the official openai/parameter-golf train_gpt.py formulas
(Muon L96-168, optimizer split L846-893, lr_mul L924-933, momentum warmup L1021-1024).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from golf.optim import (
    NS5_COEFFS,
    Muon,
    OptimConfig,
    OptimConfigError,
    ParamRoutingError,
    ScheduleConfig,
    apply_lr_scale,
    build_optimizers,
    is_control_tensor,
    lr_multiplier,
    muon_momentum_at,
    set_muon_momentum,
    split_params,
    zeropower_via_newtonschulz5,
)
from golf.train.dist import teardown

# ----------------------------------------------------------------------------------------------
# Newton–Schulz
# ----------------------------------------------------------------------------------------------


def _ns_via_svd(G: torch.Tensor, steps: int) -> torch.Tensor:
    """Independent float64 reference: the quintic acts on each normalized singular value s as
    s ← a·s + b·s³ + c·s⁵ while the singular vectors stay fixed, so NS(G) = U·diag(p^steps(s/‖G‖_F))·Vᵀ."""
    a, b, c = NS5_COEFFS
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    s = S / (G.double().norm() + 1e-7)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return U @ torch.diag(s) @ Vh


def _ns_bf16_reference(G: torch.Tensor, steps: int) -> torch.Tensor:
    """The official bf16 recipe written out step by step (same rounding points, different code)."""
    a, b, c = NS5_COEFFS
    Y = G.to(torch.bfloat16)
    Y = Y / (Y.norm() + 1e-7)
    tall = Y.shape[0] > Y.shape[1]
    wide = Y.mT if tall else Y
    for _ in range(steps):
        gram = wide @ wide.mT
        poly = gram * b + (gram * c) @ gram
        wide = wide * a + poly @ wide
    return wide.mT if tall else wide


@pytest.mark.parametrize("shape", [(32, 96), (96, 32)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_newton_schulz_singular_values_near_one(shape, dtype):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = zeropower_via_newtonschulz5(G, steps=5, compute_dtype=dtype)
    assert X.shape == G.shape and X.dtype == dtype
    sv = torch.linalg.svdvals(X.float())
    # the quintic with (3.4445, -4.7750, 2.0315) oscillates in roughly [0.7, 1.2] instead of converging to 1
    assert sv.min() > 0.5 and sv.max() < 1.5, sv


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (16, 16)])
def test_newton_schulz_matches_svd_polynomial_reference(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = zeropower_via_newtonschulz5(G, steps=5, compute_dtype=torch.float64)
    torch.testing.assert_close(got, _ns_via_svd(G, 5), rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_newton_schulz_bf16_is_bitwise_the_official_recipe(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    got = zeropower_via_newtonschulz5(G, steps=5)  # default compute_dtype = bf16 (official)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, _ns_bf16_reference(G, 5))
    # fp32 (the CPU-speed option) agrees up to bf16 rounding
    fp32 = zeropower_via_newtonschulz5(G, steps=5, compute_dtype=torch.float32)
    torch.testing.assert_close(got.float(), fp32, rtol=0, atol=0.05)


def test_newton_schulz_per_step_coefficients_and_errors():
    G = torch.randn(8, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    same = zeropower_via_newtonschulz5(G, 3, coeffs=[NS5_COEFFS] * 3, compute_dtype=torch.float64)
    torch.testing.assert_close(same, zeropower_via_newtonschulz5(G, 3, compute_dtype=torch.float64))
    with pytest.raises(ValueError, match="triples"):
        zeropower_via_newtonschulz5(G, 3, coeffs=[NS5_COEFFS] * 2)
    with pytest.raises(ValueError, match="2-D"):
        zeropower_via_newtonschulz5(torch.zeros(2, 3, 4), 5)


# ----------------------------------------------------------------------------------------------
# Muon, single process
# ----------------------------------------------------------------------------------------------


def _hand_update(g: torch.Tensor, buf: torch.Tensor, mu: float, nesterov: bool) -> tuple[torch.Tensor, torch.Tensor]:
    buf = mu * buf + g
    u = g + mu * buf if nesterov else buf
    u = _ns_via_svd(u, 5) * math.sqrt(max(1.0, g.shape[0] / g.shape[1]))
    return u, buf


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(12, 6), (6, 12)])
def test_muon_two_steps_equal_hand_computation(nesterov, shape):
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(*shape, generator=gen, dtype=torch.float64)
    grads = [torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    lr, mu = 0.04, 0.9
    p = nn.Parameter(w0.clone())
    opt = Muon([p], lr=lr, momentum=mu, backend_steps=5, nesterov=nesterov, compute_dtype=torch.float64)
    expected, buf = w0.clone(), torch.zeros_like(w0)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        u, buf = _hand_update(g, buf, mu, nesterov)
        expected -= lr * u
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], buf, rtol=0, atol=1e-12)


def test_muon_default_path_rounds_update_through_bf16():
    gen = torch.Generator().manual_seed(5)
    w0, g = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    p = nn.Parameter(w0.clone())
    p.grad = g.clone()
    Muon([p], lr=0.04, momentum=0.95, backend_steps=5).step()
    update = _ns_bf16_reference(g + 0.95 * g, 5)  # first step: buf = g, nesterov u = g + mu*g
    update = update * (16 / 8) ** 0.5  # scale applied in bf16 like the official code
    assert torch.equal(p.detach(), w0 - 0.04 * update.float())


def test_muon_skips_params_without_grad_and_restores_state():
    gen = torch.Generator().manual_seed(6)
    a, b = nn.Parameter(torch.randn(8, 8, generator=gen)), nn.Parameter(torch.randn(4, 8, generator=gen))
    b_before = b.detach().clone()
    opt = Muon([a, b], lr=0.02, momentum=0.95, backend_steps=5, compute_dtype=torch.float32)
    a.grad = torch.randn(8, 8, generator=gen)
    opt.step()
    assert torch.equal(b.detach(), b_before)  # no grad -> zero update, no state
    # warmup priming rolls back optimizer state with state_dict / load_state_dict
    saved, a_saved = copy.deepcopy(opt.state_dict()), a.detach().clone()
    opt.step()
    a_after = a.detach().clone()
    opt.load_state_dict(saved)
    with torch.no_grad():
        a.copy_(a_saved)
    opt.step()
    assert torch.equal(a.detach(), a_after)


def test_muon_rejects_non_matrix_params():
    with pytest.raises(ValueError, match="2-D"):
        Muon([nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9, backend_steps=5)


def test_muon_momentum_warmup_values():
    cfg = OptimConfig()
    assert muon_momentum_at(0, cfg) == pytest.approx(0.85)
    assert muon_momentum_at(250, cfg) == pytest.approx(0.90)
    assert muon_momentum_at(500, cfg) == pytest.approx(0.95)
    assert muon_momentum_at(1000, cfg) == pytest.approx(0.95)
    assert muon_momentum_at(0, OptimConfig(muon_momentum_warmup_steps=0)) == pytest.approx(0.95)


# ----------------------------------------------------------------------------------------------
# Muon, two gloo processes
# ----------------------------------------------------------------------------------------------

_DIST_SHAPES = [(16, 8), (8, 24), (12, 12)]  # 3 params: rank 0 owns 0 and 2, rank 1 owns 1


def _dist_inputs():
    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(*s, generator=gen) for s in _DIST_SHAPES]
    grads = [[torch.randn(*s, generator=gen) for s in _DIST_SHAPES] for _ in range(2)]
    return weights, grads


def _run_muon(weights, grads) -> list[torch.Tensor]:
    params = [nn.Parameter(w.clone()) for w in weights]
    opt = Muon(params, lr=0.04, momentum=0.95, backend_steps=5)  # rank/world from torch.distributed
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in params]


def _dist_worker(rank: int, store_path: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    try:
        weights, grads = _dist_inputs()
        torch.save(_run_muon(weights, grads), f"{out_dir}/rank{rank}.pt")
        teardown(barrier=True)  # no rank leaves gloo while a peer still has collectives in flight
    finally:
        teardown()


def test_distributed_muon_matches_single_process(tmp_path):
    mp.spawn(_dist_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = _run_muon(*_dist_inputs())
    for r0, r1, s in zip(rank0, rank1, single, strict=True):
        assert torch.equal(r0, r1)
        assert torch.equal(r0, s)
    assert not torch.equal(single[1], _dist_inputs()[0][1])  # rank 1's share was actually applied


# ----------------------------------------------------------------------------------------------
# LR schedule
# ----------------------------------------------------------------------------------------------


def test_lr_multiplier_without_warmdown_is_one():
    cfg = ScheduleConfig(warmdown_iters=0)
    assert lr_multiplier(0, 0.0, cfg) == 1.0
    assert lr_multiplier(19_999, 599_999.0, cfg) == 1.0


def test_lr_multiplier_iteration_warmdown():
    cfg = ScheduleConfig(iterations=100, warmdown_iters=20, max_wallclock_seconds=0)
    assert lr_multiplier(79, 1e9, cfg) == 1.0
    assert lr_multiplier(80, 0.0, cfg) == 1.0  # (100-80)/20
    assert lr_multiplier(90, 0.0, cfg) == pytest.approx(0.5)
    assert lr_multiplier(99, 0.0, cfg) == pytest.approx(0.05)
    assert lr_multiplier(100, 0.0, cfg) == 1.0  # official quirk: step == iterations is outside the window
    short = ScheduleConfig(iterations=10, warmdown_iters=20, max_wallclock_seconds=-1)
    assert lr_multiplier(0, 0.0, short) == pytest.approx(0.5)  # warmdown longer than the run


def test_lr_multiplier_wallclock_warmdown():
    cfg = ScheduleConfig(warmdown_iters=1200, max_wallclock_seconds=600.0)
    assert lr_multiplier(0, 0.0, cfg) == 1.0  # no step-time estimate yet
    assert lr_multiplier(1000, 100_000.0, cfg) == 1.0  # 100 ms/step: window 120 s, 500 s remain
    # 375 ms/step -> window 450 s; 225 s remain = half the window
    assert lr_multiplier(1000, 375_000.0, cfg) == pytest.approx(0.5)
    assert lr_multiplier(1600, 600_000.0, cfg) == 0.0  # reaches 0 exactly at the cap
    assert lr_multiplier(1700, 650_000.0, cfg) == 0.0  # and stays there
    # the window edge: remaining == warmdown_ms gives exactly 1
    assert lr_multiplier(1000, 600_000.0 / 2.2, cfg) == pytest.approx(1.0)


def test_apply_lr_scale_and_set_momentum():
    model = _TinyGPT(num_layers=2)
    optimizers = build_optimizers(model, OptimConfig(), tie_embeddings=True)
    apply_lr_scale(optimizers, 0.5)
    assert [g["lr"] for o in optimizers for g in o.param_groups] == pytest.approx([0.025, 0.02, 0.02])
    set_muon_momentum(optimizers, 0.9)
    assert optimizers[1].param_groups[0]["momentum"] == 0.9
    assert "momentum" not in optimizers[0].param_groups[0]
    with pytest.raises(KeyError, match="base_lr"):
        apply_lr_scale([torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)], 0.5)


# ----------------------------------------------------------------------------------------------
# Parameter routing
# ----------------------------------------------------------------------------------------------


class _Attn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, d // 2, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_gain = nn.Parameter(torch.ones(2))


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn = _Attn(d)
        self.fc = nn.Linear(d, 2 * d, bias=False)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack([torch.ones(d), torch.zeros(d)]))  # 2-D control tensor


class _TinyGPT(nn.Module):
    """Parameter tree shaped like the official GPT (L650-724), with d=8."""

    def __init__(self, num_layers: int = 2, tie: bool = True, d: int = 8, vocab: int = 16) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.skip_weights = nn.Parameter(torch.ones(num_layers // 2, d))
        self.blocks = nn.ModuleList(_Block(d) for _ in range(num_layers))
        self.lm_head = None if tie else nn.Linear(d, vocab, bias=False)


def _names(groups, key):
    return [n for n, _ in groups[key]]


def test_split_params_routes_official_tree():
    groups = split_params(_TinyGPT(num_layers=2, tie=False), OptimConfig())
    assert _names(groups, "embed") == ["tok_emb.weight"]
    assert _names(groups, "head") == ["lm_head.weight"]
    assert _names(groups, "matrix") == [
        f"blocks.{i}.{n}" for i in range(2) for n in ("attn.c_q.weight", "attn.c_k.weight", "attn.proj.weight", "fc.weight")
    ]
    # named_parameters order (a module's own params before its children's), blocks first, then skip_weights
    assert _names(groups, "scalar") == [
        f"blocks.{i}.{n}" for i in range(2) for n in ("attn_scale", "mlp_scale", "resid_mix", "attn.q_gain")
    ] + ["skip_weights"]
    tied = split_params(_TinyGPT(num_layers=2, tie=True), OptimConfig())
    assert tied["head"] == []
    assert is_control_tensor("blocks.3.resid_mix", OptimConfig().control_tensor_patterns)
    assert not is_control_tensor("blocks.3.attn.c_q.weight", OptimConfig().control_tensor_patterns)


def test_split_params_skips_empty_skip_weights_and_covers_every_param():
    model = _TinyGPT(num_layers=1)  # official: skip_weights has 0 rows and joins no optimizer
    groups = split_params(model, OptimConfig())
    routed = [p for named in groups.values() for _, p in named]
    assert len({id(p) for p in routed}) == len(routed)
    assert {id(p) for p in routed} == {id(p) for p in model.parameters() if p.numel() > 0}


def test_split_params_raises_for_unroutable_param():
    model = _TinyGPT()
    model.bigram_proj = nn.Linear(4, 8, bias=False)  # 2-D outside blocks, no declared route
    with pytest.raises(ParamRoutingError, match=r"bigram_proj\.weight"):
        split_params(model, OptimConfig())
    model.blocks[0].bank = nn.Parameter(torch.zeros(2, 3, 4))  # 3-D inside blocks
    with pytest.raises(ParamRoutingError, match=r"blocks\.0\.bank"):
        split_params(model, OptimConfig())


class _Bigram(nn.Module):
    optim_groups = {"embed.weight": "embed", "proj.weight": "matrix", "scale": "scalar"}

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(32, 4)
        self.proj = nn.Linear(4, 8, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.05))


def test_split_params_follows_declared_routes_and_checks_them():
    model = _TinyGPT()
    model.bigram = _Bigram()
    groups = split_params(model, OptimConfig())
    assert _names(groups, "embed") == ["tok_emb.weight", "bigram.embed.weight"]
    assert _names(groups, "matrix")[-1] == "bigram.proj.weight"
    assert "bigram.scale" in _names(groups, "scalar")
    model.bigram.optim_groups = {"proj.wieght": "matrix"}  # typo is caught
    with pytest.raises(ParamRoutingError, match="proj.wieght"):
        split_params(model, OptimConfig())
    model.bigram.optim_groups = {"embed.weight": "adam"}
    with pytest.raises(ParamRoutingError, match="must be one of"):
        split_params(model, OptimConfig())


def test_split_params_on_golf_baseline_model_matches_official_counts():
    from golf.model import build_model
    from golf.model.config import ModelConfig

    model = build_model(ModelConfig(tie_embeddings=True))
    groups = split_params(model, OptimConfig())
    sizes = {k: (len(v), sum(p.numel() for _, p in v)) for k, v in groups.items()}
    # official model_params:17059912 = embed 524,288 + 9 blocks x 6 matrices (16,515,072)
    # + 9 x (attn_scale, mlp_scale, resid_mix, q_gain) + skip_weights (20,552)
    assert sizes == {"embed": (1, 524_288), "head": (0, 0), "matrix": (54, 16_515_072), "scalar": (37, 20_552)}
    assert sum(n for _, n in sizes.values()) == 17_059_912


@pytest.mark.parametrize("tie", [True, False])
def test_build_optimizers_official_split(tie):
    cfg = OptimConfig()
    model = _TinyGPT(num_layers=2, tie=tie)
    opts = build_optimizers(model, cfg, tie_embeddings=tie)
    kinds = [type(o).__name__ for o in opts]
    assert kinds == (["Adam", "Muon", "Adam"] if tie else ["Adam", "Adam", "Muon", "Adam"])
    lrs = [o.param_groups[0]["base_lr"] for o in opts]
    assert lrs == ([0.05, 0.04, 0.04] if tie else [0.6, 0.008, 0.04, 0.04])
    for o in opts:
        for g in o.param_groups:
            assert g["lr"] == g["base_lr"]
            if isinstance(o, torch.optim.Adam):
                assert g["betas"] == (0.9, 0.95) and g["eps"] == 1e-8 and g["weight_decay"] == 0
                assert not g["fused"]  # CPU parameters -> non-fused kernels
    muon = next(o for o in opts if isinstance(o, Muon))
    assert muon.param_groups[0]["momentum"] == 0.95 and muon.param_groups[0]["backend_steps"] == 5
    assert muon.compute_dtype == torch.float32  # muon_dtype=auto: fp32 for CPU parameters, bf16 on CUDA
    assert build_optimizers(model, OptimConfig(muon_dtype="float32"), tie)[-2].compute_dtype == torch.float32
    # every parameter is stepped by exactly one optimizer
    stepped = [id(p) for o in opts for g in o.param_groups for p in g["params"]]
    assert sorted(stepped) == sorted(id(p) for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Config validation
# ----------------------------------------------------------------------------------------------


def test_config_defaults_are_official():
    cfg, sched = OptimConfig(), ScheduleConfig()
    assert (cfg.matrix_lr, cfg.scalar_lr, cfg.tied_embed_lr, cfg.embed_lr, cfg.head_lr) == (0.04, 0.04, 0.05, 0.6, 0.008)
    assert (cfg.muon_momentum, cfg.muon_momentum_warmup_start, cfg.muon_momentum_warmup_steps) == (0.95, 0.85, 500)
    assert (cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.grad_clip_norm, cfg.muon_backend_steps) == (0.9, 0.95, 1e-8, 0.0, 5)
    assert cfg.control_tensor_patterns == [
        "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
        "q_gain", "skip_weight", "skip_weights",
    ]
    assert (sched.iterations, sched.warmdown_iters, sched.max_wallclock_seconds, sched.warmup_steps) == (
        20000, 1200, 600.0, 20
    )
    assert (sched.train_log_every, sched.val_loss_every) == (200, 1000)
    assert sched.max_wallclock_ms == 600_000.0 and ScheduleConfig(max_wallclock_seconds=0).max_wallclock_ms is None


@pytest.mark.parametrize(
    ("cls", "kwargs", "field_name"),
    [
        (OptimConfig, {"matrix_lr": -0.1}, "matrix_lr"),
        (OptimConfig, {"muon_momentum": 1.0}, "muon_momentum"),
        (OptimConfig, {"muon_backend_steps": 0}, "muon_backend_steps"),
        (OptimConfig, {"beta2": 1.5}, "beta2"),
        (OptimConfig, {"adam_eps": 0.0}, "adam_eps"),
        (OptimConfig, {"muon_dtype": "float16"}, "muon_dtype"),
        (OptimConfig, {"control_tensor_patterns": ["q_gain", ""]}, "control_tensor_patterns"),
        (OptimConfig, {"name": "adamw"}, "name"),
        (ScheduleConfig, {"iterations": -1}, "iterations"),
        (ScheduleConfig, {"warmdown_iters": -5}, "warmdown_iters"),
        (ScheduleConfig, {"max_wallclock_seconds": float("nan")}, "max_wallclock_seconds"),
        (ScheduleConfig, {"name": "cosine"}, "name"),
    ],
)
def test_config_validation_names_the_field(cls, kwargs, field_name):
    group = {"OptimConfig": "optim", "ScheduleConfig": "schedule"}[cls.__name__]
    with pytest.raises(OptimConfigError, match=rf"{group}\.{field_name}="):
        cls(**kwargs)
    assert issubclass(OptimConfigError, ValueError)


def test_every_schedule_name_the_config_allows_is_registered():
    """ScheduleConfig validates `schedule.name` against SCHEDULE_NAMES; lr_multiplier then looks it up without a
    check of its own (a generated train_gpt.py ships only the baked schedule), so both must list the same."""
    from golf.optim import LR_SCHEDULES
    from golf.optim.config import SCHEDULE_NAMES, OptimConfigError, ScheduleConfig

    assert set(LR_SCHEDULES) == set(SCHEDULE_NAMES)
    with pytest.raises(OptimConfigError, match="schedule.name='cosine'"):
        ScheduleConfig(name="cosine")
