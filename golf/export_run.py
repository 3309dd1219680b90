"""Export: checkpoint -> quantized, compressed artifact -> byte-budget report -> round-trip evaluation.

Order: load the checkpoint -> (GPTQ groups) the Hessians calibrated inside training (<run_dir>/hessians.pt,
golf.train.calibration), or, for a non-record export only, calibration on training batches now (shared across
ranks) -> (budget.fit) choose bits per tensor group -> quantize -> write a temporary artifact beside the target
-> budget check -> rename over the target -> round-trip evaluation (shared across ranks) -> export.json with its
`compliance` block (golf.train.compliance). Nothing is overwritten unless the new artifact fits the budget; the
checkpoint is only ever read. Under torchrun rank 0 alone quantizes and writes. Calibration, fitting and
quantization times are reported (GPTQ calibration on training data counts toward the 600 s training budget,
record #31).

The quantization gap is the artifact's score minus the checkpoint's, both with eval.mode, or with
eval.gap=standard both on standard windows, the artifact then scored once more with eval.mode (the records'
diagnostic lines: a phased-TTT export runs TTT once instead of twice).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from golf.errors import GolfError
from golf.eval.data import val_data_for
from golf.eval.run import EvalContext, run_evaluation
from golf.eval.standard import EvalResult
from golf.export_core import calibration, quantize_and_write
from golf.io import StagedFile, json_text, run_lock
from golf.quant.budget import BudgetExceededError, BudgetReport, build_budget_report, format_report
from golf.quant.config import BudgetConfig, QuantConfig
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.compliance import compliance_block, format_block, hardware, val_data_use
from golf.train.config import TrainRunConfig
from golf.train.dist import max_over_ranks
from golf.train.load import load_for_eval
from golf.train.tracking import METRICS_NAME, read_json

log = logging.getLogger("golf.export")
EXPORT_REPORT = "export.json"
EXPORT_MARKDOWN = "export_report.md"


OUTCOME_KEY = "golf_export_outcome"
OUTCOME_WAIT_S = 3600.0
"""How long ranks > 0 wait for rank 0's quantize + compress + write (seconds)."""


class ExportRankError(GolfError):
    """Rank 0 of a multi-rank export failed (its own error names the cause); the other ranks stop with this."""


CodeBytes = Callable[[TrainRunConfig], int]
"""Counted code bytes of a run's submission: the size of the `train_gpt.py` generated for its config
(golf.record.submission_code_bytes, injected by the entry points: export_run sits below golf.record)."""
QuantChoice = QuantConfig | Callable[[QuantConfig], QuantConfig] | None
"""export_run's `quant`: a config, a change of the run's own (run's -> used), or None for the run's own."""


class ExportError(GolfError):
    """The export cannot be trusted (source weights changed, non-finite round-trip); nothing was written."""


def report_path_for(out: Path) -> Path:
    """The report beside an artifact: `<artifact name>.export.json` (one per artifact, golf.compare)."""
    return out.with_name(out.name + ".export.json")


def weights_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict (any device), in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


def export_run(run_dir: str | Path, quant: QuantChoice, budget: BudgetConfig, eval_cfg, device: torch.device,
               out: str | Path | None = None, roundtrip_eval: bool = True, *, non_record: bool = False,
               rank: int = 0, world_size: int = 1, code_bytes: CodeBytes) -> dict:
    """Quantize <run_dir>/checkpoint.pt into an artifact and return the export report (also export.json).

    `quant=None` exports with the quantization the run was trained with; a callable gets that config and returns
    the one to use (export.py: the run's with the command line's quant.* keys on top). `code_bytes(run_cfg)`
    counts the submission's code (the train_gpt.py golf.record generates for the run's config). Under torchrun (world_size > 1,
    process group joined) calibration after training (non_record only) and the round-trip evaluation are
    shared across ranks; rank 0 alone quantizes and writes files, the others wait for its outcome.
    `non_record=true` allows calibrating on training data here (GPTQ Hessians, budget.fit_metric=loss); the
    compliance block then marks the run as calibrated after training.

    Raises BudgetExceededError (artifact + code > target; nothing written), FitError (budget.fit finds no
    allocation), CalibrationError (calibration after training without non_record), CheckpointError,
    ArtifactError, GPTQError.
    """
    run_dir = Path(run_dir)
    if rank != 0:  # rank 0 alone writes, and holds the output directory's export lock
        return _export(run_dir, quant, budget, eval_cfg, device, out, roundtrip_eval, non_record, rank, world_size,
                       code_bytes)
    with run_lock(Path(out).parent if out else run_dir, "export"):
        return _export(run_dir, quant, budget, eval_cfg, device, out, roundtrip_eval, non_record, rank, world_size,
                       code_bytes)


def _export(run_dir: Path, quant: QuantChoice, budget: BudgetConfig, eval_cfg, device: torch.device,
            out: str | Path | None, roundtrip_eval: bool, non_record: bool, rank: int, world_size: int,
            code_bytes: CodeBytes) -> dict:
    loaded = load_for_eval(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    run_cfg = loaded.run_config
    # the run's own rule (e.g. its QAT clip) unless told otherwise; a callable changes some of its keys
    quant = quant(run_cfg.quant) if callable(quant) else quant or run_cfg.quant
    out = Path(out) if out else run_dir / artifact_name(quant, budget.fit)
    # A private copy: nothing the fitter or quantizer does can reach the model's own storage.
    state = {k: v.detach().to("cpu", copy=True) for k, v in loaded.model.state_dict().items()}
    source_sum = weights_checksum(state)
    models: list[torch.nn.Module] = []

    @functools.cache
    def model_on_device() -> torch.nn.Module:
        """The checkpoint's model on `device` (for calibration and the pre-quant score), read at most once more."""
        m = loaded.model if device.type == "cpu" else load_for_eval(run_dir / CHECKPOINT_NAME, device).model
        models.append(m)
        return m

    timings: dict[str, float] = {}
    pre = pre_quant_score(model_on_device(), run_cfg, eval_cfg, device, rank, world_size) if roundtrip_eval else None
    hessians, loss_fn, calibrated = calibration(model_on_device, run_cfg, quant, budget, device, state, timings,
                                                run_dir, non_record, rank, world_size)
    if rank != 0:  # rank 0 quantizes and writes; the others take part in the round trip of its temp artifact
        outcome = _rank0_outcome(None)
        return _finish_on_rank(outcome, pre, run_cfg, eval_cfg, device, roundtrip_eval, rank, world_size)
    staged = None
    try:
        try:
            counted = code_bytes(run_cfg)
            reports: list[BudgetReport] = []

            def describe(qstate, info) -> None:  # the per-group budget table, logged before the budget check
                reports.append(build_budget_report(qstate, info, counted, [("train_gpt.py", counted)],
                                                   budget.target_bytes, "shipped"))
                log.info("\n" + format_report(reports[-1], show_tensors=False, show_files=False))

            result, staged = quantize_and_write(state, quant, budget, hessians, loss_fn, timings, out, run_cfg,
                                                counted, describe)
            result["budget"] = reports[-1].to_dict()
            report_text = format_report(reports[-1])
        except Exception as exc:
            _rank0_outcome(f"{type(exc).__name__}: {exc}")
            raise
        _rank0_outcome(f"ok {staged.tmp}")
        result["calibration"] = calibrated
        if roundtrip_eval:
            result.update(roundtrip(pre, staged.tmp, run_cfg, eval_cfg, device, rank, world_size))
        _check_source_unchanged(source_sum, state, loaded.model, *models)
        result["compliance"] = _compliance(run_dir, result, calibrated, eval_cfg, device, world_size)
        log.info(format_block(result["compliance"]))
        reports = {report_path_for(out): json_text(result)}
        if out.parent.resolve() == run_dir.resolve():  # the run's own latest-export report, never from out=elsewhere
            reports[run_dir / EXPORT_REPORT] = json_text(result)
            reports[run_dir / EXPORT_MARKDOWN] = f"# export of {run_dir.name}: {out.name}\n\n```\n{report_text}\n```\n"
        _commit_all(staged, reports)
    finally:
        if staged is not None:
            staged.discard()
    return result


def _commit_all(staged: StagedFile, reports: dict[Path, str]) -> None:
    """Write every report to its temp file, then rename the artifact and the reports into place."""
    files: list[StagedFile] = []
    try:
        for path, text in reports.items():
            files.append(StagedFile(path))
            files[-1].write_bytes(text.encode("utf-8"))
        staged.commit()
    except BaseException:
        for f in files:
            f.discard()
        raise
    for f in files:
        f.commit()


def _rank0_outcome(message: str | None) -> str:
    """Rank 0 posts 'ok' or its error line; the other ranks (message None) wait for it. No-op alone.

    Through the process group's key-value store, not a collective: rank 0's quantization and compression can
    outlast dist.timeout_s (that bounds collectives), so the others wait up to OUTCOME_WAIT_S for it.
    """
    import datetime

    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return message or "ok"
    store = distributed_c10d._get_default_store()
    if message is not None:
        store.set(OUTCOME_KEY, message)
        return message
    store.wait([OUTCOME_KEY], datetime.timedelta(seconds=OUTCOME_WAIT_S))
    return store.get(OUTCOME_KEY).decode()


def _finish_on_rank(outcome: str, pre, run_cfg, eval_cfg, device, roundtrip_eval: bool, rank: int,
                    world_size: int) -> dict:
    """Ranks > 0: stop when rank 0 failed, else join the round-trip evaluation of rank 0's temp artifact."""
    if not outcome.startswith("ok"):
        raise ExportRankError(f"rank {rank}: export stopped, rank 0 failed: {outcome}")
    if roundtrip_eval:
        return roundtrip(pre, Path(outcome.split(" ", 1)[1]), run_cfg, eval_cfg, device, rank, world_size)
    return {}


def _compliance(run_dir: Path, result: dict, calibration: dict, eval_cfg, device, world_size: int) -> dict:
    """The export's compliance block: training time from the run's metrics.json, calibration, the round trip's
    eval time (load + dequantization + mode), bytes."""
    metrics = read_json(run_dir / METRICS_NAME) if (run_dir / METRICS_NAME).is_file() else {}
    train_s = metrics.get("train_time_s")
    eval_s = {result["roundtrip"]["mode"]: result["roundtrip_wall_s"]} if "roundtrip" in result else {}
    train_hw = (metrics.get("compliance") or {}).get("hardware")
    block = compliance_block(hardware(device, world_size), train_time_s=train_s,
                             calibration_time_s=calibration["seconds"], calibration_where=calibration["where"],
                             eval_time_s=eval_s, bytes_total=result["bytes_total"],
                             val_data=val_data_use(eval_cfg.run_modes()))
    if train_hw:  # training ran elsewhere: judge its clock against its own hardware
        train_block = compliance_block(train_hw, train_time_s=train_s, calibration_time_s=calibration["seconds"],
                                       calibration_where=calibration["where"])
        block["train_hardware"] = train_hw
        block["train_limit_s"] = train_block["train_limit_s"]
        block["verdicts"]["train_time"] = train_block["verdicts"]["train_time"]
        block["verdicts"]["calibration"] = train_block["verdicts"]["calibration"]
    return block


def artifact_name(quant: QuantConfig, fit: bool = False) -> str:
    """File name of an artifact by scheme and codec, so exports with different schemes never overwrite:
    model.int8+zlib.golf (official), model.int6-search+zstd.golf, model.e8-a6-m5-o6+brotli.golf (mixed bits),
    model.fit+zstd.golf (budget.fit chooses the bits)."""
    if quant.scheme == "int8":
        label = "int8"
    elif quant.scheme == "none":
        label = "float"
    elif fit:
        label = "fit"
    else:
        rules = {g: quant.groups.get(g) for g in ("embed", "attn", "mlp", "other")}
        bits = {g: (str(r.bits) if r.quantized else "f") for g, r in rules.items()}
        label = f"int{bits['attn']}" if len(set(bits.values())) == 1 and bits["attn"] != "f" else \
            "-".join(f"{g[0]}{b}" for g, b in bits.items())
        clips = {r.clip for r in rules.values() if r.quantized}
        methods = {r.method for r in rules.values() if r.quantized}
        if "gptq" in methods:
            label += "-gptq"
        if len(clips) == 1 and clips != {"percentile"}:
            label += f"-{clips.pop()}"
    return f"model.{label}+{quant.codec}.golf"


def gap_mode(eval_cfg) -> str:
    """The eval mode the quantization gap is measured with (eval.gap): eval.mode, or `standard` for gap=standard."""
    return "standard" if eval_cfg.gap == "standard" else eval_cfg.mode


def gap_apart(report: dict) -> str | None:
    """The eval mode an export report's quantization gap was measured with, when eval.gap=standard measured it
    apart from the round trip's mode; None otherwise (reports written before eval.gap included)."""
    gap, mode = report.get("gap_mode"), (report.get("roundtrip") or {}).get("mode")
    return gap if gap and mode and gap != mode else None


def _windows_note(mode: str, eval_cfg) -> str:
    return "" if mode == eval_cfg.mode else f" ({mode} windows, eval.gap={eval_cfg.gap})"


def pre_quant_score(checkpoint_model: torch.nn.Module, run_cfg: TrainRunConfig, eval_cfg, device: torch.device,
                    rank: int = 0, world_size: int = 1) -> EvalResult:
    """The checkpoint's score with the gap's mode (`gap_mode`), taken before any calibration, fit trial or
    quantization (shared across ranks)."""
    val = val_data_for(run_cfg, eval_cfg)
    mode = gap_mode(eval_cfg)
    pre = run_evaluation(checkpoint_model, val, eval_cfg, EvalContext(device, rank, world_size, progress=rank == 0),
                         mode)
    log.info(f"pre-quant val_loss:{pre.val_loss:.4f} val_bpb:{pre.val_bpb:.4f}{_windows_note(mode, eval_cfg)}")
    return pre


def _check_source_unchanged(expected: str, state: dict, *models: torch.nn.Module) -> None:
    """Raise ExportError when the quantizer's input or the checkpoint's model changed during the export."""
    for what, sd in [("quantizer input", state)] + [("checkpoint model", m.state_dict()) for m in models]:
        if weights_checksum(sd) != expected:
            raise ExportError(f"export: the {what} weights changed during the export (checksum mismatch); "
                              "nothing was written")


def roundtrip(pre: EvalResult, artifact: Path, run_cfg: TrainRunConfig, eval_cfg,
              device: torch.device, rank: int = 0, world_size: int = 1) -> dict:
    """Evaluate the re-loaded artifact on the tokens `pre` (the checkpoint's score) used; return both and the gap.

    With eval.gap=standard and another eval.mode, `pre` is a standard-windows score: the artifact is scored on
    standard windows too (`quantized`, the gap's other side) and then with eval.mode (`roundtrip`, its val_bpb).
    Raises ExportError when the artifact's score is not finite.

    `roundtrip_wall_s` is the artifact's evaluation as a submission runs it: loading and dequantizing the
    artifact, loading the val data and eval.mode itself (the slowest rank's time under torchrun); the gap's
    standard-windows score is not part of it (the generated train_gpt.py does not run it).
    """
    ctx = EvalContext(device, rank, world_size, progress=rank == 0)
    t0 = time.perf_counter()
    artifact_model = load_for_eval(artifact, device).model
    val = val_data_for(run_cfg, eval_cfg)
    quantized, mode = None, gap_mode(eval_cfg)
    if mode != eval_cfg.mode:
        quantized = run_evaluation(artifact_model, val, eval_cfg, ctx, mode)
        log.info(f"quantized val_loss:{quantized.val_loss:.4f} val_bpb:{quantized.val_bpb:.4f} "
                 f"eval_time:{quantized.seconds * 1000:.0f}ms{_windows_note(mode, eval_cfg)}")
    post = run_evaluation(artifact_model, val, eval_cfg, ctx)
    wall_s = max_over_ranks(time.perf_counter() - t0 - (quantized.seconds if quantized else 0.0), device)
    if not math.isfinite(post.val_bpb):
        raise ExportError(f"export: the re-loaded artifact scores val_bpb={post.val_bpb}; nothing was written")
    log.info(f"final_roundtrip val_loss:{post.val_loss:.4f} val_bpb:{post.val_bpb:.4f} "
             f"eval_time:{post.seconds * 1000:.0f}ms")
    log.info(f"final_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    gap = (quantized or post).val_bpb - pre.val_bpb
    log.info(f"quantization gap: {gap:+.5f} bpb{_windows_note(mode, eval_cfg)}")
    return {"pre_quant": pre.to_dict(), **({"quantized": quantized.to_dict()} if quantized else {}),
            "roundtrip": post.to_dict(), "val_bpb": post.val_bpb, "val_loss": post.val_loss, "quant_gap_bpb": gap,
            "gap_mode": mode, "roundtrip_wall_s": wall_s}


__all__ = ["export_run", "roundtrip", "pre_quant_score", "gap_mode", "gap_apart", "artifact_name",
           "BudgetExceededError", "ExportError", "EXPORT_REPORT", "report_path_for"]
