"""Budget fitter: choose bits (or fp16 passthrough) per tensor group so the artifact lands under a byte target
with the least predicted damage (``export.py budget.fit=true budget.target_bytes=...``).

The records fit their budget by hand (int6 MLP / int8 embedding #6, int5 MLP #16, trace(H)-ranked int5/int6
#37, selective pruning #32); this automates the per-group choice:

1. ``measure_options``: for every fitted group g and option o in budget.fit_bits (2..8 = intN with the group's
   clip/method, 16 = fp16 passthrough) quantize ONLY g's tensors, compress them alone with the fit codec
   (bytes_g(o)) and predict the damage d_g(o): the calibration-loss increase in nats with only g quantized
   (fit_metric=loss) or the summed relative reconstruction error sum ||W - W_hat||^2 / ||W||^2 (recon).
   Tensors outside the fitted groups are quantized once with their own rules (fixed bytes).
2. ``choose_allocation``: exhaustive search over the option grid (<= 6^4 combinations) for the least total
   damage with fixed + sum bytes_g + overhead <= target; ties go to the smaller artifact.

Damages and sizes are treated as additive across groups (they are measured one group at a time); the export
pipeline verifies the real artifact and refits with the observed overshoot subtracted if needed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from golf.errors import GolfError
from golf.quant.compress import byte_shuffle, compress
from golf.quant.config import BEST_CODEC, BudgetConfig, QuantConfig, QuantGroups
from golf.quant.groups import tensor_group
from golf.quant.int8 import dequantize_state
from golf.quant.intn import quantize_state_dict_mixed
from golf.quant.payload import build_payload

log = logging.getLogger("golf.quant")
PASSTHROUGH_FP16 = 16


class FitError(GolfError, ValueError):
    """No allocation of the fitted groups' options fits the byte target (message gives the smallest one)."""


@dataclass
class FitOption:
    """One (group, option) measurement: bits 2..8 or 16 (= fp16 passthrough), compressed bytes, damage."""

    group: str
    bits: int
    bytes: int
    damage: float


@dataclass
class FitTable:
    """All measurements plus the fixed part (tensors outside the fitted groups)."""

    options: dict[str, list[FitOption]]
    fixed_bytes: int
    metric: str
    base_loss: float | None = None
    codec: str = ""


@dataclass
class FitResult:
    """The chosen allocation: group -> bits (16 = fp16 passthrough), predicted bytes and damage."""

    choice: dict[str, int]
    predicted_bytes: int
    damage: float
    limit_bytes: int
    table: FitTable = field(repr=False, default=None)

    def to_dict(self) -> dict:
        return {"choice": self.choice, "predicted_bytes": self.predicted_bytes, "damage": self.damage,
                "limit_bytes": self.limit_bytes, "metric": self.table.metric, "codec": self.table.codec,
                "fixed_bytes": self.table.fixed_bytes, "base_loss": self.table.base_loss,
                "options": {g: [[o.bits, o.bytes, o.damage] for o in opts] for g, opts in self.table.options.items()}}


def with_group_bits(quant: QuantConfig, choice: dict[str, int]) -> QuantConfig:
    """``quant`` as scheme=mixed with each chosen group set to its bits (16 -> float16 passthrough)."""
    groups = {g: quant.groups.get(g) for g in QuantGroups.__dataclass_fields__}
    for g, bits in choice.items():
        rule = groups[g]
        groups[g] = (replace(rule, passthrough="float16") if bits == PASSTHROUGH_FP16
                     else replace(rule, bits=int(bits), passthrough=""))
    return replace(quant, scheme="mixed", groups=QuantGroups(**groups))


def fit_codec(quant: QuantConfig, budget: BudgetConfig) -> tuple[str, int | None]:
    """Codec and level used to predict sizes: budget.fit_codec, else quant.codec (zstd-22 for "best")."""
    if budget.fit_codec:
        return budget.fit_codec, None
    return ("zstd", None) if quant.codec in (BEST_CODEC, "pergroup") else (quant.codec, quant.level)


def _compressed(qstate, names, codec: str, level: int | None, shuffle: int) -> int:
    raw, _ = build_payload(qstate, names)
    return len(compress(byte_shuffle(raw, shuffle), codec, level)) if raw else 0


def _recon_damage(state: dict[str, Tensor], deq: dict[str, Tensor], names: list[str]) -> float:
    total = 0.0
    for n in names:
        w = state[n].float()
        total += float((w - deq[n].float()).square().sum() / w.square().sum().clamp_min(1e-30))
    return total


def measure_options(state: dict[str, Tensor], quant: QuantConfig, budget: BudgetConfig,
                    loss_fn: Callable[[dict[str, Tensor]], float] | None = None,
                    hessians: dict[str, Tensor] | None = None) -> FitTable:
    """Measure bytes and damage of every (fitted group, option); see the module docstring.

    ``loss_fn(state_dict) -> mean calibration loss (nats)`` is required for fit_metric=loss.
    Raises FitError when fit_metric=loss and ``loss_fn`` is None.
    """
    if budget.fit_metric == "loss" and loss_fn is None:
        raise FitError("budget.fit_metric=loss needs calibration batches (a loss function)")
    codec, level = fit_codec(quant, budget)
    base = with_group_bits(quant, {})
    members: dict[str, list[str]] = {}
    for name, t in state.items():
        members.setdefault(tensor_group(name, t, base), []).append(name)
    fitted = [g for g in budget.fit_groups if members.get(g)]
    fixed_names = [n for g, ns in members.items() if g not in fitted for n in ns]
    fixed_q = quantize_state_dict_mixed({n: state[n] for n in fixed_names}, base, hessians)
    table = FitTable({}, _compressed(fixed_q, fixed_names, codec, level, quant.byte_shuffle), budget.fit_metric,
                     codec=codec)
    if loss_fn is not None and budget.fit_metric == "loss":
        table.base_loss = loss_fn(state)
    for g in fitted:
        sub = {n: state[n] for n in members[g]}
        table.options[g] = []
        for bits in sorted(set(budget.fit_bits), reverse=True):
            q = quantize_state_dict_mixed(sub, with_group_bits(quant, {g: bits}), hessians)
            deq = dequantize_state(q)
            if budget.fit_metric == "loss":
                damage = loss_fn({**state, **deq}) - table.base_loss
            else:
                damage = _recon_damage(state, deq, members[g])
            size = _compressed(q, members[g], codec, level, quant.byte_shuffle)
            table.options[g].append(FitOption(g, bits, size, damage))
            log.info(f"fit: {g:<6} {'fp16' if bits == 16 else f'int{bits}':>5}: {size:>12,} bytes "
                     f"damage {damage:+.6f}")
    return table


def choose_allocation(table: FitTable, limit_bytes: int) -> FitResult:
    """Least-damage allocation whose predicted bytes (fixed + groups) <= ``limit_bytes`` (exhaustive).

    Raises FitError naming the smallest achievable size when nothing fits.
    """
    groups = list(table.options)
    best: tuple[float, int, tuple[FitOption, ...]] | None = None
    smallest = table.fixed_bytes + sum(min(o.bytes for o in opts) for opts in table.options.values())
    for combo in itertools.product(*(table.options[g] for g in groups)):
        size = table.fixed_bytes + sum(o.bytes for o in combo)
        if size > limit_bytes:
            continue
        damage = sum(o.damage for o in combo)
        if best is None or (damage, size) < (best[0], best[1]):
            best = (damage, size, combo)
    if best is None:
        raise FitError(f"budget fit: no allocation of {groups} fits {limit_bytes:,} model bytes; the smallest "
                       f"predicted is {smallest:,} (add lower budget.fit_bits or raise budget.target_bytes)")
    return FitResult({o.group: o.bits for o in best[2]}, best[1], best[0], limit_bytes, table)


def format_fit(result: FitResult) -> str:
    """Readable allocation table: every option per group, the chosen one marked."""
    lines = [f"budget fit ({result.table.metric} damage, sizes with {result.table.codec} per group alone):"]
    for g, opts in result.table.options.items():
        cells = []
        for o in opts:
            mark = "*" if result.choice[g] == o.bits else " "
            label = "fp16" if o.bits == PASSTHROUGH_FP16 else f"int{o.bits}"
            cells.append(f"{mark}{label} {o.bytes:,}B {o.damage:+.4g}")
        lines.append(f"  {g:<6} " + " | ".join(cells))
    chosen = ", ".join(f"{g}={'fp16' if b == PASSTHROUGH_FP16 else f'int{b}'}" for g, b in result.choice.items())
    lines.append(f"  chosen: {chosen}; predicted model bytes {result.predicted_bytes:,} (limit "
                 f"{result.limit_bytes:,}, fixed part {result.table.fixed_bytes:,}); predicted damage "
                 f"{result.damage:+.6f}")
    return "\n".join(lines)


@torch.no_grad()
def loss_function(model: torch.nn.Module, batches: list[tuple[Tensor, Tensor]], autocast=None
                  ) -> Callable[[dict[str, Tensor]], float]:
    """``state_dict -> mean loss (nats) of model over batches`` (loads the weights into ``model``, eval mode)."""

    def loss(state: dict[str, Tensor]) -> float:
        model.load_state_dict(state, strict=True)
        model.eval()
        total = 0.0
        for x, y in batches:
            if autocast is None:
                total += float(model(x, y))
            else:
                with autocast():
                    total += float(model(x, y))
        return total / len(batches)

    return loss
