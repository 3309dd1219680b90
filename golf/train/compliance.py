"""The challenge's clocks and limits, and the `compliance` block that train, export and eval reports carry.

Rules (openai/parameter-golf README, "10 min train / 10 min eval on 8xH100, 16,000,000 bytes"; issue #1017 for
test-time training; record #31 and the 2026-04-27 record's `gptq_reserve_seconds` for calibration):

- train_time: training, plus GPTQ calibration on training data, within 600 s on 8xH100.
- calibration: calibration on training data happens inside the training process before the wallclock cap
  (`in_training`), never afterwards (`after_training` = a non-record run); `none` when nothing is calibrated.
- eval_time: each evaluation mode, model load, compile warm-up and dequantization included, within 600 s.
- bytes: artifact + counted code bytes <= 16,000,000.
- val_data: validation tokens never reach training; score-first TTT may train on tokens it has already scored.

Limits are scaled to the hardware a run used: limit x (8 x H100 speed) / (world_size x device speed), with the
device speed relative to an H100 from `DEVICE_SPEED` (dense bf16 throughput, approximate). On a CPU or an
unknown GPU there is no scale and the time verdicts read `unknown`. Verdicts: pass, fail or unknown.
"""

from __future__ import annotations

import torch

TRAIN_LIMIT_S = 600.0
EVAL_LIMIT_S = 600.0
BYTES_LIMIT = 16_000_000
REFERENCE_GPUS = 8
DEVICE_SPEED: dict[str, float] = {"H100": 1.0, "H200": 1.0, "GH200": 1.0, "B200": 2.25, "A100": 0.32}
"""Approximate speed relative to one H100 SXM by CUDA device-name fragment (dense bf16 TFLOPS ratio)."""
CALIBRATION_WHERE = ("none", "in_training", "after_training")
VAL_DATA_USES = ("never", "score_first_ttt")


def device_speed(name: str) -> float | None:
    """Speed relative to an H100 for a CUDA device name (longest matching fragment), or None if unknown."""
    hits = [k for k in DEVICE_SPEED if k.lower() in name.lower()]
    return DEVICE_SPEED[max(hits, key=len)] if hits else None


def hardware(device: torch.device, world_size: int) -> dict:
    """What a run ran on and the factor its limits are scaled by: {device, world_size, speed, scale}.

    scale = 8 / (world_size x speed): 1.0 on 8xH100, 8.0 on one H100; None on CPU or an unknown GPU.
    """
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    speed = device_speed(name) if device.type == "cuda" else None
    scale = REFERENCE_GPUS / (world_size * speed) if speed else None
    return {"device": name, "world_size": int(world_size), "speed_vs_h100": speed, "scale": scale}


def verdict(value: float | None, limit: float | None) -> str:
    """pass / fail against a limit; unknown when either is missing."""
    if value is None or limit is None:
        return "unknown"
    return "pass" if value <= limit else "fail"


def val_data_use(modes: list[str]) -> str:
    """score_first_ttt when an eval mode trains on scored validation tokens (legal), else never."""
    return "score_first_ttt" if "ttt" in modes else "never"


def compliance_block(hw: dict, *, train_time_s: float | None = None, calibration_time_s: float | None = None,
                     calibration_where: str = "none", eval_time_s: dict[str, float] | None = None,
                     bytes_total: int | None = None, val_data: str = "never") -> dict:
    """The `compliance` block of metrics.json / export.json / eval.json / W&B / the report.

    Args:
        hw: `hardware(...)` of the run being judged.
        train_time_s: timed training seconds (wallclock cap applies); calibration_time_s: GPTQ Hessian
            collection on training data; calibration_where: none, in_training or after_training.
        eval_time_s: wall seconds per eval mode (load, warm-up, dequantization included).
        bytes_total: artifact + counted code bytes. val_data: never or score_first_ttt.
    Returns:
        dict with the inputs, the scaled limits and `verdicts` {train_time, calibration, eval_time:<mode>...,
        bytes, val_data} each pass / fail / unknown.
    Raises:
        ValueError for an unknown calibration_where or val_data.
    """
    if calibration_where not in CALIBRATION_WHERE:
        raise ValueError(f"calibration_where={calibration_where!r}; allowed: {', '.join(CALIBRATION_WHERE)}")
    if val_data not in VAL_DATA_USES:
        raise ValueError(f"val_data={val_data!r}; allowed: {', '.join(VAL_DATA_USES)}")
    scale = hw.get("scale")
    train_limit = TRAIN_LIMIT_S * scale if scale else None
    eval_limit = EVAL_LIMIT_S * scale if scale else None
    in_cap = (calibration_time_s or 0.0) if calibration_where == "in_training" else 0.0
    counted = None if train_time_s is None else train_time_s + in_cap
    verdicts = {"train_time": verdict(counted, train_limit)}
    if calibration_where == "none":
        verdicts["calibration"] = "pass"
    elif calibration_where == "after_training":
        verdicts["calibration"] = "fail"
    else:
        verdicts["calibration"] = verdicts["train_time"]
    for mode, seconds in (eval_time_s or {}).items():
        verdicts[f"eval_time:{mode}"] = verdict(seconds, eval_limit)
    verdicts["bytes"] = verdict(bytes_total, BYTES_LIMIT)
    verdicts["val_data"] = "pass"  # never, or score-first TTT on already-scored tokens (legal by construction)
    return {"hardware": hw, "train_time_s": train_time_s, "train_limit_s": train_limit,
            "calibration_time_s": calibration_time_s, "calibration_where": calibration_where,
            "eval_time_s": dict(eval_time_s or {}), "eval_limit_s": eval_limit, "bytes_total": bytes_total,
            "bytes_limit": BYTES_LIMIT, "val_data_in_training": val_data, "verdicts": verdicts}


def summary_values(block: dict) -> dict:
    """Flat W&B summary keys of a compliance block (`compliance/train_time_s`, `compliance/verdict/bytes`, ...)."""
    out = {f"compliance/{k}": v for k, v in block.items()
           if k not in ("hardware", "verdicts", "eval_time_s") and v is not None}
    out.update({f"compliance/eval_time_s/{m}": s for m, s in block["eval_time_s"].items()})
    out.update({f"compliance/verdict/{k}": v for k, v in block["verdicts"].items()})
    out["compliance/device"] = block["hardware"]["device"]
    out["compliance/world_size"] = block["hardware"]["world_size"]
    return out


def format_block(block: dict) -> str:
    """One line: 'compliance: train_time pass · calibration pass · eval_time:sliding unknown · bytes pass ...'."""
    return "compliance: " + " · ".join(f"{k} {v}" for k, v in block["verdicts"].items())
