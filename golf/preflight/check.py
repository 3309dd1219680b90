"""Preflight of a training configuration: what it costs and whether it fits, before any data or GPU is touched.

`preflight(cfg)` returns a `PreflightReport`: full-scale parameters per quant group, estimated artifact bytes
per group (golf.quant.estimate) plus the counted code bytes vs budget.target_bytes, estimated ms/step and steps
in the wallclock cap on 8xH100 (golf.preflight.steptime, fitted on the records' logs), eval time per eval mode,
and warnings. `format_summary` is the one-line form train.py prints; `format_report` the full table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from golf.model import build_model
from golf.preflight.records import OFFICIAL_BASELINE_MS, RECORDS, read_record_log
from golf.preflight.steptime import (
    H100_COUNT,
    StepTimeModel,
    eval_tflop,
    fit_rate,
    fit_step_time_model,
    flops_per_token,
)
from golf.quant.estimate import estimate_artifact, trained_weight_std
from golf.quant.groups import tensor_group

FULL_VAL_TOKENS = 63_779_840  # fineweb10B_sp1024 val split (official log: val_loader tokens:63779840)
EVAL_MODES = ("standard", "sliding", "sliding_docs", "ttt", "ttt_lora")
CPU_FULL_SCALE_PARAMS = 5_000_000
CPU_FULL_SCALE_TOKENS = 65_536


def code_bytes_for(cfg) -> int:
    """Counted code bytes of a submission of `cfg`: the size of the train_gpt.py golf.record generates for it."""
    from golf.record import submission_code_bytes

    return submission_code_bytes(cfg)


@dataclass
class PreflightReport:
    """Everything the preflight found; `to_dict` is JSON-ready."""

    params: int
    params_by_group: dict[str, int]
    artifact_bytes: int
    bytes_by_group: dict[str, int]
    weight_std: float
    code_bytes: int
    target_bytes: int
    step_ms: float
    step_ms_source: str
    steps_in_cap: int
    wallclock_s: float
    eval_s: dict[str, float]
    eval_tokens: int
    eval_modes: list[str] = field(default_factory=list)
    """The modes the config evaluates with (eval.mode + eval.modes); eval_s covers every mode."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.artifact_bytes + self.code_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.target_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes, "fits": self.fits}


_MODEL_CACHE: dict[str, StepTimeModel] = {}


def step_time_model() -> StepTimeModel:
    """The ms/step model fitted on every record in `RECORDS` whose logs exist (official 43.5 ms/step baseline
    alone when the record folders are absent); fitted once per process, and once per golf/conf/log state on
    disk (golf.preflight.memo)."""
    if "m" not in _MODEL_CACHE:
        from golf.preflight.memo import memoised

        _MODEL_CACHE["m"] = memoised(fit_records_step_time)
    return _MODEL_CACHE["m"]


def fit_records_step_time() -> StepTimeModel:
    """Fit the step-time model on the records' logs and their configs (composed with Hydra: seconds)."""
    from golf.preflight.compose import record_config

    points, evals = [], {"standard": [], "sliding": []}
    for rec in RECORDS:
        try:
            log = read_record_log(rec.folder)
        except FileNotFoundError:
            continue
        if log.step_ms is None:
            continue
        cfg = record_config(rec)
        tflop = flops_per_token(cfg.model, cfg.trainer.train_seq_len) * cfg.trainer.train_batch_tokens / H100_COUNT / 1e12
        points.append((rec.folder, tflop, log.step_ms))
        eval_seq = cfg.eval.seq_len or cfg.trainer.train_seq_len
        for name, ms in log.eval_ms.items():  # final_*roundtrip = standard windows, final_*sliding* = stride 64
            kind = "sliding" if "sliding" in name else "standard" if "roundtrip" in name else None
            if kind == "standard":
                evals[kind].append((eval_tflop(cfg.model, FULL_VAL_TOKENS, eval_seq, kind), ms))
            elif kind == "sliding":  # the records' sliding evals use stride 64
                evals[kind].append((FULL_VAL_TOKENS / 64 / H100_COUNT / 1000.0, ms))
    if not points:
        from golf.model.config import ModelConfig

        points = [("official baseline", flops_per_token(ModelConfig(), 1024) * 524_288 / H100_COUNT / 1e12,
                   OFFICIAL_BASELINE_MS)]
    model = fit_step_time_model(points)
    model.eval_ms_per_tflop = fit_rate(evals["standard"])
    model.sliding_ms_per_kwindow = fit_rate(evals["sliding"])
    return model


def _group_params(cfg) -> tuple[dict[str, int], list[str]]:
    """Parameters per quant group at the configured size, and warnings for groups configured to quantize that
    hold no tensor (every matching tensor is at or under quant.keep_float_max_numel and stays in `small`)."""
    with torch.device("meta"):
        state = build_model(cfg.model).state_dict()
    counts: dict[str, int] = {}
    matched: dict[str, int] = {}
    quant = cfg.quant
    for name, t in state.items():
        g = tensor_group(name, t, quant) if quant.scheme != "none" else "small"
        counts[g] = counts.get(g, 0) + t.numel()
        for group in ("embed", "attn", "mlp"):
            if any(p in name for p in quant.groups.get(group).patterns) and t.is_floating_point():
                matched[group] = matched.get(group, 0) + 1
    warnings = []
    if quant.scheme == "mixed":
        for group in ("embed", "attn", "mlp"):
            rule = quant.groups.get(group)
            if rule.quantized and matched.get(group) and group not in counts:
                warnings.append(
                    f"quant.groups.{group}.bits={rule.bits} applies to no tensor: all {matched[group]} matching "
                    f"tensors have <= quant.keep_float_max_numel={quant.keep_float_max_numel} elements and stay "
                    f"in 'small' (lower quant.keep_float_max_numel to quantize them)")
    return counts, warnings


def preflight(cfg, device: str | None = None) -> PreflightReport:
    """Preflight of a TrainRunConfig (see module docstring). `device`: where training would run (cpu/cuda;
    default: resolved from cfg.trainer.device and this machine)."""
    params_by_group, warnings = _group_params(cfg)
    params = sum(params_by_group.values())
    std = trained_weight_std(cfg.optim.matrix_lr, cfg.optim.muon_wd)
    est = estimate_artifact(cfg.model, cfg.quant, std)
    code = code_bytes_for(cfg)
    model = step_time_model()
    seq, batch = cfg.trainer.train_seq_len, cfg.trainer.train_batch_tokens
    step_ms = model.step_ms(cfg.model, batch, seq)
    cap = float(cfg.schedule.max_wallclock_seconds) or 600.0
    steps = int(cap * 1000.0 / step_ms)
    if cfg.schedule.iterations and cfg.schedule.iterations < steps:
        steps = int(cfg.schedule.iterations)
    eval_tokens = cfg.eval.max_tokens or FULL_VAL_TOKENS
    eval_seq = cfg.eval.seq_len or seq
    eval_s = {m: model.eval_ms(cfg.model, eval_tokens, eval_seq, m, cfg.eval.stride, cfg.eval.ttt.epochs) / 1000.0
              for m in EVAL_MODES}
    report = PreflightReport(params, params_by_group, est.total_bytes, {g.group: g.bytes for g in est.groups}, std,
                             code, cfg.budget.target_bytes, step_ms, f"model fitted on {len(model.fitted_on)} record(s)",
                             steps, cap, eval_s, eval_tokens, list(dict.fromkeys([cfg.eval.mode, *cfg.eval.modes])),
                             warnings)
    report.warnings += _warnings(cfg, report, device)
    return report


def _warnings(cfg, r: PreflightReport, device: str | None) -> list[str]:
    out = []
    dev = device or ("cuda" if cfg.trainer.device != "cpu" and torch.cuda.is_available() else "cpu")
    if dev == "cpu" and (r.params > CPU_FULL_SCALE_PARAMS or cfg.trainer.train_batch_tokens > CPU_FULL_SCALE_TOKENS):
        out.append(f"full-scale config on CPU ({r.params:,} params, {cfg.trainer.train_batch_tokens:,} tokens/step): "
                   "each step takes minutes here; add scale=cpu_tiny for a CPU run")
    if not r.fits:
        out.append(f"estimated total {r.total_bytes:,} bytes is over budget.target_bytes={r.target_bytes:,} by "
                   f"{r.total_bytes - r.target_bytes:,}")
    if cfg.eval.max_tokens:
        out.append(f"eval.max_tokens={cfg.eval.max_tokens:,}: val_bpb is scored on the first {cfg.eval.max_tokens:,} "
                   "val tokens only (the challenge scores all of them)")
    for mode, s in r.eval_s.items():
        if mode in r.eval_modes and s > cfg.eval.time_budget_s:
            out.append(f"eval mode {mode}: estimated {s:.0f} s is over eval.time_budget_s={cfg.eval.time_budget_s:.0f}")
    return out


def format_summary(r: PreflightReport) -> str:
    """One line: params, bytes vs budget, step time and steps, warnings count."""
    verdict = "fits" if r.fits else "OVER"
    return (f"preflight: {r.params:,} params; est. artifact {r.artifact_bytes:,} + code {r.code_bytes:,} = "
            f"{r.total_bytes:,} / {r.target_bytes:,} bytes ({verdict}); est. {r.step_ms:.1f} ms/step on "
            f"{H100_COUNT}xH100 -> {r.steps_in_cap:,} steps in {r.wallclock_s:.0f} s; "
            f"{len(r.warnings)} warning(s)")


def format_report(r: PreflightReport) -> str:
    """The full screen: per-group table, budget, timing, eval estimates, warnings."""
    lines = [f"{'group':<8} {'params':>12} {'est. bytes':>12}"]
    for g in sorted(set(r.params_by_group) | set(r.bytes_by_group)):
        lines.append(f"{g:<8} {r.params_by_group.get(g, 0):>12,} {r.bytes_by_group.get(g, 0):>12,}")
    lines.append(f"{'total':<8} {r.params:>12,} {r.artifact_bytes:>12,}  (header + manifest included; "
                 f"weights modelled with std {r.weight_std:.3f})")
    lines.append(f"code bytes {r.code_bytes:,}; total {r.total_bytes:,} vs {r.target_bytes:,}: "
                 f"{'fits, headroom ' + format(r.target_bytes - r.total_bytes, ',') if r.fits else 'OVER by ' + format(r.total_bytes - r.target_bytes, ',')}")
    lines.append(f"step time: {r.step_ms:.1f} ms/step on {H100_COUNT}xH100 ({r.step_ms_source}); "
                 f"{r.steps_in_cap:,} steps in {r.wallclock_s:.0f} s")
    lines.append(f"eval time on {H100_COUNT}xH100 for {r.eval_tokens:,} val tokens: " + ", ".join(
        f"{mode} {'>=' if mode.startswith('ttt') else '~'}{s:.1f} s" + (" (configured)" if mode in r.eval_modes else "")
        for mode, s in r.eval_s.items()))
    lines.append("  (ttt: FLOPs only, no expressible record to calibrate on; record 03-23's legal TTT took 410 s)")
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(format_summary(r))
    return "\n".join(lines)
