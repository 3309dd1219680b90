"""Weight averaging as training hooks: EMA, SWA and LAWA. The averaged weights are what gets evaluated and saved.

Each averager keeps its running state in fp32 on the model's device, one tensor per floating-point entry of
`model.state_dict()` (parameters and float buffers; integer buffers are left live). `on_train_end` copies the
average into the model in place (cast to each entry's dtype), so the loop's final validation, the checkpoint and
every export made from it use the averaged weights — the records do the same with `load_state_dict` before
serialization.

- EMA (`2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271`, #20; `2026-03-22_11L_EMA_GPTQ-lite…`): shadow initialized
  from the weights at the start of training, then after every optimizer step `ema ← δ·ema + (1 − δ)·θ`
  (δ = 0.997; 0.9965 from 2026-04-09). No bias correction.
- SWA (`2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA`, #15; "tight SWA" of PR #374 / seed 002): after
  optimizer step `step` (1-based) taken with LR multiplier `s`, snapshot when `s < swa_lr_threshold` and
  `step % swa_every == 0`; the result is the uniform mean of the snapshots, applied only when at least two were
  taken (the record's `swa_count > 1` guard — one late snapshot alone would just replace the final weights with
  older ones).
- LAWA, latest weight averaging (Kaddour 2022, arXiv 2209.14981; Sanyal et al. 2023, arXiv 2306.03241 for LLM
  pre-training; used with depth recurrence in record `2026-03-19_mohosy_qat_lawa_depth_recurrence`, seed 001):
  snapshot every `lawa_every` steps, keep the latest `lawa_k`, apply their uniform mean (the record averages
  every snapshot after a start fraction; a window of the latest k is the paper's form and bounds memory).

Deviation from the records, on purpose: they sum SWA snapshots on the CPU in each tensor's own dtype (bf16 for
the embedding); golf accumulates in fp32 on the device, which only removes rounding.
"""

from __future__ import annotations

import logging
from collections import deque

import torch
from torch import Tensor, nn

from golf.train.config import AveragingConfig
from golf.train.hooks import TrainHook

log = logging.getLogger("golf.train")

def float_state(model: nn.Module) -> dict[str, Tensor]:
    """The floating-point entries of `model.state_dict()` (views sharing storage with the model)."""
    return {name: t for name, t in model.state_dict().items() if t.is_floating_point()}


def fp32_copy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached fp32 clones on each tensor's own device."""
    return {name: t.detach().to(dtype=torch.float32, copy=True) for name, t in state.items()}


@torch.no_grad()
def load_average(model: nn.Module, average: dict[str, Tensor]) -> None:
    """Copy `average` (fp32) into the model's state entries in place, casting to each entry's dtype.

    Raises:
        KeyError: `average` names an entry the model does not have (averager built for another model).
    """
    live = model.state_dict()
    for name, value in average.items():
        if name not in live:
            raise KeyError(f"averaged tensor {name!r} is not in the model's state_dict")
        live[name].copy_(value)


def _to_live_devices(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """fp32 copies of a stored average on the devices of the model's matching entries (resume)."""
    live = model.state_dict()
    return {name: t.to(device=live[name].device, dtype=torch.float32) for name, t in state.items()}


class WeightAverager(TrainHook):
    """Base class: subclasses fill `on_step_end` and `average()`; `on_train_end` swaps the average in."""

    label = "average"

    def __init__(self) -> None:
        self._names: list[str] = []

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        self._names = list(float_state(model))

    def average(self) -> dict[str, Tensor] | None:
        """fp32 averaged weights, or None when there is nothing to apply (the live weights are kept)."""
        raise NotImplementedError

    def on_train_end(self, model: nn.Module) -> None:
        average = self.average()
        if average is None:
            log.info(f"averaging:{self.label} nothing to apply ({self.describe()}); keeping the final weights")
            return
        load_average(model, average)
        log.info(f"averaging:{self.label} applied ({self.describe()})")

    def describe(self) -> str:
        return ""


class EMAAverager(WeightAverager):
    """Exponential moving average: `ema ← δ·ema + (1 − δ)·θ` after every optimizer step (record #20)."""

    label = "ema"

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] = {}
        self.updates = 0

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        super().on_train_start(model, optimizers)
        self.shadow = fp32_copy(float_state(model))
        self.updates = 0

    @torch.no_grad()
    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        live = float_state(model)
        shadow = [self.shadow[n] for n in self._names]
        current = [live[n].detach().float() for n in self._names]
        torch._foreach_mul_(shadow, self.decay)  # same op order as the records: mul_(δ) then add_(θ, 1 − δ)
        torch._foreach_add_(shadow, current, alpha=1.0 - self.decay)
        self.updates += 1
        return {}

    def average(self) -> dict[str, Tensor] | None:
        return self.shadow

    def resume_state(self) -> dict:
        return {"shadow": self.shadow, "updates": self.updates}

    def restore(self, state: dict, model: nn.Module) -> None:
        self.shadow = _to_live_devices(state["shadow"], model)
        self.updates = int(state["updates"])

    def describe(self) -> str:
        return f"decay {self.decay}, {self.updates} updates"


class SWAAverager(WeightAverager):
    """Uniform mean of snapshots taken every `every` steps while the LR multiplier is below `threshold` (#15)."""

    label = "swa"

    def __init__(self, every: int, threshold: float) -> None:
        super().__init__()
        self.every = int(every)
        self.threshold = float(threshold)
        self.total: dict[str, Tensor] | None = None
        self.count = 0
        self.steps: list[int] = []

    @torch.no_grad()
    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        if not (lr_scale < self.threshold and step % self.every == 0):
            return {}
        live = float_state(model)
        if self.total is None:
            self.total = fp32_copy(live)
        else:
            torch._foreach_add_([self.total[n] for n in self._names], [live[n].detach().float() for n in self._names])
        self.count += 1
        self.steps.append(step)
        return {"averaging/swa_snapshots": float(self.count)}

    def resume_state(self) -> dict:
        return {"total": self.total, "count": self.count, "steps": list(self.steps)}

    def restore(self, state: dict, model: nn.Module) -> None:
        self.total = None if state["total"] is None else _to_live_devices(state["total"], model)
        self.count, self.steps = int(state["count"]), [int(s) for s in state["steps"]]

    def average(self) -> dict[str, Tensor] | None:
        if self.total is None or self.count < 2:
            return None
        return {name: t / self.count for name, t in self.total.items()}

    def describe(self) -> str:
        return f"{self.count} snapshots, every {self.every} steps below lr scale {self.threshold}"


class LAWAAverager(WeightAverager):
    """Uniform mean of the latest `k` snapshots, taken every `every` steps (LAWA, arXiv 2306.03241)."""

    label = "lawa"

    def __init__(self, k: int, every: int) -> None:
        super().__init__()
        self.every = int(every)
        self.snapshots: deque[dict[str, Tensor]] = deque(maxlen=int(k))
        self.steps: deque[int] = deque(maxlen=int(k))

    @torch.no_grad()
    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        if step % self.every:
            return {}
        self.snapshots.append(fp32_copy(float_state(model)))
        self.steps.append(step)
        return {"averaging/lawa_snapshots": float(len(self.snapshots))}

    def resume_state(self) -> dict:
        return {"snapshots": list(self.snapshots), "steps": list(self.steps)}

    def restore(self, state: dict, model: nn.Module) -> None:
        self.snapshots.clear()
        self.steps.clear()
        for snap, step in zip(state["snapshots"], state["steps"], strict=True):
            self.snapshots.append(_to_live_devices(snap, model))
            self.steps.append(int(step))

    def average(self) -> dict[str, Tensor] | None:
        if not self.snapshots:
            return None
        snaps = list(self.snapshots)
        total = {name: t.clone() for name, t in snaps[0].items()}
        for snap in snaps[1:]:
            torch._foreach_add_(list(total.values()), [snap[n] for n in total])
        return {name: t / len(snaps) for name, t in total.items()}

    def describe(self) -> str:
        return f"mean of steps {list(self.steps)}"


class EMALAWAAverager(WeightAverager):
    """EMA and LAWA composed (seed 001 "EMA + LAWA"): the EMA is updated after every step as `EMAAverager`;
    every `every` steps its shadow weights are snapshotted, and the result is the uniform mean of the latest `k`
    EMA snapshots (the EMA itself when none was taken yet)."""

    label = "ema_lawa"

    def __init__(self, decay: float, k: int, every: int) -> None:
        super().__init__()
        self.ema = EMAAverager(decay)
        self.lawa = LAWAAverager(k, every)

    def on_train_start(self, model: nn.Module, optimizers: list) -> None:
        super().on_train_start(model, optimizers)
        self.ema.on_train_start(model, optimizers)
        self.lawa.on_train_start(model, optimizers)

    @torch.no_grad()
    def on_step_end(self, step: int, lr_scale: float, model: nn.Module) -> dict[str, float]:
        self.ema.on_step_end(step, lr_scale, model)
        if step % self.lawa.every:
            return {}
        self.lawa.snapshots.append({n: t.clone() for n, t in self.ema.shadow.items()})
        self.lawa.steps.append(step)
        return {"averaging/lawa_snapshots": float(len(self.lawa.snapshots))}

    def average(self) -> dict[str, Tensor] | None:
        return self.lawa.average() or self.ema.average()

    def describe(self) -> str:
        return f"EMA ({self.ema.describe()}), LAWA of its {self.lawa.describe()}"


def build_averager(cfg: AveragingConfig) -> WeightAverager | None:
    """The averaging hook selected by `cfg.name`, or None for "none"."""
    if cfg.name == "ema_lawa":
        return EMALAWAAverager(cfg.ema_decay, cfg.lawa_k, cfg.lawa_every)
    if cfg.name == "ema":
        return EMAAverager(cfg.ema_decay)
    if cfg.name == "swa":
        return SWAAverager(cfg.swa_every, cfg.swa_lr_threshold)
    if cfg.name == "lawa":
        return LAWAAverager(cfg.lawa_k, cfg.lawa_every)
    return None
