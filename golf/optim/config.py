"""Plain dataclass configs for the optimizer layer (no Hydra here; golf/config.py registers them).

Defaults are the official baseline `train_gpt.py` hyperparameters (openai/parameter-golf,
class `Hyperparameters` L74-87, control patterns L288-295; see shared/reference/parameter-golf.md §1.1).
Every `__post_init__` raises `OptimConfigError` (a ValueError) naming the field and its allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from golf.errors import GolfError

# Official CONTROL_TENSOR_NAME_PATTERNS (train_gpt.py L288-295): substrings of parameter names that are
# routed to the scalar Adam group (and kept fp32 in the export) even when they are 2-D.
OFFICIAL_CONTROL_TENSOR_PATTERNS: tuple[str, ...] = (
    "attn_scale",
    "attn_scales",
    "mlp_scale",
    "mlp_scales",
    "resid_mix",
    "resid_mixes",
    "q_gain",
    "skip_weight",
    "skip_weights",
)

# Names accepted by the `name` fields; new optimizer stacks / schedules extend these sets.
OPTIMIZER_NAMES: frozenset[str] = frozenset({"muon_adam"})
SCHEDULE_NAMES: frozenset[str] = frozenset({"wallclock_warmdown"})
MUON_DTYPES: frozenset[str] = frozenset({"auto", "bfloat16", "float32"})


class OptimConfigError(GolfError, ValueError):
    """An optimizer or schedule config field holds a value outside its allowed range."""


def _check_finite_nonneg(owner: str, name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise OptimConfigError(f"{owner}.{name}={value!r} must be a finite number >= 0")


def _check_unit_interval(owner: str, name: str, value: float) -> None:
    """0 <= value < 1 (momentum / Adam beta)."""
    if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise OptimConfigError(f"{owner}.{name}={value!r} must be in [0, 1)")


def _check_int_at_least(owner: str, name: str, value: int, low: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise OptimConfigError(f"{owner}.{name}={value!r} must be an integer >= {low}")


@dataclass
class OptimConfig:
    """Optimizer split + hyperparameters of the official Muon/Adam stack (train_gpt.py L846-893)."""

    name: str = "muon_adam"
    """Optimizer stack; only "muon_adam" (official: Adam for embeddings/scalars, Muon for block matrices)."""
    matrix_lr: float = 0.04
    """Muon learning rate for 2-D block matrices (MATRIX_LR)."""
    scalar_lr: float = 0.04
    """Adam learning rate for vectors, scalars and control tensors (SCALAR_LR)."""
    tied_embed_lr: float = 0.05
    """Adam learning rate for the token embedding when it is tied to the output head (TIED_EMBED_LR)."""
    embed_lr: float = 0.6
    """Adam learning rate for the untied input embedding (EMBED_LR)."""
    head_lr: float = 0.008
    """Adam learning rate for the untied lm_head (HEAD_LR)."""
    muon_momentum: float = 0.95
    """Final Muon momentum after warmup (MUON_MOMENTUM)."""
    muon_momentum_warmup_start: float = 0.85
    """Muon momentum at step 0; linear ramp to `muon_momentum` (MUON_MOMENTUM_WARMUP_START)."""
    muon_momentum_warmup_steps: int = 500
    """Steps of the linear momentum ramp; 0 = use `muon_momentum` from step 0 (MUON_MOMENTUM_WARMUP_STEPS)."""
    muon_backend_steps: int = 5
    """Newton–Schulz iterations per Muon update (MUON_BACKEND_STEPS)."""
    muon_nesterov: bool = True
    """Nesterov momentum in Muon (official: always True)."""
    muon_dtype: str = "auto"
    """Newton–Schulz / update-buffer dtype: auto (bfloat16 on CUDA as official, float32 on CPU), bfloat16, float32."""
    beta1: float = 0.9
    """Adam beta1 for every Adam group (BETA1)."""
    beta2: float = 0.95
    """Adam beta2 for every Adam group (BETA2)."""
    adam_eps: float = 1e-8
    """Adam epsilon (ADAM_EPS)."""
    grad_clip_norm: float = 0.0
    """Joint L2 clip over all parameters before the step; 0 = off (GRAD_CLIP_NORM)."""
    control_tensor_patterns: list[str] = field(default_factory=lambda: list(OFFICIAL_CONTROL_TENSOR_PATTERNS))
    """Name substrings forcing a parameter into the scalar Adam group (CONTROL_TENSOR_NAME_PATTERNS)."""

    def __post_init__(self) -> None:
        owner = "optim"
        if self.name not in OPTIMIZER_NAMES:
            raise OptimConfigError(f"{owner}.name={self.name!r} must be one of {sorted(OPTIMIZER_NAMES)}")
        for lr_field in ("matrix_lr", "scalar_lr", "tied_embed_lr", "embed_lr", "head_lr", "grad_clip_norm"):
            _check_finite_nonneg(owner, lr_field, getattr(self, lr_field))
        for unit_field in ("muon_momentum", "muon_momentum_warmup_start", "beta1", "beta2"):
            _check_unit_interval(owner, unit_field, getattr(self, unit_field))
        _check_int_at_least(owner, "muon_momentum_warmup_steps", self.muon_momentum_warmup_steps, 0)
        _check_int_at_least(owner, "muon_backend_steps", self.muon_backend_steps, 1)
        if not isinstance(self.muon_nesterov, bool):
            raise OptimConfigError(f"{owner}.muon_nesterov={self.muon_nesterov!r} must be a bool")
        if self.muon_dtype not in MUON_DTYPES:
            raise OptimConfigError(f"{owner}.muon_dtype={self.muon_dtype!r} must be one of {sorted(MUON_DTYPES)}")
        if not (isinstance(self.adam_eps, (int, float)) and math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise OptimConfigError(f"{owner}.adam_eps={self.adam_eps!r} must be a finite number > 0")
        patterns = list(self.control_tensor_patterns)
        if not all(isinstance(p, str) and p for p in patterns):
            raise OptimConfigError(
                f"{owner}.control_tensor_patterns={patterns!r} must be a list of non-empty strings"
            )
        self.control_tensor_patterns = patterns


@dataclass
class ScheduleConfig:
    """Training length, LR schedule and logging cadence (train_gpt.py L49-59, L922-1055)."""

    name: str = "wallclock_warmdown"
    """LR schedule; only "wallclock_warmdown" (official lr_mul: flat, then linear decay to 0)."""
    iterations: int = 20000
    """Hard cap on optimizer steps (ITERATIONS); the wallclock cap normally binds first."""
    warmdown_iters: int = 1200
    """Length of the final linear LR decay in steps (converted to time under a wallclock cap); 0 = none."""
    max_wallclock_seconds: float = 600.0
    """Training-time cap in seconds (eval time excluded); <= 0 disables the cap (MAX_WALLCLOCK_SECONDS)."""
    warmup_steps: int = 20
    """Compile-priming steps whose effects are rolled back afterwards; NOT an LR warmup (WARMUP_STEPS)."""
    train_log_every: int = 200
    """Log train loss every N steps (plus steps <= 10 and after the cap); 0 = never (TRAIN_LOG_EVERY)."""
    val_loss_every: int = 1000
    """Run a full validation every N steps; 0 = only at the end (VAL_LOSS_EVERY)."""

    def __post_init__(self) -> None:
        owner = "schedule"
        if self.name not in SCHEDULE_NAMES:
            raise OptimConfigError(f"{owner}.name={self.name!r} must be one of {sorted(SCHEDULE_NAMES)}")
        _check_int_at_least(owner, "iterations", self.iterations, 0)
        _check_int_at_least(owner, "warmdown_iters", self.warmdown_iters, 0)
        _check_int_at_least(owner, "warmup_steps", self.warmup_steps, 0)
        _check_int_at_least(owner, "train_log_every", self.train_log_every, 0)
        _check_int_at_least(owner, "val_loss_every", self.val_loss_every, 0)
        cap = self.max_wallclock_seconds
        if not (isinstance(cap, (int, float)) and not math.isnan(cap) and cap != math.inf):
            raise OptimConfigError(
                f"{owner}.max_wallclock_seconds={cap!r} must be a finite number (<= 0 disables the cap)"
            )

    @property
    def max_wallclock_ms(self) -> float | None:
        """Wallclock cap in milliseconds, or None when disabled (official `max_wallclock_ms`)."""
        return 1000.0 * self.max_wallclock_seconds if self.max_wallclock_seconds > 0 else None
