"""Training hooks: techniques that act around the optimizer step without living in the loop body.

Weight averaging (EMA/SWA/LAWA), late QAT switches and similar options implement `TrainHook` and are built
from the config by `golf.train.techniques.build_hooks`. The loop calls, in order: on_model_built before compiling, prime during the priming steps, on_train_start once after priming (priming steps
never reach the hooks), on_step_end after every optimizer step, and on_train_end before the final validation,
checkpoint and export, so what the hooks leave in the model (e.g. averaged weights) is what gets evaluated.
A hook with state across steps returns it from `resume_state` (plain containers and tensors) and takes it back in
`restore`, called on resume right after on_train_start: the resume point holds it (golf/train/resume.py).
"""

from __future__ import annotations

from torch import nn


class TrainHook:
    """No-op base class; override what you need."""

    def on_model_built(self, model: nn.Module) -> None:
        """Called once on the bare model, before torch.compile, DDP and the priming steps: the place to change
        module structure (e.g. install QAT), so nothing recompiles inside the timed training."""

    def prime(self, model: nn.Module, priming_step) -> None:
        """Called during the priming steps (whose effects are rolled back): run `priming_step()` in any model
        variant the hook will switch to later, so its kernels are compiled outside the timed training."""

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        """Called once, after the priming steps were rolled back and before step 0."""

    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        """Called after optimizer step `step` (1-based count of completed steps) with the lr multiplier used.

        Returns metrics to log (may be empty).
        """
        return {}

    def on_train_end(self, model: nn.Module) -> None:
        """Called after the last step, before the final validation and the checkpoint."""

    def resume_state(self) -> dict:
        """State that must survive a resume (plain containers and tensors; tensors may live on any device)."""
        return {}

    def restore(self, state: dict, model: nn.Module) -> None:
        """Restore `resume_state()` after on_train_start on the resumed model (tensors arrive on the CPU)."""
