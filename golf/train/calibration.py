"""GPTQ calibration inside the training process, within the wallclock cap, and the Hessians it stores for export.

The challenge counts calibration on training data as training (record #31): the records stop the training loop
`schedule.gptq_reserve_seconds` before the cap and collect the GPTQ Hessians in that reserve, in the training
process (2026-04-27 record: GPTQ_RESERVE_SECONDS, `collect_hessians` in `serialize`). golf does the same: when
the run's quant config calibrates (a group with method=gptq, or budget.fit), `calibrate_in_training` collects the
Hessians right after the loop (on the final, averaged weights), every rank taking its share of the calibration
batches (all-reduced, golf.quant.gptq), and rank 0 stores them in <run_dir>/hessians.pt with the seconds it
took. `export.py` uses the stored Hessians; it calibrates on training data itself only for a non-record run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from golf.device import autocast_for
from golf.errors import GolfError
from golf.quant.config import BudgetConfig, QuantConfig, calibrates
from golf.quant.gptq import calibration_batches, collect_hessians

log = logging.getLogger("golf.train")
HESSIANS_NAME = "hessians.pt"


class CalibrationError(GolfError):
    """Calibration on training data was asked for outside the training process (a non-record export) or the
    stored Hessians do not fit the model; the message says what to do."""


def gptq_weight_names(state: dict, quant: QuantConfig) -> set[str]:
    """2-D float tensors of groups with method=gptq (whatever their bits, so the fitter can vary them)."""
    from golf.quant.fitter import with_group_bits  # lazy: only GPTQ / fitted exports ship the fitter
    from golf.quant.groups import tensor_group  # lazy

    rules = with_group_bits(quant, {})
    return {n for n, t in state.items() if t.ndim == 2 and t.is_floating_point()
            and rules.groups.get(tensor_group(n, t, rules)).method == "gptq"}


def needs_hessians(state: dict, quant: QuantConfig, budget: BudgetConfig) -> set[str]:
    """The weight names whose Hessians the export of `state` with (quant, budget) needs (empty = none)."""
    if not calibrates(quant, budget):
        return set()
    return gptq_weight_names(state, quant)


def weights_fingerprint(state: dict, names: set[str]) -> str:
    """sha256 of the named weights (fp32 bytes, sorted names): ties stored Hessians to the exported weights."""
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode())
        h.update(state[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def calibrate_in_training(model: nn.Module, cfg, rank: int, world_size: int, device: torch.device,
                          run_dir: Path, is_main: bool) -> dict | None:
    """Collect the GPTQ Hessians the run's export needs, now, inside training; rank 0 stores them.

    Args:
        model: the final (averaged) bare model on `device`; cfg: the TrainRunConfig (quant, budget, data,
            trainer geometry); run_dir: where hessians.pt goes.
    Returns:
        None when the quant config calibrates nothing (or quant.gptq.calibrate_in_training=false), else {"where": "in_training", "seconds", "batches",
        "batch_tokens", "seq_len", "matrices"}; every rank returns the same numbers.
    Raises:
        NoShardsFoundError / ShardError from the training loader.
    """
    if not cfg.quant.gptq.calibrate_in_training:
        return None
    state = model.state_dict()
    names = needs_hessians(state, cfg.quant, cfg.budget)
    if not names:
        return None
    g = cfg.quant.gptq
    seq_len = g.calib_seq_len or cfg.trainer.train_seq_len
    batch_tokens = g.calib_batch_tokens or cfg.trainer.train_batch_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    batches = calibration_batches(cfg.data.train_glob(), g.calib_batches, batch_tokens, seq_len, device, rank,
                                  world_size)
    hessians, _ = collect_hessians(model, batches, names, autocast=lambda: autocast_for(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    info = {"where": "in_training", "seconds": seconds, "batches": g.calib_batches, "batch_tokens": batch_tokens,
            "seq_len": seq_len, "matrices": len(hessians), "world_size": world_size}
    log.info(f"gptq: Hessians of {len(hessians)} matrices from {g.calib_batches} train batches x {batch_tokens} "
             f"tokens in {seconds:.2f}s inside training ({world_size} rank(s); "
             f"schedule.gptq_reserve_seconds={cfg.schedule.gptq_reserve_seconds:g})")
    if is_main:
        save_hessians(run_dir / HESSIANS_NAME, hessians, {**info, "fingerprint": weights_fingerprint(state, names)})
    return info


def save_hessians(path: Path, hessians: dict[str, torch.Tensor], meta: dict) -> None:
    """Write {"hessians": {name: [cols, cols] fp32}, "meta": {...}} atomically (tmp + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"hessians": {k: v.cpu().contiguous() for k, v in hessians.items()}, "meta": meta}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_stored_hessians(run_dir: Path, state: dict, names: set[str], quant: QuantConfig,
                         train_seq_len: int, train_batch_tokens: int) -> tuple[dict, dict] | None:
    """The Hessians calibrated during training, if <run_dir>/hessians.pt covers `names` for these weights and
    these calibration settings; else None. Returns (hessians, meta)."""
    path = Path(run_dir) / HESSIANS_NAME
    if not path.is_file():
        return None
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or "meta" not in stored or "hessians" not in stored:
        log.info(f"gptq: {path} has no calibration record (older format); not used")
        return None
    meta, hessians = stored["meta"], stored["hessians"]
    g = quant.gptq
    wanted = {"batches": g.calib_batches, "seq_len": g.calib_seq_len or train_seq_len,
              "batch_tokens": g.calib_batch_tokens or train_batch_tokens}
    mismatch = [k for k, v in wanted.items() if meta.get(k) != v]
    if mismatch or not names <= set(hessians):
        log.info(f"gptq: {path} does not match this export ({', '.join(mismatch) or 'other matrices'}); not used")
        return None
    stored_names = set(hessians)
    if not stored_names <= set(state) or meta.get("fingerprint") != weights_fingerprint(state, stored_names):
        log.info(f"gptq: {path} was calibrated on other weights; not used")
        return None
    return {k: hessians[k] for k in names}, meta
