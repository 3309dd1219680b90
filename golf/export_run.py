"""Export: checkpoint -> quantized, compressed artifact -> byte-budget report -> round-trip evaluation.

Order: load the checkpoint -> (GPTQ groups) calibration Hessians from training batches of the run's data ->
(budget.fit) choose bits per tensor group -> quantize -> write a temporary artifact beside the target ->
budget check -> rename over the target -> round-trip evaluation -> export.json. Nothing is overwritten unless
the new artifact fits the budget; the checkpoint is only ever read. Calibration, fitting and quantization
times are reported (GPTQ calibration on training data counts toward the 600 s training budget, record #31).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from golf.device import autocast_for
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_evaluation
from golf.quant.artifact import HEADER_BYTES, write_artifact
from golf.quant.budget import (
    BudgetExceededError,
    BudgetReport,
    build_budget_report,
    check_budget,
    format_report,
)
from golf.quant.config import BudgetConfig, QuantConfig
from golf.quant.int8 import quantize_state_dict
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.config import LoggerConfig, TrainRunConfig
from golf.train.load import RUN_SECTION, load_for_eval
from golf.train.tracking import write_json

log = logging.getLogger("golf.export")
EXPORT_REPORT = "export.json"
EXPORT_MARKDOWN = "export_report.md"
FIT_ATTEMPTS = 4
# First guess of the (zlib-compressed) manifest: ~40-60 bytes per table entry + extra; a refit corrects a miss.
MANIFEST_BYTES_PER_ENTRY = 64
MANIFEST_EXTRA_BYTES = 4096


CodeBytes = Callable[[TrainRunConfig], int]
"""Counted code bytes of a run's submission: the size of the `train_gpt.py` generated for its config
(golf.record.submission_code_bytes, injected by the entry points: export_run sits below golf.record)."""


def _gptq_names(state: dict, quant: QuantConfig) -> set[str]:
    """2-D tensors of groups with method=gptq (whatever their bits, so the fitter can vary them)."""
    from golf.quant.fitter import with_group_bits  # lazy: only GPTQ / fitted exports ship the fitter
    from golf.quant.groups import tensor_group  # lazy
    rules = with_group_bits(quant, {})
    return {n for n, t in state.items() if t.ndim == 2 and t.is_floating_point()
            and rules.groups.get(tensor_group(n, t, rules)).method == "gptq"}


def portable(run_cfg: TrainRunConfig) -> TrainRunConfig:
    """`run_cfg` with the data location in the official layout (data.root ./data, default shard folder and
    tokenizer) and the default logger section: what an artifact manifest records, so the bytes do not depend on
    where the data lived or how the run was logged (a record's train_gpt.py and golf's export of the same run
    write the same artifact)."""
    data = replace(run_cfg.data, root="./data", dataset_dir="", tokenizer_path="")
    return replace(run_cfg, data=data, logger=LoggerConfig())


def export_modules(quant: QuantConfig, budget: BudgetConfig) -> None:
    """Import the modules that exporting with (quant, budget) runs lazily: GPTQ calibration, groups and the
    fitter (golf.submission.plan traces this so a submission ships them only when used)."""
    if budget.fit or (quant.scheme != "none" and quant.uses_gptq()):
        import golf.quant.fitter  # noqa: F401  lazy
        import golf.quant.gptq  # noqa: F401  lazy
        import golf.quant.groups  # noqa: F401  lazy


def _calibration(model_on_device, run_cfg: TrainRunConfig, quant: QuantConfig, budget: BudgetConfig, device: torch.device,
                 state: dict, timings: dict) -> tuple[dict | None, object]:
    """Hessians for GPTQ groups and the fitter's loss function (each only when needed)."""
    need_h = quant.scheme != "none" and (quant.uses_gptq() or budget.fit) and bool(_gptq_names(state, quant))
    need_loss = budget.fit and budget.fit_metric == "loss"
    if not (need_h or need_loss):
        return None, None
    from golf.quant.fitter import loss_function  # lazy
    from golf.quant.gptq import calibration_batches, collect_hessians  # lazy

    g = quant.gptq
    seq_len = g.calib_seq_len or run_cfg.trainer.train_seq_len
    batch_tokens = g.calib_batch_tokens or run_cfg.trainer.train_batch_tokens
    n_h = g.calib_batches if need_h else 0
    t0 = time.perf_counter()
    batches = calibration_batches(run_cfg.data.train_glob(), n_h + budget.fit_batches * need_loss,
                                  batch_tokens, seq_len, device)
    model = model_on_device()
    hessians = None
    if need_h:
        hessians, secs = collect_hessians(model, batches[:n_h], _gptq_names(state, quant),
                                          autocast=lambda: autocast_for(device))
        timings["gptq_hessian_s"] = time.perf_counter() - t0
        log.info(f"gptq: Hessians of {len(hessians)} matrices from {n_h} train batches x {batch_tokens} tokens "
                 f"in {timings['gptq_hessian_s']:.2f}s (counts toward the 600 s training budget)")
    loss_fn = loss_function(model, batches[n_h:], autocast=lambda: autocast_for(device)) if need_loss else None
    return hessians, loss_fn


def export_run(run_dir: str | Path, quant: QuantConfig | None, budget: BudgetConfig, eval_cfg, device: torch.device,
               out: str | Path | None = None, roundtrip_eval: bool = True, *, code_bytes: CodeBytes) -> dict:
    """Quantize <run_dir>/checkpoint.pt into an artifact and return the export report (also export.json).

    `quant=None` exports with the quantization the run was trained with. `code_bytes(run_cfg)` counts the
    submission's code (the generated train_gpt.py for the run's config).

    Raises BudgetExceededError (artifact + code > target; nothing written), FitError (budget.fit finds no
    allocation), CheckpointError, ArtifactError, GPTQError.
    """
    run_dir = Path(run_dir)
    loaded = load_for_eval(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    run_cfg = loaded.run_config
    quant = quant or run_cfg.quant  # the run's own rule (e.g. its QAT clip) unless told otherwise
    out = Path(out) if out else run_dir / artifact_name(quant, budget.fit)

    @functools.cache
    def model_on_device() -> torch.nn.Module:
        """The checkpoint's model on `device` (for calibration and the pre-quant score), read at most once more."""
        return loaded.model if device.type == "cpu" else load_for_eval(run_dir / CHECKPOINT_NAME, device).model

    result, report = export_model(loaded.model, model_on_device, run_cfg, quant, budget, device, out,
                                  code_bytes(run_cfg))
    if roundtrip_eval:
        result.update(roundtrip(model_on_device(), out, run_cfg, eval_cfg, device))
    write_json(run_dir / EXPORT_REPORT, result)
    write_json(out.with_name(out.name + ".export.json"), result)  # one report per artifact (golf.compare)
    write_text(run_dir / EXPORT_MARKDOWN, f"# export of {run_dir.name}: {out.name}\n\n```\n{format_report(report)}\n```\n")
    return result


def export_model(model: torch.nn.Module, model_on_device: Callable[[], torch.nn.Module], run_cfg: TrainRunConfig,
                 quant: QuantConfig, budget: BudgetConfig, device: torch.device, out: Path,
                 code_bytes: int) -> tuple[dict, BudgetReport]:
    """Quantize `model`'s weights with `quant`, write the artifact to `out` (atomically, only if artifact +
    `code_bytes` fit budget.target_bytes) and return (the export report, the budget report). The one export path of export.py and
    of a submission's train_gpt.py (golf.submission), so both write the same bytes for the same weights.

    model_on_device() gives the model on `device` for GPTQ calibration / the fitter's loss (called only when
    needed). Raises BudgetExceededError (nothing written), FitError, GPTQError.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    timings: dict[str, float] = {}
    hessians, loss_fn = _calibration(model_on_device, run_cfg, quant, budget, device, state, timings)
    code_files = [("train_gpt.py", code_bytes)]
    table, fit = None, None
    if budget.fit:
        from golf.quant.fitter import choose_allocation, format_fit, measure_options, with_group_bits  # lazy

        t0 = time.perf_counter()
        table = measure_options(state, quant, budget, loss_fn, hessians)
        timings["fit_s"] = time.perf_counter() - t0
    limit = (budget.target_bytes - code_bytes - HEADER_BYTES - MANIFEST_EXTRA_BYTES
             - MANIFEST_BYTES_PER_ENTRY * 2 * len(state))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        for attempt in range(FIT_ATTEMPTS if budget.fit else 1):
            if table is not None:
                fit = choose_allocation(table, limit)
                log.info(format_fit(fit))
                quant = with_group_bits(quant, fit.choice)
            t0 = time.perf_counter()
            qstate = quantize_state_dict(state, quant, hessians)
            timings["quantize_s"] = time.perf_counter() - t0
            manifest_cfg = portable(run_cfg).to_dict()
            extra = {RUN_SECTION: manifest_cfg,
                     "export": {"quant": asdict(quant), "fit": fit.to_dict() if fit else None}}
            t0 = time.perf_counter()
            info = write_artifact(tmp, qstate, codec=quant.codec, level=quant.level, config=manifest_cfg, extra=extra,
                                  byte_shuffle=quant.byte_shuffle)
            timings["compress_s"] = time.perf_counter() - t0
            report = build_budget_report(qstate, info, code_bytes, code_files, budget.target_bytes, "shipped")
            if report.fits or table is None:
                break
            log.info(f"fit: attempt {attempt + 1} is {-report.headroom_bytes:,} bytes over; refitting")
            limit -= -report.headroom_bytes + 1
        log.info("\n" + format_report(report, show_tensors=False, show_files=False))
        check_budget(report)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if hessians is not None:
        log.info(f"gptq: quantization took {timings['quantize_s']:.2f}s "
                 f"(+ {timings['gptq_hessian_s']:.2f}s Hessians)")
    result = {"artifact": str(out), "artifact_bytes": report.artifact_bytes, "code_bytes": report.code_bytes,
              "bytes_total": report.total_bytes, "target_bytes": budget.target_bytes, "fits": report.fits,
              "scheme": quant.scheme, "codec": report.codec, "level": report.level,
              "byte_shuffle": report.byte_shuffle, "timings_s": timings, "budget": report.to_dict(),
              "fit": fit.to_dict() if fit else None, "quant": asdict(quant)}
    log.info(f"Serialized model {quant.scheme}+{report.codec}: {report.artifact_bytes} bytes")
    log.info(f"Code size: {report.code_bytes} bytes")
    log.info(f"Total submission size {quant.scheme}+{report.codec}: {report.total_bytes} bytes "
             f"(target {budget.target_bytes}, headroom {budget.target_bytes - report.total_bytes})")
    return result, report


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


def write_text(path: Path, text: str) -> None:
    """Atomic text write (temp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def roundtrip(checkpoint_model: torch.nn.Module, artifact: Path, run_cfg: TrainRunConfig, eval_cfg,
              device: torch.device) -> dict:
    """Evaluate the checkpoint's model and the re-loaded artifact on the same tokens; return both and the gap."""
    seq_len = eval_cfg.seq_len or run_cfg.trainer.train_seq_len
    val = load_val_data(run_cfg.data, run_cfg.model.vocab_size, seq_len, eval_cfg.max_tokens)
    ctx = EvalContext(device, progress=True)
    pre = run_evaluation(checkpoint_model, val, eval_cfg, ctx)
    post = run_evaluation(load_for_eval(artifact, device).model, val, eval_cfg, ctx)
    log.info(f"pre-quant val_loss:{pre.val_loss:.4f} val_bpb:{pre.val_bpb:.4f}")
    log.info(f"final_roundtrip val_loss:{post.val_loss:.4f} val_bpb:{post.val_bpb:.4f} "
             f"eval_time:{post.seconds * 1000:.0f}ms")
    log.info(f"final_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    log.info(f"quantization gap: {post.val_bpb - pre.val_bpb:+.5f} bpb")
    return {"pre_quant": pre.to_dict(), "roundtrip": post.to_dict(), "val_bpb": post.val_bpb,
            "val_loss": post.val_loss, "quant_gap_bpb": post.val_bpb - pre.val_bpb}


__all__ = ["export_run", "export_model", "portable", "roundtrip", "CodeBytes", "BudgetExceededError", "EXPORT_REPORT"]
