"""GPTQ calibration inside the training run (2026-04-27 record: the training process draws its calibration
batches and collects the Hessians right after training, within `schedule.gptq_reserve_seconds`).

`calibrate_for_export` is the one function the end of training calls (quant.gptq.calibrate_in_training):
Hessians of the matrices the export will GPTQ-quantize, from the first `quant.gptq.calib_batches` training
batches, on the final (averaged) weights. They are saved atomically as `hessians.pt` in the run directory
(plain tensors, loadable with weights_only=True) with the seconds it took; export uses them instead of
reading training data again, so no training data is touched after the training process ends.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from golf.device import autocast_for
from golf.errors import GolfError
from golf.quant.config import QuantConfig
from golf.quant.fitter import with_group_bits
from golf.quant.gptq import calibration_batches, collect_hessians
from golf.quant.groups import tensor_group

HESSIANS_NAME = "hessians.pt"
log = logging.getLogger("golf.quant")


def gptq_names(state: dict, quant: QuantConfig) -> set[str]:
    """2-D float tensors of groups with method=gptq (whatever their bits, so the fitter can vary them)."""
    rules = with_group_bits(quant, {})
    return {n for n, t in state.items() if t.ndim == 2 and t.is_floating_point()
            and rules.groups.get(tensor_group(n, t, rules)).method == "gptq"}


def calibrate_for_export(model: nn.Module, train_glob: str, quant: QuantConfig, train_seq_len: int,
                         train_batch_tokens: int, device: torch.device, autocast=None) -> tuple[dict, float]:
    """(Hessians {name: [cols, cols] fp32 CPU}, seconds) for the GPTQ matrices of `model` under `quant`.

    Batches: quant.gptq.calib_batches x (calib_batch_tokens or train_batch_tokens) tokens of calib_seq_len (or
    train_seq_len), the first ones of the training stream. Raises the loader's errors (no shards, bad shard).
    """
    t0 = time.perf_counter()
    g = quant.gptq
    names = gptq_names(model.state_dict(), quant)
    batches = calibration_batches(train_glob, g.calib_batches, g.calib_batch_tokens or train_batch_tokens,
                                  g.calib_seq_len or train_seq_len, device)
    hessians, _ = collect_hessians(model, batches, names, autocast=autocast)
    return hessians, time.perf_counter() - t0


def save_hessians(run_dir: str | Path, hessians: dict, seconds: float) -> Path:
    """Write run_dir/hessians.pt atomically (temp file + fsync + rename)."""
    path = Path(run_dir) / HESSIANS_NAME
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hessians.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"hessians": {k: v.contiguous() for k, v in hessians.items()}, "seconds": float(seconds)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_hessians(run_dir: str | Path) -> tuple[dict, float] | None:
    """(hessians, seconds) from run_dir/hessians.pt, None when absent. Raises GolfError when unreadable."""
    path = Path(run_dir) / HESSIANS_NAME
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return dict(blob["hessians"]), float(blob["seconds"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise GolfError(f"{path}: cannot read calibration Hessians ({exc})") from None


def calibrate_in_training(cfg, model: nn.Module, device: torch.device, run_dir: str | Path) -> dict:
    """The end of training (rank 0, quant.gptq.calibrate_in_training): Hessians on the final weights from the
    first training batches, saved to run_dir/hessians.pt. Returns the metrics to report: gptq_calibration_s and
    the reserve it should fit in (schedule.gptq_reserve_seconds); logs a warning when it does not."""
    t = cfg.trainer
    hessians, secs = calibrate_for_export(model, cfg.data.train_glob(), cfg.quant, t.train_seq_len,
                                          t.train_batch_tokens, device, autocast=lambda: autocast_for(device))
    save_hessians(run_dir, hessians, secs)
    reserve = cfg.schedule.gptq_reserve_seconds
    log.info(f"gptq: collected {len(hessians)} Hessians in {secs:.2f}s inside training "
             f"(schedule.gptq_reserve_seconds={reserve:g})")
    if reserve > 0 and secs > reserve:
        log.warning(f"gptq: calibration took {secs:.2f}s, more than the reserved {reserve:g}s")
    return {"gptq_calibration_s": secs, "gptq_reserve_s": reserve}
