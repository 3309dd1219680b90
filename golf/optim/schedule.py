"""LR multiplier and Muon momentum schedules (official train_gpt.py L922-933 and L1021-1028).

There is no LR warmup in the official baseline: `ScheduleConfig.warmup_steps` are compile-priming steps
that the training loop rolls back. The LR multiplier is flat at 1 and decays linearly to 0 at the end of
training; under a wallclock cap the decay window is `warmdown_iters` × the running mean step time, so the
LR reaches 0 exactly when the cap is hit.

Schedules are looked up by `ScheduleConfig.name` in `LR_SCHEDULES`; later variants (fraction-based warmdown
with a min-LR floor, WSD-S, ...) register a new name with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from golf.optim.config import OptimConfig, ScheduleConfig
from golf.optim.muon import Muon


def wallclock_warmdown(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """Official `lr_mul(step, elapsed_ms)` (train_gpt.py L924-933).

    Args:
        step: optimizer steps already taken (0 for the first step).
        elapsed_ms: training time so far in milliseconds (validation time excluded).
        cfg: schedule config (iterations, warmdown_iters, max_wallclock_seconds).

    Returns:
        multiplier in [0, 1] applied to every group's base_lr.
        - warmdown_iters == 0: 1.0.
        - no cap: `(iterations − step)/warmdown_iters` for `iterations − warmdown_iters <= step < iterations`,
          else 1.0 (also 1.0 at step >= iterations, exactly as the official code).
        - cap: `remaining_ms / warmdown_ms` once `remaining_ms <= warmdown_ms`, where
          `warmdown_ms = warmdown_iters · elapsed_ms / max(step, 1)` and `remaining_ms = max(cap − elapsed, 0)`.
    """
    if cfg.warmdown_iters <= 0:
        return 1.0
    cap_ms = cfg.max_wallclock_ms
    if cap_ms is None:
        warmdown_start = max(cfg.iterations - cfg.warmdown_iters, 0)
        if warmdown_start <= step < cfg.iterations:
            return max((cfg.iterations - step) / max(cfg.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = cfg.warmdown_iters * step_ms
    remaining_ms = max(cap_ms - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


LR_SCHEDULES: dict[str, Callable[[int, float, ScheduleConfig], float]] = {
    "wallclock_warmdown": wallclock_warmdown,
}


def lr_multiplier(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """LR multiplier for `step` after `elapsed_ms` ms of training, dispatched on `cfg.name`.

    Raises:
        ValueError: `cfg.name` is not a registered schedule.
    """
    try:
        schedule = LR_SCHEDULES[cfg.name]
    except KeyError:
        raise ValueError(f"ScheduleConfig.name={cfg.name!r} must be one of {sorted(LR_SCHEDULES)}") from None
    return schedule(step, elapsed_ms, cfg)


def muon_momentum_at(step: int, cfg: OptimConfig) -> float:
    """Muon momentum at `step`: linear from warmup_start to muon_momentum over warmup_steps (official L1021-1024).

    `frac = min(step / warmup_steps, 1)` (1 when warmup_steps == 0); returns `(1 − frac)·start + frac·final`.
    """
    steps = cfg.muon_momentum_warmup_steps
    frac = min(step / steps, 1.0) if steps > 0 else 1.0
    return (1 - frac) * cfg.muon_momentum_warmup_start + frac * cfg.muon_momentum


def set_muon_momentum(optimizers: Iterable[torch.optim.Optimizer], momentum: float) -> None:
    """Write `momentum` into every param group of every Muon optimizer in the list (others untouched)."""
    for opt in optimizers:
        if isinstance(opt, Muon):
            for group in opt.param_groups:
                group["momentum"] = momentum
