"""Optimizer layer: Muon, parameter routing, LR/momentum schedules (plain python, no Hydra).

Mirrors the official openai/parameter-golf train_gpt.py (Muon L96-168, optimizer split L846-893,
lr_mul L924-933, momentum warmup L1021-1024). Typical use in a training loop::

    optimizers = build_optimizers(model, optim_cfg, tie_embeddings=True)
    ...
    apply_lr_scale(optimizers, lr_multiplier(step, elapsed_ms, schedule_cfg))
    set_muon_momentum(optimizers, muon_momentum_at(step, optim_cfg))
    for opt in optimizers:
        opt.step()
"""

from golf.optim.config import (
    OFFICIAL_CONTROL_TENSOR_PATTERNS,
    OptimConfig,
    OptimConfigError,
    ScheduleConfig,
)
from golf.optim.groups import (
    GROUP_NAMES,
    OPTIM_GROUPS_ATTR,
    ParamRoutingError,
    apply_lr_scale,
    build_optimizers,
    is_control_tensor,
    split_params,
)
from golf.optim.muon import (
    NS5_COEFFS,
    NS_COEFFICIENTS,
    POLAR_EXPRESS_COEFFS,
    Muon,
    zeropower_via_newtonschulz5,
)
from golf.optim.schedule import (
    LR_SCHEDULES,
    fraction_warmdown,
    lr_multiplier,
    muon_momentum_at,
    set_muon_momentum,
    training_fraction,
    wallclock_warmdown,
    wsd_s,
)

__all__ = [
    "GROUP_NAMES",
    "LR_SCHEDULES",
    "NS5_COEFFS",
    "NS_COEFFICIENTS",
    "OFFICIAL_CONTROL_TENSOR_PATTERNS",
    "OPTIM_GROUPS_ATTR",
    "Muon",
    "OptimConfig",
    "OptimConfigError",
    "POLAR_EXPRESS_COEFFS",
    "ParamRoutingError",
    "ScheduleConfig",
    "apply_lr_scale",
    "build_optimizers",
    "fraction_warmdown",
    "is_control_tensor",
    "lr_multiplier",
    "muon_momentum_at",
    "set_muon_momentum",
    "split_params",
    "training_fraction",
    "wallclock_warmdown",
    "wsd_s",
    "zeropower_via_newtonschulz5",
]
