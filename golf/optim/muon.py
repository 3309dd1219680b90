"""Muon: momentum SGD whose 2-D updates are orthogonalized by a Newton–Schulz iteration.

Source: the official baseline openai/parameter-golf `train_gpt.py` L96-168 ("As borrowed from
modded-nanogpt"; background https://kellerjordan.github.io/posts/muon/). Defaults reproduce it exactly:

- `zeropower_via_newtonschulz5` casts to bf16, divides by (Frobenius norm of the bf16 copy + 1e-7),
  works on the wide orientation (transpose when rows > cols) and runs the quintic iteration
  `A = X Xᵀ; B = b·A + c·A·A; X = a·X + B·X` with fixed (a, b, c) = (3.4445, −4.7750, 2.0315).
  Operation order is kept as written in the official code (`c * A @ A` is `(c·A) @ A`) because in
  bf16 a different order rounds differently.
- `Muon.step`: `buf ← μ·buf + g`; Nesterov `u = g + μ·buf`; `u ← NS(u)·sqrt(max(1, rows/cols))`;
  round-robin ownership (`i % world_size == rank`); each rank writes its updates into a zero-filled
  flat **bf16** buffer, `all_reduce(SUM)` makes every rank hold all updates, then every parameter
  does `p ← p − lr·u` (update cast to the parameter dtype).

Options (all off by default; the defaults above are the official behaviour):

- Polar Express coefficients (`coeffs=POLAR_EXPRESS_COEFFS`): five per-iteration (a, b, c) tuples instead of one
  fixed tuple (Amsel et al. 2025, arXiv 2505.16932; PR #1344, record
  `2026-04-23_…_PolarNS_MinLR_FusedCE`; seed 001). `norm_scale` > 1 divides by (‖X‖+eps)·norm_scale before
  the iteration (seed 001 uses 1.02, a safety margin that keeps the top singular value below 1).
- Decoupled weight decay (`weight_decay`): `p ← p·(1 − lr·wd)` before `p ← p − lr·u`, with lr the *scheduled*
  group lr (records `2026-03-19_SlidingWindow_FP16Emb_10L_MuonWD_OvertoneInit`,
  `2026-03-22_11L_EMA_GPTQ-lite…`: `p.data.mul_(1.0 - lr * wd)`); applied to every parameter of the group,
  also one that got no gradient this step, as in those records.
- Cautious weight decay (`cautious_wd=True`): decay only the entries where the update and the parameter have
  the same sign, `p ← p − lr·wd·p·[u·p ≥ 0] − lr·u` (Chen et al. 2025 "Cautious Weight Decay",
  arXiv 2510.12402; the `(g * p) >= 0` mask of modded-nanogpt / nanochat's Muon; seed 001).
- Row normalization (`row_normalize=True`, MuonEq-R): before Newton–Schulz, divide each row of the Nesterov
  update by its L2 norm (clamped at 1e-7) (arXiv 2603.28254; PR #1217/#1260, record
  `2026-04-03_MuonEqR_DepthRecurrence_WD090_AllInt6`, `MUON_ROW_NORMALIZE=1`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

Coeffs = tuple[float, float, float] | Sequence[tuple[float, float, float]]
ZeropowerFn = Callable[..., Tensor]

# Keller Jordan's quintic coefficients, applied at every step (official train_gpt.py L99).
NS5_COEFFS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

# Polar Express: one (a, b, c) per iteration, computed for 5 iterations with safety factor 2e-2 and cushion 2
# (arXiv 2505.16932; full-precision values as in record 2026-04-23_…_PolarNS_MinLR_FusedCE, PR #1787).
POLAR_EXPRESS_COEFFS: tuple[tuple[float, float, float], ...] = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

# Polar Express as seed 001 prints it (`_POLAR_EXPRESS_COEFFS`, three decimals), not the full-precision set.
POLAR_EXPRESS_SEED001_COEFFS: tuple[tuple[float, float, float], ...] = (
    (8.157, -22.483, 15.879),
    (4.043, -2.809, 0.500),
    (3.892, -2.772, 0.506),
    (3.286, -2.368, 0.464),
    (2.347, -1.710, 0.423),
)

# Names accepted by OptimConfig.muon_ns_coeffs.
NS_COEFFICIENTS: dict[str, object] = {"jordan": NS5_COEFFS, "polar_express": POLAR_EXPRESS_COEFFS,
                                      "polar_express_seed001": POLAR_EXPRESS_SEED001_COEFFS}
_COMPILED: list[ZeropowerFn] = []


def compiled_zeropower() -> ZeropowerFn:
    """`torch.compile(zeropower_via_newtonschulz5)`, built once per process, as the official script does on GPU
    (train_gpt.py main: `zeropower_via_newtonschulz5 = torch.compile(zeropower_via_newtonschulz5)`)."""
    if not _COMPILED:
        _COMPILED.append(torch.compile(zeropower_via_newtonschulz5))
    return _COMPILED[0]



def _coefficient_schedule(coeffs: Coeffs, steps: int) -> list[tuple[float, float, float]]:
    """One (a, b, c) triple per step.

    A single triple is repeated `steps` times. A sequence of triples must hold at least `steps` of them and its
    first `steps` are used (the records slice `_PE_COEFFS[:steps]` the same way for Polar Express).
    """
    if len(coeffs) == 3 and all(isinstance(v, (int, float)) for v in coeffs):
        return [tuple(float(v) for v in coeffs)] * steps  # type: ignore[list-item]
    schedule = [tuple(float(v) for v in triple) for triple in coeffs]  # type: ignore[union-attr]
    if len(schedule) < steps or any(len(t) != 3 for t in schedule):
        raise ValueError(
            f"zeropower_via_newtonschulz5: coeffs must be one (a, b, c) triple or at least {steps} triples, "
            f"got {coeffs!r}"
        )
    return schedule[:steps]  # type: ignore[return-value]


def zeropower_via_newtonschulz5(
    G: Tensor,
    steps: int,
    eps: float = 1e-7,
    coeffs: Coeffs = NS5_COEFFS,
    compute_dtype: torch.dtype = torch.bfloat16,
    norm_scale: float = 1.0,
) -> Tensor:
    """Approximate the orthogonal polar factor U·Vᵀ of `G` (= U·S·Vᵀ) with a quintic Newton–Schulz iteration.

    Args:
        G: [rows, cols] matrix (any float dtype, any device).
        steps: number of iterations (official MUON_BACKEND_STEPS = 5), >= 1.
        eps: added to the Frobenius norm before normalizing (official 1e-7; in bf16 it only matters for G = 0).
        coeffs: (a, b, c) used at every step (official `NS5_COEFFS`), or a sequence of `steps` triples
            (a per-step schedule such as Polar Express can be passed here).
        compute_dtype: dtype the iteration runs in. Official is torch.bfloat16 (fast on GPU tensor cores);
            bf16 matmul on CPU is roughly an order of magnitude slower than fp32, so CPU runs may pass
            torch.float32 (a deliberate, visible deviation; singular values then differ from bf16 only by
            bf16 rounding). float64 is accepted for exact reference checks.
        norm_scale: divide by (‖X‖_F + eps)·norm_scale instead of (‖X‖_F + eps); 1.0 (default) is official,
            seed 001's Polar Express uses 1.02.

    Returns:
        [rows, cols] tensor of dtype `compute_dtype` whose singular values lie roughly in [0.7, 1.2] (the
        quintic does not converge to exactly 1; it trades precision for speed, per modded-nanogpt).

    Raises:
        ValueError: `G` is not 2-D, or `steps` < 1, or `coeffs` is malformed.
    """
    if G.ndim != 2:
        raise ValueError(f"zeropower_via_newtonschulz5: expected a 2-D matrix, got shape {tuple(G.shape)}")
    if steps < 1:
        raise ValueError(f"zeropower_via_newtonschulz5: steps={steps} must be >= 1")
    schedule = _coefficient_schedule(coeffs, steps)
    X = G.to(compute_dtype)
    # Official: the norm is taken of the already-cast copy and the division happens in compute_dtype.
    X = X / ((X.norm() + eps) * norm_scale)  # × 1.0 is exact, so the default is bitwise official
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T  # iterate on the wide orientation so X Xᵀ is the smaller Gram matrix
    for a, b, c in schedule:
        A = X @ X.T
        B = b * A + c * A @ A  # == (b*A) + ((c*A) @ A), the official evaluation order
        X = a * X + B @ X
    return X.T if transposed else X


def _distributed_layout(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """Resolve (rank, world_size, use_all_reduce); None means read torch.distributed like the official code."""
    initialized = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if world_size > 1 and not initialized:
        raise RuntimeError(f"Muon: world_size={world_size} but torch.distributed is not initialized")
    return rank, world_size, initialized and world_size > 1


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton–Schulz, for 2-D weight matrices (official train_gpt.py L112-168).

    Args:
        params: iterable of 2-D parameters (or param-group dicts). The order must be identical on every rank,
            because parameter i is orthogonalized by rank `i % world_size`.
        lr: learning rate (official MATRIX_LR = 0.04); the update is `p ← p − lr·u` with ‖u‖ spectral ≈ 1·scale.
        momentum: μ (official 0.95 after a 0.85→0.95 warmup set externally each step via group["momentum"]).
        backend_steps: Newton–Schulz iterations (official 5).
        nesterov: use `g + μ·buf` instead of `buf` (official True).
        rank, world_size: work partition. None (default) reads torch.distributed at step time, as the
            official code does; explicit values let tests or custom launchers override it. The flat buffer is
            all-reduced (SUM) only when torch.distributed is initialized and world_size > 1.
        compute_dtype: dtype of Newton–Schulz and of the flat update buffer (official torch.bfloat16).
        coeffs: Newton–Schulz coefficients (see `zeropower_via_newtonschulz5`).
        zeropower_fn: orthogonalizer with the signature of `zeropower_via_newtonschulz5` (e.g. a
            `torch.compile`d copy, which the official script uses on GPU). Default: eager version.
        weight_decay: decoupled decay `p ← p·(1 − lr·wd)` before the update, lr = the group's current
            (scheduled) lr; 0 = off (official). Stored per param group as "weight_decay".
        cautious_wd: decay only entries where update and parameter signs agree (`u·p ≥ 0`); per group.
        row_normalize: MuonEq-R, divide each row of the Nesterov update by its L2 norm before Newton–Schulz.
        norm_scale: passed to the orthogonalizer (see `zeropower_via_newtonschulz5`).

    Raises:
        ValueError: a parameter is not 2-D, or a hyperparameter is out of range.

    State per parameter: "momentum_buffer" (same dtype/shape as the gradient), as in the official code.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float,
        backend_steps: int,
        nesterov: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        compute_dtype: torch.dtype = torch.bfloat16,
        coeffs: Coeffs = NS5_COEFFS,
        zeropower_fn: ZeropowerFn | None = None,
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        row_normalize: bool = False,
        norm_scale: float = 1.0,
    ) -> None:
        if weight_decay < 0:
            raise ValueError(f"Muon: weight_decay={weight_decay} must be >= 0")
        if not norm_scale > 0:
            raise ValueError(f"Muon: norm_scale={norm_scale} must be > 0")
        if lr < 0:
            raise ValueError(f"Muon: lr={lr} must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon: momentum={momentum} must be in [0, 1)")
        if backend_steps < 1:
            raise ValueError(f"Muon: backend_steps={backend_steps} must be >= 1")
        if world_size is not None and world_size < 1:
            raise ValueError(f"Muon: world_size={world_size} must be >= 1")
        if rank is not None and (rank < 0 or (world_size is not None and rank >= world_size)):
            raise ValueError(f"Muon: rank={rank} must be in [0, world_size={world_size})")
        _coefficient_schedule(coeffs, backend_steps)  # fail early on malformed coefficients
        defaults = dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov,
                        weight_decay=weight_decay, cautious_wd=cautious_wd, row_normalize=row_normalize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon: only 2-D parameters are supported, got shape {tuple(p.shape)}")
        self.rank = rank
        self.world_size = world_size
        self.compute_dtype = compute_dtype
        self.coeffs = coeffs
        self.norm_scale = float(norm_scale)
        self.zeropower_fn: ZeropowerFn = zeropower_fn or zeropower_via_newtonschulz5

    def _orthogonalized_update(self, p: Tensor, group: dict) -> Tensor:
        """Momentum + Nesterov + Newton–Schulz + shape scale for one parameter; returns [rows, cols]."""
        g = p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(g)
        buf = state["momentum_buffer"]
        momentum = group["momentum"]
        buf.mul_(momentum).add_(g)
        if group["nesterov"]:
            g = g.add(buf, alpha=momentum)
        else:
            g = buf
        if group.get("row_normalize", False):
            # MuonEq-R: equalize row norms so Newton–Schulz sees a better-conditioned input (norms in >= fp32).
            wide = g.to(torch.promote_types(g.dtype, torch.float32))
            g = g / wide.norm(dim=-1, keepdim=True).clamp_min(1e-7).to(g.dtype)
        kwargs = {"norm_scale": self.norm_scale} if self.norm_scale != 1.0 else {}
        update = self.zeropower_fn(
            g, steps=group["backend_steps"], coeffs=self.coeffs, compute_dtype=self.compute_dtype, **kwargs
        )
        # Scale correction from the Muon reference implementations: tall matrices get sqrt(rows/cols).
        update *= max(1, update.size(0) / update.size(1)) ** 0.5
        return update

    @torch.no_grad()
    def step(self, closure=None):
        """One Muon step for every group. Returns the closure's loss (or None)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rank, world_size, use_all_reduce = _distributed_layout(self.rank, self.world_size)
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            total = sum(int(p.numel()) for p in params)
            updates_flat = torch.zeros(total, device=params[0].device, dtype=self.compute_dtype)
            offset = 0
            for i, p in enumerate(params):
                if i % world_size == rank and p.grad is not None:
                    updates_flat[offset : offset + p.numel()] = self._orthogonalized_update(p, group).reshape(-1)
                offset += p.numel()
            if use_all_reduce:
                dist.all_reduce(updates_flat, op=dist.ReduceOp.SUM)
            offset = 0
            lr = group["lr"]
            wd = group.get("weight_decay", 0.0)
            cautious = group.get("cautious_wd", False)
            for p in params:
                update = updates_flat[offset : offset + p.numel()].view_as(p).to(dtype=p.dtype)
                if wd > 0:
                    _decay_(p, update, lr * wd, cautious)
                p.add_(update, alpha=-lr)
                offset += p.numel()
        return loss


def _decay_(p: Tensor, update: Tensor, rate: float, cautious: bool) -> None:
    """In place: p ← p·(1 − rate), or with `cautious` only where update·p ≥ 0 (p ← p − rate·p·mask)."""
    if cautious:
        mask = (update * p) >= 0
        p.sub_(p * mask.to(p.dtype), alpha=rate)
    else:
        p.mul_(1.0 - rate)
