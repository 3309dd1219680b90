"""Fused training kernels of the 2026-04-27 record, as Triton kernels on CUDA with exact PyTorch fallbacks.

* ``softcapped_cross_entropy(z, targets, softcap)``: mean over rows of CE(softcap * tanh(z / softcap), target)
  in fp32 from the PRE-softcap logits z [N, V], in one pass per row (online log-sum-exp), without storing the
  softcapped logits; the backward recomputes them (record PR #1787 ``FUSED_CE_ENABLED``).
* ``leaky_relu2(h, slope)``: leaky_relu(h, slope)² with a fused backward 2 * leaky(h) * (1 | slope) (record
  PR #1530 fuses it with the MLP's first matmul; golf fuses the activation and its backward and leaves the
  matmuls to cuBLAS).

The PyTorch formulas (``*_reference``) are the fallback on CPU, without Triton or for non-CUDA tensors, and the
reference the kernels are tested against (tests/test_kernels.py; the kernel tests skip without CUDA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # Triton ships with CUDA builds of PyTorch; CPU builds have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def triton_available(t: Tensor) -> bool:
    """Whether the Triton kernels can run on ``t`` (CUDA tensor and Triton importable)."""
    return triton is not None and t.is_cuda


def softcapped_ce_reference(z: Tensor, targets: Tensor, softcap: float) -> Tensor:
    """Per-row CE in fp32: F.cross_entropy(softcap * tanh(z / softcap), targets, reduction="none")."""
    logits = softcap * torch.tanh(z.float() / softcap)
    return F.cross_entropy(logits, targets, reduction="none")


def leaky_relu2_reference(h: Tensor, slope: float = 0.5) -> Tensor:
    """leaky_relu(h, slope)² (PR #493)."""
    return F.leaky_relu(h, negative_slope=slope).square()


if triton is not None:

    @triton.jit
    def _ce_fwd(z_ptr, t_ptr, loss_ptr, lse_ptr, stride, n_cols, softcap, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        base = z_ptr + row.to(tl.int64) * stride
        target = tl.load(t_ptr + row)
        m = float("-inf")
        s = 0.0
        tgt = 0.0
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            e2 = tl.exp(2.0 * z / softcap)
            c = softcap * (1.0 - 2.0 / (e2 + 1.0))  # softcap * tanh(z / softcap)
            c = tl.where(mask, c, float("-inf"))
            m_new = tl.maximum(m, tl.max(c, axis=0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(c - m_new), axis=0)
            m = m_new
            tgt += tl.sum(tl.where(cols == target, c, 0.0), axis=0)
        lse = m + tl.log(s)
        tl.store(lse_ptr + row, lse)
        tl.store(loss_ptr + row, lse - tgt)

    @triton.jit
    def _ce_bwd(z_ptr, t_ptr, lse_ptr, g_ptr, dz_ptr, stride, n_cols, softcap, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        base = z_ptr + row.to(tl.int64) * stride
        dbase = dz_ptr + row.to(tl.int64) * stride
        target = tl.load(t_ptr + row)
        lse = tl.load(lse_ptr + row)
        g = tl.load(g_ptr + row)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            e2 = tl.exp(2.0 * z / softcap)
            th = 1.0 - 2.0 / (e2 + 1.0)
            p = tl.exp(softcap * th - lse)
            d = (p - tl.where(cols == target, 1.0, 0.0)) * g * (1.0 - th * th)
            tl.store(dbase + cols, d.to(dz_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _lrelu2_fwd(h_ptr, y_ptr, n, slope, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        a = tl.where(h >= 0, h, h * slope)
        tl.store(y_ptr + offs, (a * a).to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _lrelu2_bwd(h_ptr, g_ptr, dh_ptr, n, slope, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        d = tl.where(h >= 0, 2.0 * h, 2.0 * slope * slope * h)
        tl.store(dh_ptr + offs, (g * d).to(dh_ptr.dtype.element_ty), mask=mask)


_CE_BLOCK = 1024
_EW_BLOCK = 1024


class _SoftcappedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor, softcap: float) -> Tensor:
        z = z.contiguous()
        rows, cols = z.shape
        loss = torch.empty(rows, device=z.device, dtype=torch.float32)
        lse = torch.empty_like(loss)
        _ce_fwd[(rows,)](z, targets, loss, lse, z.stride(0), cols, float(softcap), BLOCK=_CE_BLOCK)
        ctx.save_for_backward(z, targets, lse)
        ctx.softcap = float(softcap)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        z, targets, lse = ctx.saved_tensors
        dz = torch.empty_like(z)
        rows, cols = z.shape
        _ce_bwd[(rows,)](z, targets, lse, grad_loss.float().contiguous(), dz, z.stride(0), cols, ctx.softcap,
                         BLOCK=_CE_BLOCK)
        return dz, None, None


class _LeakyReLU2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, slope: float) -> Tensor:
        h = h.contiguous()
        y = torch.empty_like(h)
        n = h.numel()
        _lrelu2_fwd[(triton.cdiv(n, _EW_BLOCK),)](h, y, n, float(slope), BLOCK=_EW_BLOCK)
        ctx.save_for_backward(h)
        ctx.slope = float(slope)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        (h,) = ctx.saved_tensors
        dh = torch.empty_like(h)
        n = h.numel()
        _lrelu2_bwd[(triton.cdiv(n, _EW_BLOCK),)](h, g.contiguous(), dh, n, ctx.slope, BLOCK=_EW_BLOCK)
        return dh, None


def softcapped_cross_entropy(z: Tensor, targets: Tensor, softcap: float, reduction: str = "mean") -> Tensor:
    """CE of softcapped logits from pre-softcap logits z [N, V] and targets [N] (int64); fp32 result.

    reduction: "mean" (scalar) or "none" ([N]). Triton kernel on CUDA, softcapped_ce_reference otherwise.
    Raises ValueError for other reductions or mismatched shapes.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"softcapped_cross_entropy: reduction {reduction!r}; allowed: mean, none")
    if z.ndim != 2 or targets.shape != z.shape[:1]:
        raise ValueError(f"softcapped_cross_entropy: z {tuple(z.shape)} and targets {tuple(targets.shape)}")
    if triton_available(z):
        loss = _SoftcappedCE.apply(z, targets.contiguous(), float(softcap))
        return loss.mean() if reduction == "mean" else loss
    return F.cross_entropy(softcap * torch.tanh(z.float() / softcap), targets, reduction=reduction)


def leaky_relu2(h: Tensor, slope: float = 0.5) -> Tensor:
    """leaky_relu(h, slope)², Triton forward/backward on CUDA, leaky_relu2_reference otherwise."""
    if triton_available(h):
        return _LeakyReLU2.apply(h, float(slope))
    return leaky_relu2_reference(h, slope)
