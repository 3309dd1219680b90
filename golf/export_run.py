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
from dataclasses import asdict
from pathlib import Path

import torch

from golf.device import autocast_for
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_evaluation
from golf.quant.artifact import HEADER_BYTES, write_artifact
from golf.quant.budget import (
    BudgetExceededError,
    build_budget_report,
    check_budget,
    count_code_bytes,
    format_report,
)
from golf.quant.calibrate import gptq_names as _gptq_names
from golf.quant.calibrate import load_hessians
from golf.quant.config import BudgetConfig, QuantConfig
from golf.quant.fitter import choose_allocation, format_fit, loss_function, measure_options, with_group_bits
from golf.quant.gptq import calibration_batches, collect_hessians
from golf.quant.int8 import quantize_state_dict
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.config import TrainRunConfig
from golf.train.load import RUN_SECTION, load_for_eval
from golf.train.tracking import write_json

log = logging.getLogger("golf.export")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPORT_REPORT = "export.json"
EXPORT_MARKDOWN = "export_report.md"
FIT_ATTEMPTS = 4
# First guess of the (zlib-compressed) manifest: ~40-60 bytes per table entry + extra; a refit corrects a miss.
MANIFEST_BYTES_PER_ENTRY = 64
MANIFEST_EXTRA_BYTES = 4096


def code_bytes_for(budget: BudgetConfig) -> tuple[int, list]:
    """Counted code bytes; relative code paths are relative to the golf project root."""
    paths = [p if Path(p).is_absolute() else PROJECT_ROOT / p for p in budget.code_paths]
    n, files = count_code_bytes(paths, budget.code_mode)
    return n, [(str(Path(f).relative_to(PROJECT_ROOT)) if Path(f).is_relative_to(PROJECT_ROOT) else str(f), b)
               for f, b in files]


def _calibration(model_on_device, run_cfg: TrainRunConfig, quant: QuantConfig, budget: BudgetConfig,
                 device: torch.device, state: dict, timings: dict,
                 run_dir: Path | None = None) -> tuple[dict | None, object]:
    """Hessians for GPTQ groups and the fitter's loss function (each only when needed). Hessians saved by the
    training process (run_dir/hessians.pt, quant.gptq.calibrate_in_training) are used when they cover every
    GPTQ matrix."""
    need_h = quant.scheme != "none" and bool(_gptq_names(state, quant)) and (quant.uses_gptq() or budget.fit)
    need_loss = budget.fit and budget.fit_metric == "loss"
    if not (need_h or need_loss):
        return None, None
    saved = load_hessians(run_dir) if need_h and not need_loss and run_dir is not None else None
    if saved is not None and _gptq_names(state, quant) <= set(saved[0]):
        timings["gptq_hessian_s"] = saved[1]
        log.info(f"gptq: using the {len(saved[0])} Hessians the training process collected in {saved[1]:.2f}s")
        return saved[0], None
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
               out: str | Path | None = None, roundtrip_eval: bool = True) -> dict:
    """Quantize <run_dir>/checkpoint.pt into an artifact and return the export report (also export.json).

    `quant=None` exports with the quantization the run was trained with.

    Raises BudgetExceededError (artifact + code > target; nothing written), FitError (budget.fit finds no
    allocation), CheckpointError, ArtifactError, GPTQError.
    """
    run_dir = Path(run_dir)
    loaded = load_for_eval(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    run_cfg = loaded.run_config
    quant = quant or run_cfg.quant  # the run's own rule (e.g. its QAT clip) unless told otherwise
    out = Path(out) if out else run_dir / artifact_name(quant, budget.fit)
    state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}

    @functools.cache
    def model_on_device() -> torch.nn.Module:
        """The checkpoint's model on `device` (for calibration and the pre-quant score), read at most once more."""
        return loaded.model if device.type == "cpu" else load_for_eval(run_dir / CHECKPOINT_NAME, device).model

    timings: dict[str, float] = {}
    hessians, loss_fn = _calibration(model_on_device, run_cfg, quant, budget, device, state, timings, run_dir)
    code_bytes, code_files = code_bytes_for(budget)
    table, fit = None, None
    if budget.fit:
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
            extra = {RUN_SECTION: run_cfg.to_dict(),
                     "export": {"quant": asdict(quant), "fit": fit.to_dict() if fit else None}}
            t0 = time.perf_counter()
            info = write_artifact(tmp, qstate, codec=quant.codec, level=quant.level, config=run_cfg.to_dict(), extra=extra,
                                  byte_shuffle=quant.byte_shuffle)
            timings["compress_s"] = time.perf_counter() - t0
            report = build_budget_report(qstate, info, code_bytes, code_files, budget.target_bytes, budget.code_mode)
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
    log.info(f"Serialized model {quant.scheme}+{report.codec}: {report.artifact_bytes} bytes; "
             f"code {report.code_bytes} bytes; Total submission size: {report.total_bytes} bytes "
             f"(target {budget.target_bytes}, headroom {budget.target_bytes - report.total_bytes})")
    if roundtrip_eval:
        result.update(roundtrip(model_on_device(), out, run_cfg, eval_cfg, device))
    write_json(run_dir / EXPORT_REPORT, result)
    write_json(out.with_name(out.name + ".export.json"), result)  # one report per artifact (golf.compare)
    write_text(run_dir / EXPORT_MARKDOWN, f"# export of {run_dir.name}: {out.name}\n\n```\n{format_report(report)}\n```\n")
    return result


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


__all__ = ["export_run", "roundtrip", "BudgetExceededError", "EXPORT_REPORT"]
