"""Fused softcapped CE and LeakyReLU² (2026-04-27 record, PR #1787 / #1530): Triton kernels against the exact
PyTorch formulas (CUDA only), the fallbacks against the record's own eager formulas and in the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.model import build_model
from golf.model.config import ModelConfig
from golf.model.kernels import (
    leaky_relu2,
    leaky_relu2_reference,
    softcapped_ce_reference,
    softcapped_cross_entropy,
    triton_available,
)

pytestmark = pytest.mark.usefixtures("one_thread")
cuda = pytest.mark.skipif(not (torch.cuda.is_available() and triton_available(torch.zeros(1).cuda()
                                                                               if torch.cuda.is_available() else torch.zeros(1))),
                          reason="needs CUDA and Triton")


def test_fallbacks_are_the_record_formulas():
    torch.manual_seed(0)
    z, t = torch.randn(64, 300) * 40, torch.randint(0, 300, (64,))
    logits = 30.0 * torch.tanh(z / 30.0)  # record GPT.forward non-fused path
    assert torch.equal(softcapped_cross_entropy(z, t, 30.0), F.cross_entropy(logits.float(), t, reduction="mean"))
    h = torch.randn(100)
    assert torch.equal(leaky_relu2(h, 0.5), F.leaky_relu(h, negative_slope=0.5).square())


def test_fused_flags_leave_the_cpu_model_unchanged():
    cfg = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, mlp_activation="leaky_relu2")
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**cfg))
    fused = build_model(ModelConfig(**cfg, fused_ce=True, fused_mlp=True))
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    assert torch.equal(plain(x, y), fused(x, y))
    with pytest.raises(ValueError, match="reduction"):
        softcapped_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 30.0, reduction="sum")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_softcapped_ce_equals_reference(dtype):
    torch.manual_seed(0)
    z = (torch.randn(257, 8192, device="cuda") * 20).to(dtype).requires_grad_()
    t = torch.randint(0, 8192, (257,), device="cuda")
    g = torch.randn(257, device="cuda")
    ours = softcapped_cross_entropy(z, t, 30.0, reduction="none")
    (dz,) = torch.autograd.grad((ours * g).sum(), z)
    z_ref = z.detach().float().requires_grad_()
    ref = softcapped_ce_reference(z_ref, t, 30.0)
    (dz_ref,) = torch.autograd.grad((ref * g).sum(), z_ref)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dz.float(), dz_ref, rtol=2e-2, atol=1e-5 if dtype == torch.float32 else 1e-3)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_leaky_relu2_equals_reference(dtype):
    torch.manual_seed(0)
    h = torch.randn(4097, 300, device="cuda").to(dtype).requires_grad_()
    g = torch.randn_like(h)
    y = leaky_relu2(h, 0.5)
    (dh,) = torch.autograd.grad((y * g).sum(), h)
    h_ref = h.detach().clone().requires_grad_()
    y_ref = leaky_relu2_reference(h_ref, 0.5)
    (dh_ref,) = torch.autograd.grad((y_ref * g).sum(), h_ref)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(dh, dh_ref, **tol)
