"""The late-QAT switch as a training hook (quant's fake-quant functions, driven by the lr schedule).

Lives in train/ so that quant never imports train: golf.quant.qat holds the fake-quantization itself.
"""

from __future__ import annotations

import logging

from torch import nn

from golf.errors import GolfError
from golf.quant.config import QuantConfig
from golf.quant.qat import install_qat, remove_qat, set_qat_enabled
from golf.train.hooks import TrainHook

log = logging.getLogger("golf.train")


class QATConfigError(GolfError):
    """QAT is enabled but would fake-quantize nothing."""


class QATHook(TrainHook):
    """Install QAT on the built model; enable at once (late_threshold 0) or when lr_scale < late_threshold."""

    def __init__(self, quant: QuantConfig):
        self.quant = quant
        self.threshold = float(quant.qat.late_threshold)
        self.enabled = False

    def on_model_built(self, model: nn.Module) -> None:
        # Installed before compile/priming (the flag is a buffer read in the graph, so switching it later
        # never recompiles); priming runs with the flag as training will start.
        covered = install_qat(model, self.quant, enabled=self.threshold <= 0.0)
        if not covered:  # e.g. every matrix below keep_float_max_numel: QAT would silently do nothing
            raise QATConfigError(
                "quant.qat.enabled=true but the export rule quantizes no CastedLinear weight (all are passed "
                f"through: quant.keep_float_max_numel={self.quant.keep_float_max_numel}); lower it or disable QAT")
        log.info(f"qat: fake-quantizing {len(covered)} CastedLinear weights "
                 f"({'from step 0' if self.threshold <= 0.0 else f'once lr_scale < {self.threshold:g}'})")

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        self.peak = 0.0
        self.enabled = self.threshold <= 0.0
        set_qat_enabled(model, self.enabled)

    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        # "Late" means on the way down: an lr warmup (WSD-S) also starts below the threshold.
        self.peak = max(getattr(self, "peak", 0.0), lr_scale)
        if not self.enabled and lr_scale < self.threshold <= self.peak:
            self.enabled = True
            set_qat_enabled(model, True)
            log.info(f"qat: enabled after step {step} (lr_scale {lr_scale:.4f} < {self.threshold:g})")
        return {"qat/enabled": float(self.enabled)}

    def on_train_end(self, model: nn.Module) -> None:
        remove_qat(model)

    def resume_state(self) -> dict:
        return {"enabled": self.enabled, "peak": float(getattr(self, "peak", 0.0))}

    def restore(self, state: dict, model: nn.Module) -> None:
        self.enabled, self.peak = bool(state["enabled"]), float(state["peak"])
        set_qat_enabled(model, self.enabled)
