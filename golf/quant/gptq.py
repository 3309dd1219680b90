"""Full-Hessian GPTQ (Frantar et al., ICLR 2023, arXiv 2210.17323) as used by records 03-25 (#30, PR #535),
03-29 and 04-05 (#46: GPTQ on the tied embedding, SDClip scales).

For a linear layer y = x W^T with calibration inputs X [tokens, cols], GPTQ minimizes ||X W^T - X Q^T||^2 by
quantizing W column by column and pushing each column's rounding error onto the not-yet-quantized columns
through the inverse Hessian H^-1, H = X^T X / tokens:

1. dead columns (diag H == 0) get H_jj = 1 and W_:j = 0;
2. damping: H += damp * mean(diag H) * I;
3. act-order (optional): columns permuted by descending diag of the damped H;
4. U = upper Cholesky factor of H^-1 (H^-1 = U^T U);
5. blocks of ``block_size`` columns: q_j = clamp(round(w_j / s), -qmax, qmax) with the per-row scales s chosen
   beforehand by the group's clip rule; err_j = (w_j - q_j s) / U_jj; w_{j+1..} -= err_j U_{j, j+1..} inside
   the block, and once per block the remaining columns get -= Err U_{block, rest}.

Hessians come from forward hooks on the un-quantized model over training batches (``collect_hessians``); the
tied embedding's Hessian is that of the final-norm output, the input of the tied output head (record 04-05).
Calibration on training data counts toward the 600 s training budget in the challenge (#31), so the time is
reported.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor, nn

from golf.errors import GolfError
from golf.quant.config import GPTQConfig

log = logging.getLogger("golf.quant")


class GPTQError(GolfError, ValueError):
    """A Hessian is malformed or cannot be inverted even after extra damping; names the tensor."""


def _damped_order_and_factor(name: str, h: Tensor, damp: float, act_order: bool) -> tuple[Tensor, Tensor]:
    """(column order, upper Cholesky factor U of (H + damp * mean(diag H) I)[order][:, order]^-1).

    The damping is added to the diagonal in H's dtype before act-order sorts the DAMPED diagonal (fp32 rounding
    can tie or swap close entries), exactly as the 2026-04-27 record's gptq_quantize_weight, so the codes are
    bit-identical; retries with 10x and 100x damping (the record has no retry) when H is not positive definite.
    """
    mean_diag = h.diag().mean()  # a contiguous copy: the mean of the strided view rounds differently
    for factor in (1.0, 10.0, 100.0):
        damped = h.clone()
        damped.diagonal().add_(damp * factor * mean_diag)
        order = torch.argsort(damped.diagonal(), descending=True) if act_order else torch.arange(h.shape[0])
        try:
            lower = torch.linalg.cholesky(damped[order][:, order])
            return order, torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
        except torch.linalg.LinAlgError:
            log.info(f"gptq: {name}: Hessian not positive definite at damp {damp * factor:g}; retrying")
    raise GPTQError(f"gptq: Hessian of {name!r} is not positive definite even with damp {damp * 100:g}")


@torch.no_grad()
def gptq_quantize(name: str, w: Tensor, hessian: Tensor, scale: Tensor, qmax: int,
                  cfg: GPTQConfig | None = None) -> Tensor:
    """GPTQ codes of one matrix.

    w: [rows, cols] float; hessian: [cols, cols] (X^T X / tokens); scale: [rows] fp32 (the stored scales,
    already rounded to their storage dtype); qmax: code magnitude bound. Returns int8 codes [rows, cols] in
    the original column order. Raises GPTQError for a shape mismatch, non-finite or non-invertible Hessian.
    """
    cfg = cfg or GPTQConfig()
    rows, cols = w.shape
    if hessian.shape != (cols, cols):
        raise GPTQError(f"gptq: Hessian of {name!r} has shape {tuple(hessian.shape)}, expected ({cols}, {cols})")
    h = hessian.detach().to("cpu", torch.float32).clone()
    if not torch.isfinite(h).all():  # run-time: training numerics
        raise GPTQError(f"gptq: Hessian of {name!r} has non-finite entries")
    W = w.detach().to("cpu", torch.float32).clone()
    s = scale.detach().to("cpu", torch.float32)
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm, U = _damped_order_and_factor(name, h, cfg.damp, cfg.act_order)
    W = W[:, perm]
    Q = torch.zeros(rows, cols, dtype=torch.int8)
    for i1 in range(0, cols, cfg.block_size):
        i2 = min(i1 + cfg.block_size, cols)
        block = W[:, i1:i2].clone()
        u = U[i1:i2, i1:i2]
        err = torch.zeros_like(block)
        for j in range(i2 - i1):
            col = block[:, j]
            q = torch.clamp(torch.round(col / s), -qmax, qmax)
            Q[:, i1 + j] = q.to(torch.int8)
            e = (col - q * s) / u[j, j]
            block[:, j:] -= e[:, None] * u[j, j:][None, :]
            err[:, j] = e
        W[:, i2:] -= err @ U[i1:i2, i2:]
    return Q[:, torch.argsort(perm)].contiguous()


def hessian_sources(model: nn.Module, wanted: set[str] | None = None) -> dict[str, tuple[nn.Module, str]]:
    """weight name -> (module, "input" | "output") whose activations form that weight's Hessian.

    Every nn.Linear (CastedLinear included) contributes its input; a tied embedding (``model.lm_head is None``
    with ``model.tok_emb`` and ``model.final_norm``) gets the final-norm output, since it is the output head's
    input. ``wanted`` restricts the names.
    """
    out: dict[str, tuple[nn.Module, str]] = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            out[f"{mod_name}.weight" if mod_name else "weight"] = (mod, "input")
    if getattr(model, "lm_head", 0) is None and hasattr(model, "tok_emb") and hasattr(model, "final_norm"):
        out["tok_emb.weight"] = (model.final_norm, "output")
    return {k: v for k, v in out.items() if wanted is None or k in wanted}


@torch.no_grad()
def collect_hessians(model: nn.Module, batches: list[tuple[Tensor, Tensor]], wanted: set[str] | None = None,
                     autocast=None) -> tuple[dict[str, Tensor], float]:
    """Average input Hessians X^T X / tokens (fp32, on CPU) over ``batches`` of (inputs [B, T], targets [B, T]).

    Runs ``model(x, y)`` in eval mode with forward hooks (removed afterwards, also on error); ``autocast`` is
    an optional context-manager factory (e.g. bf16 on CUDA). Returns (hessians, seconds).

    Under a process group each rank passes its share of the batches (``calibration_batches(..., rank,
    world_size)``): the sums X^T X and the token counts are all-reduced before dividing, so every rank gets the
    Hessians of all batches, as one process would (up to fp32 summation order).
    """
    t0 = time.perf_counter()
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str, which: str):
        def hook(_mod, inputs, output):
            x = (inputs[0] if which == "input" else output).detach().float()
            x = x.reshape(-1, x.shape[-1])
            if name not in sums:
                sums[name] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float32, device=x.device)
                counts[name] = 0
            sums[name].addmm_(x.T, x)
            counts[name] += x.shape[0]
        return hook

    handles = [mod.register_forward_hook(hook_for(name, which))
               for name, (mod, which) in hessian_sources(model, wanted).items()]
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            if autocast is None:
                model(x, y)
            else:
                with autocast():
                    model(x, y)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    _all_reduce_sums(model, hessian_sources(model, wanted), sums, counts)
    hessians = {k: (v / max(counts[k], 1)).cpu() for k, v in sums.items()}
    return hessians, time.perf_counter() - t0


def _all_reduce_sums(model: nn.Module, sources: dict, sums: dict[str, Tensor], counts: dict[str, int]) -> None:
    """Sum X^T X and token counts over ranks (no-op without a process group). A rank that saw no batch adds
    zeros, so every rank takes part in the same collectives in the same (sorted) order."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    state = model.state_dict()
    device = next(model.parameters()).device
    for name in sorted(sources):
        if name not in sums:
            cols = state[name].shape[1]
            sums[name] = torch.zeros(cols, cols, dtype=torch.float32, device=device)
            counts[name] = 0
        dist.all_reduce(sums[name], op=dist.ReduceOp.SUM)
        n = torch.tensor([counts[name]], dtype=torch.float64, device=device)
        dist.all_reduce(n, op=dist.ReduceOp.SUM)
        counts[name] = int(n.item())


def calibration_batches(train_glob: str, n: int, batch_tokens: int, seq_len: int, device: torch.device,
                        rank: int = 0, world_size: int = 1) -> list[tuple[Tensor, Tensor]]:
    """This rank's share of the first ``n`` batches of the training stream: (x, y) [B, seq_len] each.

    The batches are those of one process reading the stream (golf.data.loader, rank 0 of 1); rank r keeps
    batches r, r + W, r + 2W, ... so the ranks together hold exactly the single-process batches.
    Raises NoShardsFoundError / ShardError / ValueError (batch_tokens not a multiple of seq_len) from the loader.
    """
    from golf.data.loader import DistributedTokenLoader

    loader = DistributedTokenLoader(train_glob, 0, 1, torch.device("cpu"))
    out = []
    for i in range(n):
        x, y = loader.next_batch(batch_tokens, seq_len, 1)
        if i % world_size == rank:
            out.append((x.to(device), y.to(device)))
    return out
