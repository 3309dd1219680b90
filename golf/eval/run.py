"""Run an eval mode by name: `run_evaluation(model, val, cfg, ctx)`.

Each mode module exposes `score(model, val, cfg, ctx) -> EvalResult`: the model, the validation data
(golf.eval.data.ValData), the eval config and where it runs (EvalContext). Modes are imported by name when
used, so a submission ships only the modes its config runs.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from golf.eval.config import EVAL_MODES, EvalConfig
from golf.eval.data import ValData
from golf.eval.standard import EvalResult
from golf.eval.windows import EvalModeError

log = logging.getLogger("golf.eval")

MODE_MODULES: dict[str, str] = {"standard": "golf.eval.standard", "sliding": "golf.eval.sliding",
                                "ttt": "golf.eval.ttt", "phased_ttt": "golf.eval.phased_ttt"}
"""Eval mode -> the module whose `score` implements it (keys equal golf.eval.config.EVAL_MODES; tested)."""
SIDECAR_MODES = ("standard", "phased_ttt")
"""Modes that count val_bpb bytes from a CaseOps byte sidecar (golf.eval.data.ValData.byte_sidecar)."""


@dataclass
class EvalContext:
    """Where an evaluation runs: the device, this process's rank and the world size, progress bars."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    progress: bool = False
    target_losses: torch.Tensor | None = None
    """Optional float64 [N] tensor that receives each target's loss in nats, for this rank's targets (tests
    and analysis; the modes leave the other entries untouched)."""


def run_evaluation(model: nn.Module, val: ValData, cfg: EvalConfig, ctx: EvalContext,
                   mode: str | None = None) -> EvalResult:
    """Score `model` with `mode` (default cfg.mode) and the settings in `cfg`.

    The wall time (`seconds`) counts everything the mode does (TTT's model copy and adapter set-up included);
    a run over cfg.time_budget_s logs a warning and sets `over_budget`. The caller's model is left unchanged.
    Raises EvalModeError for an unknown mode or settings the mode rejects.
    """
    chosen = mode or cfg.mode  # a new name: the parameter stays unbound, so a record's file folds it
    if chosen not in MODE_MODULES:
        raise EvalModeError(f"eval mode {chosen!r}; allowed: {', '.join(EVAL_MODES)}")
    if chosen not in SIDECAR_MODES and val.byte_sidecar is not None:  # run-time: the data's byte sidecar
        raise EvalModeError(f"eval mode {chosen!r} does not count bytes from the CaseOps byte sidecar; "
                            f"use {' or '.join(SIDECAR_MODES)}")
    t0 = time.perf_counter()
    result = importlib.import_module(MODE_MODULES[chosen]).score(model, val, cfg, ctx)
    result.seconds = time.perf_counter() - t0
    if result.seconds > cfg.time_budget_s:
        result.over_budget = True
        log.warning(f"eval {chosen} took {result.seconds:.1f}s, over the {cfg.time_budget_s:.0f}s eval budget "
                    "(eval.time_budget_s)")
    return result


def run_modes(model: nn.Module, val: ValData, cfg: EvalConfig, ctx: EvalContext) -> list[EvalResult]:
    """Score `model` with every mode of `cfg.run_modes()` in order, reusing the loaded model and val data."""
    return [run_evaluation(model, val, cfg, ctx, mode) for mode in cfg.run_modes()]
