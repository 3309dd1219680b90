"""The export core shared by `export.py` (golf.export_run) and a record's train_gpt.py (golf.submission): GPTQ
calibration (or the Hessians calibrated inside training) and the one quantize -> compress -> budget-check ->
stage path, so both write the same artifact bytes for the same weights.

Only what every export runs is imported at module level; GPTQ Hessians (golf.train.calibration, golf.quant.gptq)
and the budget fitter (golf.quant.fitter) are imported when the quant config uses them, so a submission without
GPTQ does not ship them (golf.record traces `export_modules`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from golf.device import autocast_for
from golf.io import StagedFile
from golf.quant.artifact import HEADER_BYTES, ArtifactInfo, stage_artifact
from golf.quant.budget import check_total
from golf.quant.compress import get_codec
from golf.quant.config import BEST_CODEC, CODEC_LEVELS, PERGROUP_CODEC, BudgetConfig, QuantConfig, calibrates
from golf.quant.int8 import QuantizedState, quantize_state_dict
from golf.train.config import RUN_SECTION, LoggerConfig, TrainRunConfig

log = logging.getLogger("golf.export")
FIT_ATTEMPTS = 4
# First guess of the (zlib-compressed) manifest: ~40-60 bytes per table entry + extra; a refit corrects a miss.
MANIFEST_BYTES_PER_ENTRY = 64
MANIFEST_EXTRA_BYTES = 4096


def portable(run_cfg: TrainRunConfig) -> TrainRunConfig:
    """`run_cfg` with the data location in the official layout (data.root ./data, default shard folder and
    tokenizer) and the default logger section: what an artifact manifest records, so the bytes do not depend on
    where the data lived or how the run was logged (a record's train_gpt.py and golf's export of the same run
    write the same artifact)."""
    # one nested replace(...): golf.record.specialize then knows only these three data fields change
    return replace(run_cfg, data=replace(run_cfg.data, root="./data", dataset_dir="", tokenizer_path=""),
                   logger=LoggerConfig())


def payload_codecs(quant: QuantConfig, budget: BudgetConfig) -> set[str]:
    """The registered codecs (golf.quant.compress) exporting with (quant, budget) compresses or reads back with:
    quant.codec, every codec for "best", none of them for "pergroup" (its own streams), plus the budget fitter's
    size-prediction codec (golf.quant.fitter.fit_codec) whenever the fitter is imported."""
    if quant.codec == BEST_CODEC:
        codecs = set(CODEC_LEVELS)
    elif quant.codec == PERGROUP_CODEC:
        codecs = set()
    else:
        codecs = {quant.codec}
    if budget.fit or (quant.scheme != "none" and quant.uses_gptq()):
        from golf.quant.fitter import fit_codec  # lazy: export_modules imports it under the same condition

        codecs.add(fit_codec(quant, budget)[0])
    return codecs


def export_modules(quant: QuantConfig, budget: BudgetConfig) -> None:
    """Import the modules exporting with (quant, budget) may run lazily (traced by
    golf.submission.import_option_modules), the codec modules of `payload_codecs` included."""
    for codec in sorted(payload_codecs(quant, budget)):
        get_codec(codec)
    if quant.codec == PERGROUP_CODEC:
        import golf.quant.pergroup  # noqa: F401  lazy
    if quant.lqer.enabled:
        import golf.quant.lqer  # noqa: F401  lazy
    if budget.fit or (quant.scheme != "none" and quant.uses_gptq()):
        import golf.quant.fitter  # noqa: F401  lazy
        import golf.quant.gptq  # noqa: F401  lazy
        import golf.quant.groups  # noqa: F401  lazy
        import golf.train.calibration  # noqa: F401  lazy


def calibration(model_on_device, run_cfg: TrainRunConfig, quant: QuantConfig, budget: BudgetConfig, device: torch.device,
                 state: dict, timings: dict, run_dir: Path, non_record: bool, rank: int,
                 world_size: int) -> tuple[dict | None, object, dict]:
    """Hessians for GPTQ groups, the fitter's loss function (each only when needed) and where calibration ran.

    Hessians calibrated inside training (<run_dir>/hessians.pt, golf.train.calibration) are used when they
    match; calibrating on training data here, after training, is allowed only with non_record=true (the rules
    count it as training time), and is then shared across ranks (Hessians all-reduced).
    """
    need_loss = budget.fit and budget.fit_metric == "loss"
    where = {"where": "none", "seconds": None}
    if not (need_loss or calibrates(quant, budget)):
        return None, None, where
    from golf.quant.gptq import calibration_batches, collect_hessians  # lazy: GPTQ / fitted exports only
    from golf.train.calibration import (  # lazy
        HESSIANS_NAME,
        CalibrationError,
        load_stored_hessians,
        needs_hessians,
    )

    names = needs_hessians(state, quant, budget)
    if not (names or need_loss):
        return None, None, where
    g = quant.gptq
    seq_len = g.calib_seq_len or run_cfg.trainer.train_seq_len
    batch_tokens = g.calib_batch_tokens or run_cfg.trainer.train_batch_tokens
    stored = load_stored_hessians(run_dir, state, names, quant, run_cfg.trainer.train_seq_len,
                                  run_cfg.trainer.train_batch_tokens) if names else None
    if stored is not None:
        hessians, meta = stored
        where = {"where": "in_training", "seconds": meta["seconds"]}
        log.info(f"gptq: using the Hessians calibrated inside training ({run_dir / HESSIANS_NAME}, "
                 f"{meta['seconds']:.2f}s)")
        names = set()
    if (names or need_loss) and not non_record:
        what = "GPTQ Hessians" if names else "budget.fit_metric=loss"
        raise CalibrationError(
            f"{what} would calibrate on training data after training, which the rules count as training time; "
            f"train with this quant config (calibration then runs inside training, schedule.gptq_reserve_seconds), "
            f"use budget.fit_metric=recon, or pass non_record=true")
    if not (names or need_loss):
        return hessians, None, where
    from golf.quant.fitter import loss_function  # lazy: only GPTQ / fitted exports ship the fitter

    n_h = g.calib_batches if names else 0
    t0 = time.perf_counter()
    model = model_on_device()
    if names:
        batches = calibration_batches(run_cfg.data.train_glob(), n_h, batch_tokens, seq_len, device, rank,
                                      world_size)
        hessians, _ = collect_hessians(model, batches, names, autocast=lambda: autocast_for(device))
        timings["gptq_hessian_s"] = time.perf_counter() - t0
        where = {"where": "after_training", "seconds": timings["gptq_hessian_s"]}
        log.info(f"gptq: Hessians of {len(hessians)} matrices from {n_h} train batches x {batch_tokens} tokens "
                 f"in {timings['gptq_hessian_s']:.2f}s after training (non-record: counts as training time)")
    elif stored is None:
        hessians = None
    loss_fn = None
    if need_loss:
        fit_batches = calibration_batches(run_cfg.data.train_glob(), n_h + budget.fit_batches, batch_tokens,
                                          seq_len, device)[n_h:]
        loss_fn = loss_function(model, fit_batches, autocast=lambda: autocast_for(device))
        if where["where"] != "after_training":
            where = {"where": "after_training", "seconds": where["seconds"]}
    return hessians, loss_fn, where


def quantize_and_write(state: dict, quant: QuantConfig, budget: BudgetConfig, hessians, loss_fn, timings: dict,
                       out: Path, run_cfg: TrainRunConfig, code_bytes: int,
                       describe: Callable[[QuantizedState, ArtifactInfo], None] | None = None,
                       ) -> tuple[dict, StagedFile]:
    """Fit (optional), quantize, write the artifact to a temp file beside `out` if artifact + `code_bytes` fit;
    (the byte counts as a dict, the staged artifact: the caller commits it after the round trip). The one
    quantize-and-write path of export.py and of a record's train_gpt.py (golf.submission), so both write the
    same bytes for the same weights. `describe(qstate, info)` runs on the written artifact before the budget is
    checked (export.py logs its per-group budget table there; a record logs only the official size lines).
    Raises BudgetExceededError (nothing left behind), FitError."""
    table, fit = None, None
    if budget.fit:
        from golf.quant.fitter import choose_allocation, format_fit, measure_options, with_group_bits  # lazy

        t0 = time.perf_counter()
        table = measure_options(state, quant, budget, loss_fn, hessians)
        timings["fit_s"] = time.perf_counter() - t0
    limit = (budget.target_bytes - code_bytes - HEADER_BYTES - MANIFEST_EXTRA_BYTES
             - MANIFEST_BYTES_PER_ENTRY * 2 * len(state))
    staged = None
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
            if staged is not None:
                staged.discard()
            staged, info = stage_artifact(out, qstate, codec=quant.codec, level=quant.level,
                                          config=manifest_cfg, extra=extra, byte_shuffle=quant.byte_shuffle)
            timings["compress_s"] = time.perf_counter() - t0
            total = info.file_bytes + code_bytes
            if total <= budget.target_bytes or table is None:
                break
            log.info(f"fit: attempt {attempt + 1} is {total - budget.target_bytes:,} bytes over; refitting")
            limit -= total - budget.target_bytes + 1
        if describe is not None:
            describe(qstate, info)
        check_total(info.file_bytes, code_bytes, budget.target_bytes)
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    if hessians is not None and "gptq_hessian_s" in timings:
        log.info(f"gptq: quantization took {timings['quantize_s']:.2f}s "
                 f"(+ {timings['gptq_hessian_s']:.2f}s Hessians)")
    result = {"artifact": str(out), "artifact_bytes": info.file_bytes, "code_bytes": code_bytes,
              "bytes_total": total, "target_bytes": budget.target_bytes, "fits": True,
              "scheme": quant.scheme, "codec": info.codec, "level": info.level,
              "byte_shuffle": info.byte_shuffle, "timings_s": timings,
              "fit": fit.to_dict() if fit else None, "quant": asdict(quant)}
    log.info(f"Serialized model {quant.scheme}+{info.codec}: {info.file_bytes} bytes")
    log.info(f"Code size: {code_bytes} bytes")
    log.info(f"Total submission size {quant.scheme}+{info.codec}: {total} bytes "
             f"(target {budget.target_bytes}, headroom {budget.target_bytes - total})")
    return result, staged
