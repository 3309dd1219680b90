"""Fused softcapped CE, fused LeakyReLU² MLP matmul and LeakyReLU² (2026-04-27 record, PR #1787 / #1530).

The fallbacks are checked against the record's own eager formulas and in the model (CPU, always). The Triton
kernels are checked, forward and backward, against the exact PyTorch formulas on CUDA, or on CPU under Triton's
interpreter: ``make test-kernels`` (TRITON_INTERPRET=1 with Triton from .triton-interp/). Without either the
kernel tests skip. The interpreter rounds fp32 -> bf16 toward zero (CUDA: to nearest), hence bf16 tolerances of
a couple of bf16 ulps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.model import build_model
from golf.model.config import ModelConfig, ModelConfigError
from golf.model.kernels import (
    INTERPRET,
    fused_leaky_relu2_mlp,
    leaky_relu2,
    leaky_relu2_mlp_reference,
    leaky_relu2_reference,
    softcapped_ce_reference,
    softcapped_cross_entropy,
    triton,
)

pytestmark = pytest.mark.usefixtures("one_thread")
DEVICE = "cuda" if triton is not None and torch.cuda.is_available() else "cpu"
KERNELS = triton is not None and (DEVICE == "cuda" or INTERPRET)
kernels = pytest.mark.skipif(not KERNELS, reason="needs CUDA + Triton, or TRITON_INTERPRET=1 + Triton (make test-kernels)")
fallback = pytest.mark.skipif(INTERPRET, reason="under the Triton interpreter CPU tensors run the kernels")
DTYPES = [torch.float32, torch.bfloat16]


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (also printed: the numbers the report quotes, `pytest -s`)."""
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def _report(name: str, dtype, **diffs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    out = {k: (a.float() - b.float()).abs().max().item() for k, (a, b) in diffs.items()}
    print(f"\n{name} {dtype} on {DEVICE}{' (interpreter)' if INTERPRET else ''}: max abs diff (max |ref|) "
          + ", ".join(f"{k} {v:.3g} ({diffs[k][1].abs().max().item():.3g})" for k, v in out.items()))
    return out


@fallback
def test_fallbacks_are_the_record_formulas():
    torch.manual_seed(0)
    z, t = torch.randn(64, 300) * 40, torch.randint(0, 300, (64,))
    logits = 30.0 * torch.tanh(z / 30.0)  # record GPT.forward non-fused path
    assert torch.equal(softcapped_cross_entropy(z, t, 30.0), F.cross_entropy(logits.float(), t, reduction="mean"))
    h = torch.randn(100)
    assert torch.equal(leaky_relu2(h, 0.5), F.leaky_relu(h, negative_slope=0.5).square())
    x, w1, w2 = torch.randn(2, 5, 16), torch.randn(64, 16), torch.randn(16, 64)
    eager = F.linear(F.leaky_relu(F.linear(x, w1), negative_slope=0.5).square(), w2)  # record MLP eval path
    assert torch.equal(fused_leaky_relu2_mlp(x, w1, w2, 0.5), eager)


@fallback
@pytest.mark.parametrize("kernel", ["matmul", "activation"])
def test_fused_flags_leave_the_cpu_model_unchanged(kernel):
    cfg = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, mlp_activation="leaky_relu2")
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**cfg))
    fused = build_model(ModelConfig(**cfg, fused_ce=True, fused_mlp=True, fused_mlp_kernel=kernel))
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    assert torch.equal(plain(x, y), fused(x, y))


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="reduction"):
        softcapped_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 30.0, reduction="sum")
    with pytest.raises(ValueError, match="w_proj"):
        fused_leaky_relu2_mlp(torch.zeros(2, 8), torch.zeros(16, 8), torch.zeros(16, 8))
    with pytest.raises(ModelConfigError, match="fused_mlp_kernel"):
        ModelConfig(fused_mlp_kernel="cublas")


@kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_softcapped_ce_equals_reference(dtype):
    torch.manual_seed(0)
    rows, vocab = (257, 8192) if DEVICE == "cuda" else (65, 8192)  # 8192: the record's SP8192 vocabulary
    z = (torch.randn(rows, vocab, device=DEVICE) * 20).to(dtype).requires_grad_()
    z.data[0, :7] = torch.tensor([-1e4, 1e4, 0.0, 300.0, -300.0, 1e-3, 30.0])  # tanh saturation, 0, tiny
    t = torch.randint(0, vocab, (rows,), device=DEVICE)
    t[:2] = torch.tensor([1, vocab - 1])  # a saturated target and the last column of the last block
    g = torch.randn(rows, device=DEVICE)
    ours = softcapped_cross_entropy(z, t, 30.0, reduction="none")
    (dz,) = torch.autograd.grad((ours * g).sum(), z)
    z_ref = z.detach().float().requires_grad_()
    ref = softcapped_ce_reference(z_ref, t, 30.0)
    (dz_ref,) = torch.autograd.grad((ref * g).sum(), z_ref)
    _report("softcapped CE", dtype, loss=(ours, ref), dz=(dz, dz_ref))
    assert ours.dtype == torch.float32 and dz.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dz.float(), dz_ref, rtol=2e-2, atol=1e-5 if dtype == torch.float32 else 1e-3)
    mean = softcapped_cross_entropy(z, t, 30.0)
    (dmean,) = torch.autograd.grad(mean, z)  # reduction="mean": an expanded (stride-0) incoming grad
    (dmean_ref,) = torch.autograd.grad(softcapped_ce_reference(z_ref, t, 30.0).mean(), z_ref)
    torch.testing.assert_close(mean, ref.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dmean.float(), dmean_ref, rtol=2e-2, atol=1e-7 if dtype == torch.float32 else 1e-5)


@kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_leaky_relu2_equals_reference(dtype):
    torch.manual_seed(0)
    h = torch.randn(4097, 300, device=DEVICE).to(dtype)
    h[0, :3] = 0.0
    h.requires_grad_()
    g = torch.randn_like(h)
    y = leaky_relu2(h, 0.5)
    (dh,) = torch.autograd.grad((y * g).sum(), h)
    h_ref = h.detach().float().requires_grad_()
    y_ref = leaky_relu2_reference(h_ref, 0.5)
    (dh_ref,) = torch.autograd.grad((y_ref * g.float()).sum(), h_ref)
    _report("leaky_relu2", dtype, y=(y, y_ref), dh=(dh, dh_ref))
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(y.float(), y_ref, **tol)
    torch.testing.assert_close(dh.float(), dh_ref, **tol)


@kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.5, 0.3])
def test_triton_fused_mlp_matmul_equals_linear_and_activation(dtype, slope):
    """x [2, 150, 512] (M = 300: not a multiple of the 128 tile), hidden 2048 = the record's d 512 x 4."""
    torch.manual_seed(0)
    x = torch.randn(2, 150, 512, device=DEVICE).to(dtype).requires_grad_()
    w_fc = (torch.randn(2048, 512, device=DEVICE) / 512 ** 0.5).requires_grad_()  # fp32 masters (CastedLinear)
    w_proj = (torch.randn(512, 2048, device=DEVICE) / 2048 ** 0.5).requires_grad_()
    g = torch.randn(2, 150, 512, device=DEVICE).to(dtype)
    out = fused_leaky_relu2_mlp(x, w_fc, w_proj, slope)
    grads = torch.autograd.grad((out.float() * g.float()).sum(), (x, w_fc, w_proj))
    # reference: F.linear + the reference activation in fp32 on the same (dtype-rounded) inputs
    x_ref, fc_ref, proj_ref = (t.detach().to(dtype).float().requires_grad_() for t in (x, w_fc, w_proj))
    ref = F.linear(leaky_relu2_reference(F.linear(x_ref, fc_ref), slope), proj_ref)
    grads_ref = torch.autograd.grad((ref * g.float()).sum(), (x_ref, fc_ref, proj_ref))
    names = ("out", "dx", "dw_fc", "dw_proj")
    ours_err = [_rel_err(a, b) for a, b in zip((out, *grads), (ref, *grads_ref), strict=True)]
    _report(f"fused MLP matmul slope {slope}", dtype, **dict(zip(names, zip((out, *grads), (ref, *grads_ref),
                                                                         strict=True), strict=True)))
    assert out.dtype == dtype and grads[0].dtype == dtype and grads[1].dtype == torch.float32
    if dtype == torch.float32:
        bounds = [1e-5] * 4
    else:  # bf16: eager PyTorch in bf16 (the fallback: same roundings, other accumulation order) sets the bar
        x_e, fc_e, proj_e = (t.detach().clone().requires_grad_() for t in (x, w_fc, w_proj))
        eager = leaky_relu2_mlp_reference(x_e, fc_e, proj_e, slope)
        eager_grads = torch.autograd.grad((eager.float() * g.float()).sum(), (x_e, fc_e, proj_e))
        eager_err = [_rel_err(a, b) for a, b in zip((eager, *eager_grads), (ref, *grads_ref), strict=True)]
        print("  relative error, ours vs eager bf16: " + ", ".join(
            f"{n} {o:.3g} vs {e:.3g}" for n, o, e in zip(names, ours_err, eager_err, strict=True)))
        # the interpreter rounds bf16 toward zero, a bias the 2048-term proj sum accumulates: x2.5 eager's error
        # here (emulating that rounding in PyTorch reproduces it exactly); CUDA rounds to nearest like eager
        factor = 3 if INTERPRET else 2
        bounds = [factor * e for e in eager_err]
    for name, err, bound in zip(names, ours_err, bounds, strict=True):
        assert err < bound, (name, err, bound)


@kernels
def test_fused_mlp_pre_activation_is_stored_as_f_linear():
    """Forward epilogue: pre = x @ w.T rounded as F.linear's output, post = leaky(pre)² exactly as eager."""
    from golf.model.kernels import _mm_lrelu2_launch

    torch.manual_seed(1)
    x, w = torch.randn(200, 96, device=DEVICE), torch.randn(160, 96, device=DEVICE)
    pre, post = _mm_lrelu2_launch(x, w.t(), 0.5)
    torch.testing.assert_close(pre, F.linear(x, w), rtol=1e-5, atol=1e-5)
    assert torch.equal(post, leaky_relu2_reference(pre, 0.5))  # the epilogue's activation, bit for bit


@kernels
@pytest.mark.parametrize("kernel", ["matmul", "activation"])
def test_fused_model_matches_eager_model(kernel):
    """The whole model with fused_ce + fused_mlp: training loss and every gradient equal the eager model's;
    in eval mode (and with a hook on mlp.fc) the matmul path steps aside, as the record does."""
    cfg = dict(vocab_size=512, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_activation="leaky_relu2",
               mlp_mult=3.0)
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**cfg)).to(DEVICE).train()
    fused = build_model(ModelConfig(**cfg, fused_ce=True, fused_mlp=True, fused_mlp_kernel=kernel)).to(DEVICE).train()
    fused.load_state_dict(plain.state_dict())
    for p in plain.parameters():  # zero-initialized projections would make every MLP gradient trivially zero
        torch.nn.init.normal_(p, std=0.05) if p.ndim == 2 else None
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randint(0, 512, (2, 64), device=DEVICE), torch.randint(0, 512, (2, 64), device=DEVICE)
    loss_p, loss_f = plain(x, y), fused(x, y)
    grads_p = torch.autograd.grad(loss_p, list(plain.parameters()))
    grads_f = torch.autograd.grad(loss_f, list(fused.parameters()))
    worst = max(_rel_err(gf, gp) for gf, gp in zip(grads_f, grads_p, strict=True) if gp.abs().max() > 0)
    print(f"\nmodel fused_mlp_kernel={kernel}: |loss diff| {(loss_f - loss_p).abs().item():.3g}, "
          f"max grad rel err {worst:.3g}")
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=1e-5)
    assert worst < 1e-4
    calls, ce_calls = [], []
    mlp = fused.blocks[0].mlp
    real, real_ce = mlp.fused_mlp, fused.fused_ce_loss
    mlp.fused_mlp = lambda *a: calls.append(1) or real(*a)
    fused.fused_ce_loss = lambda *a: ce_calls.append(1) or real_ce(*a)
    fused(x, y)
    assert calls == ([1] if kernel == "matmul" else []) and ce_calls == [1]
    handle = mlp.fc.register_forward_hook(lambda *a: None)
    fused(x, y)
    handle.remove()
    fused.eval()
    fused(x, y)
    assert calls == ([1] if kernel == "matmul" else [])


def _record_script():
    from record_0427 import load_record_module  # skips without the record folder

    return load_record_module("train_gpt")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_mlp_equals_the_record_mlp(dtype):
    """Oracle: the record's own MLP module (its eager path, use_fused=False: what its fused kernel replaces),
    forward and backward. Bit for bit where golf falls back to PyTorch; within fp32/bf16 rounding with kernels."""
    rec = _record_script().MLP(96, 4.0).train()
    rec.use_fused = False  # the record's Triton MLP needs a Hopper GPU (TMA descriptors, its SM count)
    torch.manual_seed(0)
    x = torch.randn(3, 50, 96, device=DEVICE).to(dtype)
    up, down = torch.randn(384, 96, device=DEVICE) / 10, torch.randn(96, 384, device=DEVICE) / 20
    g = torch.randn(3, 50, 96, device=DEVICE).to(dtype)
    outs = []
    for fn in (lambda *a: rec(*a), lambda *a: fused_leaky_relu2_mlp(*a, 0.5)):
        args = [t.clone().requires_grad_() for t in (x, up, down)]
        y = fn(*args)
        outs.append([y, *torch.autograd.grad((y * g).sum(), args)])
    # bf16: both round (the interpreter toward zero, x2.5 the error, see the test above)
    tol = 1e-5 if dtype == torch.float32 else 3e-2 if INTERPRET else 2e-2
    for name, theirs, ours in zip(("out", "dx", "dup", "ddown"), *outs, strict=True):
        assert ours.dtype == theirs.dtype
        if not KERNELS:
            assert torch.equal(ours, theirs), name
        else:
            print(f"\n{name} {dtype}: relative error vs the record's MLP {_rel_err(ours, theirs):.3g}", end="")
            assert _rel_err(ours, theirs) < tol, name


@kernels
def test_softcapped_ce_equals_the_record_triton_kernels():
    """Oracle: the record's own fused CE Triton kernels (PR #1787), launched on the same logits (on CUDA or in the
    interpreter; its wrapper insists on CUDA). Its softcap is 2c·σ(2z/c) = c·tanh(z/c) + c: same loss, same grad."""
    rec = _record_script()
    torch.manual_seed(0)
    rows, vocab = 33, 8192
    z, t = torch.randn(rows, vocab, device=DEVICE) * 20, torch.randint(0, vocab, (rows,), device=DEVICE)
    g = torch.randn(rows, device=DEVICE)
    loss_rec, lse_rec, dz_rec = torch.empty(rows, device=DEVICE), torch.empty(rows, device=DEVICE), torch.empty_like(z)
    rec._softcapped_ce_fwd_kernel[(rows,)](z, loss_rec, lse_rec, t, z.stride(0), z.stride(1), rows, vocab, 30.0,
                                           block_size=1024)
    rec._softcapped_ce_bwd_kernel[(rows,)](dz_rec, g, lse_rec, z, t, z.stride(0), z.stride(1), dz_rec.stride(0),
                                           dz_rec.stride(1), rows, vocab, 30.0, block_size=1024)
    zz = z.clone().requires_grad_()
    loss = softcapped_cross_entropy(zz, t, 30.0, reduction="none")
    (dz,) = torch.autograd.grad((loss * g).sum(), zz)
    _report("softcapped CE vs the record's kernels", torch.float32, loss=(loss, loss_rec), dz=(dz, dz_rec))
    torch.testing.assert_close(loss, loss_rec, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dz, dz_rec, rtol=1e-4, atol=1e-6)


SHIPPED_CHECK = """
import runpy, sys, torch
g = runpy.run_path(sys.argv[1], run_name="kernels_check")  # defines everything, runs no training
device = sys.argv[2]
h = torch.randn(3000, device=device)
y = torch.empty_like(h)
g["_lrelu2_fwd"][(g["triton"].cdiv(h.numel(), 1024),)](h, y, h.numel(), 0.5, BLOCK=1024)
z = torch.randn(4, 50, device=device) * 20
t = torch.randint(0, 50, (4,), device=device)
loss, lse = torch.empty(4, device=device), torch.empty(4, device=device)
g["_ce_fwd"][(4,)](z, t, loss, lse, z.stride(0), 50, 30.0, BLOCK=64)
print(repr(((y - torch.nn.functional.leaky_relu(h, 0.5).square()).abs().max().item(),
            (loss - torch.nn.functional.cross_entropy(30 * torch.tanh(z / 30), t, reduction="none")).abs().max().item())))
"""


@kernels
def test_the_generated_record_files_kernels_run(tmp_path):
    """record_0427_sota's generated train_gpt.py, as shipped (minified, exec'd from its wrapper), defines kernels
    that Triton accepts and that compute the reference (golf.record.kernel_source)."""
    import subprocess
    import sys

    from record_helpers import preset

    from golf.record import submission_bundle

    script = tmp_path / "train_gpt.py"
    script.write_text(submission_bundle(preset("record_0427_sota")).shipped, encoding="utf-8")
    check = tmp_path / "check.py"
    check.write_text(SHIPPED_CHECK)
    proc = subprocess.run([sys.executable, str(check), str(script), DEVICE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    act_err, ce_err = eval(proc.stdout.strip().splitlines()[-1])
    assert act_err < 1e-5 and ce_err < 1e-4
