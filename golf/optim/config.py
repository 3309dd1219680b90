"""Plain dataclass configs for the optimizer layer (no Hydra here; golf/config.py registers them).

Defaults are the official baseline `train_gpt.py` hyperparameters (openai/parameter-golf,
class `Hyperparameters` L74-87, control patterns L288-295; see shared/reference/parameter-golf.md §1.1).
Fields beyond the official ones (weight decays, Polar Express, MuonEq-R, fraction warmdown, WSD-S, min-lr floor,
GPTQ reserve) default to values that leave the official behaviour unchanged; `#N` in their docs refers to the
technique table §3.2 of shared/reference/parameter-golf.md.
Every `__post_init__` raises `OptimConfigError` (a ValueError) naming the field and its allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from golf.errors import GolfError
from golf.model.config import OFFICIAL_CONTROL_TENSOR_PATTERNS

# Names accepted by the `name` fields; new optimizer stacks / schedules extend these sets.
OPTIMIZER_NAMES: frozenset[str] = frozenset({"muon_adam"})
SCHEDULE_NAMES: frozenset[str] = frozenset({"wallclock_warmdown", "fraction_warmdown", "wsd_s"})
MUON_DTYPES: frozenset[str] = frozenset({"auto", "bfloat16", "float32"})
NS_COEFF_NAMES: frozenset[str] = frozenset({"jordan", "polar_express", "polar_express_seed001"})
MUON_COMPILE: tuple[str, ...] = ("auto", "on", "off")
POLAR_EXPRESS_STEPS = 5  # Polar Express defines exactly five (a, b, c) tuples
DECAY_SHAPES: frozenset[str] = frozenset({"linear", "cosine", "1-sqrt"})


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


def _check_closed_unit(owner: str, name: str, value: float) -> None:
    """0 <= value <= 1 (a fraction of training, a fraction of the peak LR)."""
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise OptimConfigError(f"{owner}.{name}={value!r} must be in [0, 1]")


def _check_wsd_only(schedule: str, values: dict[str, tuple[object, object]]) -> None:
    """`values`: wsd_s-only field -> (value, default). Set under another schedule, it would silently do nothing."""
    if schedule != "wsd_s" and (changed := [name for name, (value, default) in values.items() if value != default]):
        raise OptimConfigError(f"schedule.{changed[0]}={values[changed[0]][0]!r} is only used by schedule.name=wsd_s "
                               f"(got schedule.name={schedule!r})")


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
    """Joint L2 clip over all parameters before the step; 0 = off (GRAD_CLIP_NORM; records use 0.3, #11)."""
    muon_wd: float = 0.0
    """Muon decoupled weight decay: p ← p·(1 − lr·wd), lr = scheduled lr; 0 = off (MUON_WD; #9, 0.04 → 0.095)."""
    muon_cautious_wd: bool = False
    """Apply muon_wd only where update and weight signs agree (Cautious WD, arXiv 2510.12402; seed 001)."""
    muon_compile: str = "auto"
    """torch.compile the Newton–Schulz iteration: auto = on CUDA (official: `torch.compile(zeropower_via_
    newtonschulz5)` in main, so the baseline's step time and step count can match), eager on CPU; on; off."""
    muon_ns_coeffs: str = "jordan"
    """Newton–Schulz coefficients: jordan (official fixed tuple) or polar_express (5 per-step tuples, #63)."""
    muon_ns_norm_scale: float = 1.0
    """Divide by (‖G‖ + eps)·scale before Newton–Schulz; 1.0 = official, seed 001 uses 1.02 with polar_express."""
    muon_row_normalize: bool = False
    """MuonEq-R: L2-normalize each row of the update before Newton–Schulz (MUON_ROW_NORMALIZE; #45)."""
    embed_wd: float = 0.0
    """Decoupled weight decay of the embedding group; > 0 switches it from Adam to AdamW (EMBED_WD; #41)."""
    scalar_wd: float = 0.0
    """Decoupled weight decay of the scalar/control group; > 0 switches it to AdamW (ADAM_WD; #8, #41)."""
    head_wd: float = 0.0
    """Decoupled weight decay of the untied lm_head group; > 0 switches it to AdamW."""
    control_tensor_patterns: list[str] = field(default_factory=lambda: list(OFFICIAL_CONTROL_TENSOR_PATTERNS))
    """Name substrings forcing a parameter into the scalar Adam group (CONTROL_TENSOR_NAME_PATTERNS)."""

    def __post_init__(self) -> None:
        owner = "optim"
        if self.name not in OPTIMIZER_NAMES:
            raise OptimConfigError(f"{owner}.name={self.name!r} must be one of {sorted(OPTIMIZER_NAMES)}")
        for lr_field in ("matrix_lr", "scalar_lr", "tied_embed_lr", "embed_lr", "head_lr", "grad_clip_norm",
                         "muon_wd", "embed_wd", "scalar_wd", "head_wd"):
            _check_finite_nonneg(owner, lr_field, getattr(self, lr_field))
        for flag in ("muon_cautious_wd", "muon_row_normalize"):
            if not isinstance(getattr(self, flag), bool):
                raise OptimConfigError(f"{owner}.{flag}={getattr(self, flag)!r} must be a bool")
        if self.muon_compile not in MUON_COMPILE:
            raise OptimConfigError(f"{owner}.muon_compile={self.muon_compile!r} must be one of {list(MUON_COMPILE)}")
        if self.muon_ns_coeffs not in NS_COEFF_NAMES:
            raise OptimConfigError(
                f"{owner}.muon_ns_coeffs={self.muon_ns_coeffs!r} must be one of {sorted(NS_COEFF_NAMES)}"
            )
        if self.muon_ns_coeffs.startswith("polar_express") and self.muon_backend_steps > POLAR_EXPRESS_STEPS:
            raise OptimConfigError(
                f"{owner}.muon_backend_steps={self.muon_backend_steps} must be <= {POLAR_EXPRESS_STEPS} with "
                f"{owner}.muon_ns_coeffs=polar_express (it defines {POLAR_EXPRESS_STEPS} coefficient tuples)"
            )
        scale = self.muon_ns_norm_scale
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise OptimConfigError(f"{owner}.muon_ns_norm_scale={scale!r} must be a finite number > 0")
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
    """LR schedule: wallclock_warmdown (official), fraction_warmdown (#51/#64) or wsd_s (seed 001)."""
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
    warmdown_frac: float = 0.75
    """fraction_warmdown / wsd_s: fraction of training (of each cycle for wsd_s) spent decaying (WARMDOWN_FRAC)."""
    min_lr: float = 0.0
    """Floor of the LR multiplier, as a fraction of base lr, for every schedule; 0 = decay to 0 (MIN_LR; #64)."""
    gptq_reserve_seconds: float = 0.0
    """Seconds of the wallclock cap kept for post-training work; schedules measure progress against
    cap − reserve (GPTQ_RESERVE_SECONDS; #31/#51). 0 = official."""
    lr_warmup_steps: int = 0
    """wsd_s only: linear LR warmup over the first N steps, multiplier (step+1)/N; 0 = none."""
    wsd_cycles: int = 1
    """wsd_s only: number of stable+decay cycles; the LR jumps back to peak after each non-final decay."""
    decay_shape: str = "linear"
    """wsd_s only: decay curve from 1 to min_lr: linear, cosine or 1-sqrt."""

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
        # every check is a statement of its own, so a generated train_gpt.py drops those on fields no environment
        # variable reaches (golf.record.prevalidated.drop_settled_checks) and keeps the cap's
        _check_closed_unit(owner, "warmdown_frac", self.warmdown_frac)
        _check_closed_unit(owner, "min_lr", self.min_lr)
        _check_finite_nonneg(owner, "gptq_reserve_seconds", self.gptq_reserve_seconds)
        if cap > 0 and self.gptq_reserve_seconds >= cap:
            raise OptimConfigError(
                f"{owner}.gptq_reserve_seconds={self.gptq_reserve_seconds!r} must be smaller than "
                f"{owner}.max_wallclock_seconds={cap!r}"
            )
        _check_int_at_least(owner, "lr_warmup_steps", self.lr_warmup_steps, 0)
        _check_int_at_least(owner, "wsd_cycles", self.wsd_cycles, 1)
        if self.decay_shape not in DECAY_SHAPES:
            raise OptimConfigError(f"{owner}.decay_shape={self.decay_shape!r} must be one of {sorted(DECAY_SHAPES)}")
        _check_wsd_only(self.name, {"lr_warmup_steps": (self.lr_warmup_steps, 0), "wsd_cycles": (self.wsd_cycles, 1),
                                    "decay_shape": (self.decay_shape, "linear")})

    @property
    def max_wallclock_ms(self) -> float | None:
        """Wallclock cap in milliseconds, or None when disabled (official `max_wallclock_ms`)."""
        return 1000.0 * self.max_wallclock_seconds if self.max_wallclock_seconds > 0 else None

    @property
    def schedule_cap_ms(self) -> float | None:
        """Time the LR schedules plan for: (cap − gptq_reserve_seconds) in ms, or None without a cap."""
        cap_ms = self.max_wallclock_ms
        return None if cap_ms is None else cap_ms - 1000.0 * self.gptq_reserve_seconds
