"""Turn the looped layer range on from a training fraction on (records 04-05 onward: ENABLE_LOOPING_AT).

The records run the plain stack while frac < enable_at (cheaper steps first), then switch `looping_active`
on for the rest of training. golf models start with looping on (the trained architecture, so eval/export
see it); this hook switches it off when training starts and back on at the fraction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from torch import nn

from golf.train.hooks import TrainHook

log = logging.getLogger("golf.train")


def _unwrap(model: nn.Module) -> nn.Module:
    """The GPT behind DDP (.module) / torch.compile (._orig_mod) wrappers."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


class EnableLoopingHook(TrainHook):
    """Calls `model.set_looping(False)` at train start and `set_looping(True)` once frac >= enable_at.

    frac = max(steps_done / iterations, elapsed_seconds / max_wallclock_seconds), the second term only under a
    wallclock cap. `elapsed_seconds` is wall time since on_train_start measured by `clock` (seconds); unlike
    the loop's training clock it also counts periodic validation, so with val_loss_every > 0 the switch can
    come slightly early. Looping is forced on at on_train_end so the evaluated/exported model is the full one.
    """

    def __init__(self, enable_at: float, iterations: int, max_wallclock_seconds: float,
                 clock: Callable[[], float] = time.perf_counter):
        if not 0.0 < enable_at < 1.0:
            raise ValueError(f"model.enable_looping_at={enable_at} must be in (0, 1) for EnableLoopingHook")
        self.enable_at = enable_at
        self.iterations = iterations
        self.cap_s = max_wallclock_seconds if max_wallclock_seconds > 0 else None
        self.clock = clock
        self.t0 = 0.0
        self.enabled_at_step: int | None = None

    def fraction(self, step: int) -> float:
        """Training fraction after `step` completed steps."""
        frac = step / self.iterations if self.iterations > 0 else 0.0
        if self.cap_s is not None:
            frac = max(frac, (self.clock() - self.t0) / self.cap_s)
        return frac

    def prime(self, model: nn.Module, priming_step) -> None:
        """Prime the plain (not looped) stack too, so its compile does not land inside the timed 600 s."""
        gpt = _unwrap(model)
        gpt.set_looping(False)
        try:
            priming_step()
        finally:
            gpt.set_looping(True)

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        _unwrap(model).set_looping(False)
        self.t0 = self.clock()
        self.enabled_at_step = None

    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        if self.enabled_at_step is not None or self.fraction(step) < self.enable_at:
            return {}
        gpt = _unwrap(model)
        gpt.set_looping(True)
        self.enabled_at_step = step
        log.info(f"layer_loop:enabled step:{step} frac:{self.fraction(step):.3f} "
                 f"encoder:{list(gpt.schedule.encoder)} decoder:{list(gpt.schedule.decoder)}")
        return {"model/looping_enabled_step": float(step)}

    def on_train_end(self, model: nn.Module) -> None:
        _unwrap(model).set_looping(True)

    def resume_state(self) -> dict:
        return {"enabled_at_step": self.enabled_at_step, "elapsed_s": self.clock() - self.t0}

    def restore(self, state: dict, model: nn.Module) -> None:
        self.enabled_at_step = state["enabled_at_step"]
        self.t0 = self.clock() - float(state["elapsed_s"])
        _unwrap(model).set_looping(self.enabled_at_step is not None)
