"""Fused training kernels of the 2026-04-27 record, as Triton kernels on CUDA with exact PyTorch fallbacks.

* ``softcapped_cross_entropy(z, targets, softcap)``: mean over rows of CE(softcap * tanh(z / softcap), target)
  in fp32 from the PRE-softcap logits z [N, V], in one pass per row (online log-sum-exp), without storing the
  softcapped logits; the backward recomputes them (record PR #1787 ``FUSED_CE_ENABLED``).
* ``fused_leaky_relu2_mlp(x, w_fc, w_proj, slope)``: the record's fused MLP (PR #1530): one tiled Triton matmul
  computes pre = x @ w_fc.T with post = leaky_relu(pre, slope)² in its epilogue (both stored), then
  out = post @ w_proj.T on cuBLAS; the backward runs the same kernel on grad_out @ w_proj with the activation
  derivative in its epilogue (dpre = (grad_out @ w_proj) * 2 * leaky(pre) * (1 | slope)), the weight and input
  grads on cuBLAS. golf's kernel is a portable masked pointer-tiled matmul (any shape, any CUDA GPU, the
  interpreter); the record's is a persistent TMA kernel for H100 with bf16 hard-coded.
* ``leaky_relu2(h, slope)``: leaky_relu(h, slope)² with a fused backward 2 * leaky(h) * (1 | slope), the
  activation alone (matmuls on cuBLAS): golf's earlier form of PR #1530, ``model.fused_mlp_kernel=activation``.

The PyTorch formulas (``*_reference``) are the fallback on CPU, without Triton or for non-CUDA tensors, and the
reference the kernels are tested against.

Triton interpreter: with ``TRITON_INTERPRET=1`` in the environment when this module is imported and Triton
importable, the kernels also run on CPU tensors (Triton executes them through numpy; slow, for tests only):
``make test-kernels`` installs Triton into ``.triton-interp/`` and runs tests/test_kernels.py that way. Without
the variable CPU tensors always take the exact PyTorch fallback, and a CPU build of torch has no Triton at all.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # Triton ships with CUDA builds of PyTorch; CPU builds have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

INTERPRET = triton is not None and os.environ.get("TRITON_INTERPRET", "0") == "1"
"""Whether Triton's interpreter is on (read once at import, as ``triton.jit`` reads it at decoration)."""


def triton_available(t: Tensor) -> bool:
    """Whether the Triton kernels run on ``t``: a CUDA tensor with Triton importable, or, under the Triton
    interpreter (``TRITON_INTERPRET=1`` at import), a CPU tensor."""
    if triton is None:
        return False
    return t.is_cuda or (INTERPRET and t.device.type == "cpu")


def softcapped_ce_reference(z: Tensor, targets: Tensor, softcap: float) -> Tensor:
    """Per-row CE in fp32: F.cross_entropy(softcap * tanh(z / softcap), targets, reduction="none")."""
    logits = softcap * torch.tanh(z.float() / softcap)
    return F.cross_entropy(logits, targets, reduction="none")


def leaky_relu2_reference(h: Tensor, slope: float = 0.5) -> Tensor:
    """leaky_relu(h, slope)² (PR #493)."""
    return F.leaky_relu(h, negative_slope=slope).square()


def leaky_relu2_mlp_reference(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float = 0.5) -> Tensor:
    """proj(leaky_relu(fc(x), slope)²) as golf's eager MLP: weights cast to x.dtype (CastedLinear)."""
    return F.linear(leaky_relu2_reference(F.linear(x, w_fc.to(x.dtype)), slope), w_proj.to(x.dtype))


if triton is not None:

    @triton.jit
    def _tanh(u):
        # tanh(u) = sign(u) (1 - e) / (1 + e), e = exp(-2|u|) in (0, 1]: no overflow for any logit
        e = tl.exp(-2.0 * tl.abs(u))
        t = (1.0 - e) / (1.0 + e)
        return tl.where(u < 0, -t, t)

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
            c = softcap * _tanh(z / softcap)
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
            th = _tanh(z / softcap)
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

    @triton.jit
    def _mm_lrelu2(a_ptr, b_ptr, c_ptr, aux_ptr, M, N, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, slope,
                   FORWARD: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, BM: tl.constexpr,
                   BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
        # acc = A [M, K] @ B [K, N] in fp32, rounded to c's dtype (as F.linear's output), then the epilogue:
        # FORWARD: c = pre, aux = leaky(pre)² | else: aux holds pre, c = acc * 2 * leaky(pre) * (1 | slope).
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BM)
        tiles_n = tl.cdiv(N, BN)
        per_group = GROUP_M * tiles_n  # grouped tile order: GROUP_M row tiles share their B columns in L2
        first_m = (pid // per_group) * GROUP_M
        rows_in_group = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % rows_in_group
        pid_n = (pid % per_group) // rows_in_group
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        a_ptrs = a_ptr + rm[:, None].to(tl.int64) * s_am + rk[None, :] * s_ak
        b_ptrs = b_ptr + rk[:, None] * s_bk + rn[None, :].to(tl.int64) * s_bn
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, K, BK):
            a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] + k0 < K), other=0.0)
            b = tl.load(b_ptrs, mask=(rk[:, None] + k0 < K) & (rn[None, :] < N), other=0.0)
            if UPCAST:  # interpreter: its dot multiplies bf16's raw uint16 bits; fp32 products are the same math
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
            a_ptrs += BK * s_ak
            b_ptrs += BK * s_bk
        dtype = c_ptr.dtype.element_ty
        v = acc.to(dtype).to(tl.float32)
        offs = rm[:, None].to(tl.int64) * s_cm + rn[None, :] * s_cn
        mask = (rm[:, None] < M) & (rn[None, :] < N)
        if FORWARD:
            tl.store(c_ptr + offs, v.to(dtype), mask=mask)
            act = tl.where(v > 0, v, (v * slope).to(dtype).to(tl.float32))  # rounded as eager leaky_relu
            tl.store(aux_ptr + offs, (act * act).to(dtype), mask=mask)
        else:
            pre = tl.load(aux_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(pre > 0, 2.0 * pre, (2.0 * slope * slope) * pre)
            tl.store(c_ptr + offs, (v * d).to(dtype), mask=mask)


_CE_BLOCK = 1024
_EW_BLOCK = 1024
_MM_BLOCKS = dict(BM=128, BN=128, BK=64, GROUP_M=8)  # bf16/fp16; fp32 halves BK (shared memory)


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


def _mm_lrelu2_launch(a: Tensor, b: Tensor, slope: float, pre: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """a [M, K] @ b [K, N] (any strides) with the LeakyReLU² epilogue: (pre, post) when ``pre`` is None, else
    (dpre, pre) with dpre = (a @ b) * d leaky(pre)² / d pre. fp32 dots in full precision (ieee), as F.linear with
    torch's default allow_tf32=False; bf16/fp16 dots (Triton's default precision) accumulate in fp32."""
    (m, k), n = a.shape, b.shape[1]
    c = torch.empty(m, n, device=a.device, dtype=a.dtype)
    aux = torch.empty_like(c) if pre is None else pre.contiguous()
    blocks = dict(_MM_BLOCKS, BK=_MM_BLOCKS["BK"] // (2 if a.dtype == torch.float32 else 1))
    precision = "ieee" if a.dtype == torch.float32 else "tf32"
    grid = (triton.cdiv(m, blocks["BM"]) * triton.cdiv(n, blocks["BN"]),)
    _mm_lrelu2[grid](a, b, c, aux, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0),
                     c.stride(1), float(slope), FORWARD=pre is None, PRECISION=precision, UPCAST=INTERPRET,
                     num_warps=8, num_stages=3, **blocks)
    return c, aux


class _FusedLeakyReLU2MLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        pre, post = _mm_lrelu2_launch(x2, w_fc.t(), slope)
        out = F.linear(post, w_proj)
        ctx.save_for_backward(x2, w_fc, w_proj, pre, post)
        ctx.slope = float(slope)
        return out.view(*x.shape[:-1], w_proj.shape[0])

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x2, w_fc, w_proj, pre, post = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(post.dtype)
        d_proj = g.t() @ post
        dpre, _ = _mm_lrelu2_launch(g, w_proj, ctx.slope, pre=pre)
        d_fc = dpre.t() @ x2
        dx = (dpre @ w_fc).view(*grad_out.shape[:-1], x2.shape[-1])
        return dx, d_fc, d_proj, None


def fused_leaky_relu2_mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float = 0.5) -> Tensor:
    """proj(leaky_relu(fc(x), slope)²) for x [..., d], w_fc [h, d], w_proj [d, h] -> [..., d] (PR #1530).

    Weights are cast to the matmul dtype as CastedLinear does: the autocast dtype when autocast is on for x's
    device, else x.dtype. Triton matmul+activation kernel (forward and backward, see the module docstring) where
    ``triton_available(x)``, leaky_relu2_mlp_reference otherwise. Raises ValueError for mismatched shapes.
    """
    if w_fc.ndim != 2 or w_proj.shape != w_fc.shape[::-1] or x.shape[-1] != w_fc.shape[1]:
        raise ValueError(f"fused_leaky_relu2_mlp: x {tuple(x.shape)}, w_fc {tuple(w_fc.shape)}, "
                         f"w_proj {tuple(w_proj.shape)}; need w_fc [h, d], w_proj [d, h], x [..., d]")
    if not triton_available(x):
        return leaky_relu2_mlp_reference(x, w_fc, w_proj, slope)
    kind = x.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
    with torch.autocast(kind, enabled=False):
        return _FusedLeakyReLU2MLP.apply(x.to(dtype), w_fc.to(dtype), w_proj.to(dtype), float(slope))
