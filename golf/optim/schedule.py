"""LR multiplier and Muon momentum schedules (official train_gpt.py L922-933 and L1021-1028).

There is no LR warmup in the official baseline: `ScheduleConfig.warmup_steps` are compile-priming steps
that the training loop rolls back. The LR multiplier is flat at 1 and decays linearly to 0 at the end of
training; under a wallclock cap the decay window is `warmdown_iters` × the running mean step time, so the
LR reaches 0 exactly when the cap is hit.

Schedules are looked up by `ScheduleConfig.name` in `LR_SCHEDULES` (same signature for all):

- `wallclock_warmdown` — the official one (above).
- `fraction_warmdown` — records ≥ 2026-04-01 (#51, #64): progress `frac = elapsed/(cap − gptq_reserve)` (or
  `step/iterations` without a cap); multiplier 1 until `frac ≥ 1 − warmdown_frac`, then
  `max((1 − frac)/warmdown_frac, min_lr)`.
- `wsd_s` — seed 001's "WSD-S": warmup-stable-decay (short linear warmup, flat, decay to `min_lr`) in its
  "simplified" multi-cycle form of Wen et al. 2024 (arXiv 2410.05192, "-S" = WSD-Simplified): each cycle decays
  and training then *continues from the decayed weights* at the peak LR, so every cycle end is a usable
  checkpoint. With `wsd_cycles=1` (default) it is plain WSD. Seed 001 names the schedule without giving its
  constants, so the shape and fractions are config choices.

`ScheduleConfig.min_lr` floors every schedule; `gptq_reserve_seconds` shortens the time every schedule plans for.
"""

from __future__ import annotations

import math
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
        With `min_lr` > 0 the result is `max(·, min_lr)`; with `gptq_reserve_seconds` > 0 the cap is
        `max_wallclock_seconds − gptq_reserve_seconds` (both 0 = official).
    """
    if cfg.warmdown_iters <= 0:
        return 1.0
    return max(_official_lr_mul(step, elapsed_ms, cfg), cfg.min_lr)


def _official_lr_mul(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    cap_ms = cfg.schedule_cap_ms
    if cap_ms is None:
        warmdown_start = max(cfg.iterations - cfg.warmdown_iters, 0)
        if warmdown_start <= step < cfg.iterations:
            return max((cfg.iterations - step) / max(cfg.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = cfg.warmdown_iters * step_ms
    remaining_ms = max(cap_ms - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def training_fraction(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """Progress through training, as the records' `training_frac` (04-01 onward).

    Returns `elapsed_ms / (cap − gptq_reserve)` in ms under a wallclock cap, else `step / max(iterations, 1)`.
    Not clamped: values above 1 happen after the planned time (schedules then sit at their floor).
    """
    cap_ms = cfg.schedule_cap_ms
    if cap_ms is None:
        return step / max(cfg.iterations, 1)
    return elapsed_ms / max(cap_ms, 1e-9)


def fraction_warmdown(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """Fraction-based linear warmdown with a floor (#51 WARMDOWN_FRAC, #64 MIN_LR).

    Source: `lr_mul(frac)` of records 2026-04-01 … 2026-04-27 (e.g. `2026-04-23_…_PolarNS_MinLR_FusedCE`).

    Returns:
        1.0 when `warmdown_frac` == 0 or `frac < 1 − warmdown_frac`; else `max((1 − frac)/warmdown_frac, min_lr)`,
        with `frac = training_fraction(step, elapsed_ms, cfg)`.
    """
    if cfg.warmdown_frac <= 0:
        return 1.0
    frac = training_fraction(step, elapsed_ms, cfg)
    if frac >= 1.0 - cfg.warmdown_frac:
        return max((1.0 - frac) / cfg.warmdown_frac, cfg.min_lr)
    return 1.0


_DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),  # Hägele et al. 2024 (arXiv 2405.18392) cooldown shape
}


def wsd_s(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """WSD-S: warmup, then `wsd_cycles` × (stable at 1, decay to `min_lr`), seed 001 / arXiv 2410.05192.

    With `frac = training_fraction(...)` clamped to [0, 1], cycle length `1/K` (K = wsd_cycles) and `x` the
    position inside the current cycle in [0, 1] (the final cycle owns frac = 1):
    decay progress `p = (x − (1 − warmdown_frac))/warmdown_frac` once positive, multiplier
    `min_lr + (1 − min_lr)·shape(p)` with shape linear `1 − p`, cosine `(1 + cos πp)/2` or 1-sqrt `1 − √p`;
    the multiplier is 1 before the decay window. The warmup multiplies this by `(step + 1)/lr_warmup_steps`
    for `step < lr_warmup_steps`.

    Returns:
        multiplier in [0, 1].
    """
    frac = min(max(training_fraction(step, elapsed_ms, cfg), 0.0), 1.0)
    cycles = cfg.wsd_cycles
    cycle = min(int(frac * cycles), cycles - 1)
    x = frac * cycles - cycle
    value = 1.0
    if cfg.warmdown_frac > 0 and x >= 1.0 - cfg.warmdown_frac:
        p = min((x - (1.0 - cfg.warmdown_frac)) / cfg.warmdown_frac, 1.0)
        value = cfg.min_lr + (1.0 - cfg.min_lr) * _DECAY_SHAPES[cfg.decay_shape](p)
    if step < cfg.lr_warmup_steps:
        value *= (step + 1) / cfg.lr_warmup_steps
    return value


LR_SCHEDULES: dict[str, Callable[[int, float, ScheduleConfig], float]] = {
    "wallclock_warmdown": wallclock_warmdown,
    "fraction_warmdown": fraction_warmdown,
    "wsd_s": wsd_s,
}


def lr_multiplier(step: int, elapsed_ms: float, cfg: ScheduleConfig) -> float:
    """LR multiplier for `step` after `elapsed_ms` ms of training, dispatched on `cfg.name`.

    ScheduleConfig checks the name against golf.optim.config.SCHEDULE_NAMES (a test keeps it equal to the keys
    of LR_SCHEDULES), so this is a plain lookup: with the name baked, a generated train_gpt.py ships only the
    schedule it runs (golf.record.arguments reads the table's entry)."""
    return LR_SCHEDULES[cfg.name](step, elapsed_ms, cfg)


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
