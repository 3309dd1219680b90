"""On-disk memo of the preflight's step-time model (golf.preflight.check.step_time_model).

Fitting it composes three record configs with Hydra: 2-3 s of every `train.py` start. The fit reads nothing but
golf's sources, the YAML under conf/ and the records' train logs, so its result is stored under a key naming all
three (and the interpreter and library versions golf.record.cache.toolchain names), with the bundle memo's rules (golf.record.cache: `$GOLF_CACHE_DIR/preflight`, JSON only, written
atomically, an entry that does not check is ignored and replaced, `GOLF_CACHE_DIR=off` turns it off). Any edit
to golf, a preset or a log gives another key: nothing stale is returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

from golf.preflight.compose import CONF
from golf.preflight.records import RECORDS, RECORDS_DIR
from golf.preflight.steptime import StepTimeModel
from golf.record.cache import load_entry, store_entry, toolchain

KIND = "preflight"
ENTRY = {"key": str, "model": dict}
GOLF_ROOT = Path(__file__).resolve().parents[1]


def inputs_digest(records_dir: Path = RECORDS_DIR, conf: Path = CONF) -> str:
    """sha256 (hex) over golf's sources (golf.record.cache.toolchain), every YAML file under `conf` and every
    train*.log of the RECORDS folders under `records_dir` (names and bytes; an absent folder counts as empty)."""
    h = hashlib.sha256(toolchain(GOLF_ROOT).encode("utf-8"))
    logs = [p for rec in RECORDS for p in sorted((records_dir / rec.folder).glob("train*.log"))]
    files = sorted(conf.rglob("*.yaml")) + logs
    for path in files:
        h.update(str(path).encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _from_entry(values: dict) -> StepTimeModel | None:
    """The stored model, or None unless its fields are exactly StepTimeModel's: floats (the two eval rates may
    be null) and a list of record folder names."""
    names = {f.name for f in fields(StepTimeModel)}
    numbers = [values.get(k) for k in ("ms_per_tflop", "overhead_ms")]
    optional = [values.get(k) for k in ("eval_ms_per_tflop", "sliding_ms_per_kwindow")]
    if (set(values) != names or not all(isinstance(v, float) for v in numbers)
            or not all(v is None or isinstance(v, float) for v in optional)
            or not (isinstance(values["fitted_on"], list) and all(isinstance(s, str) for s in values["fitted_on"]))):
        return None
    return StepTimeModel(**values)


def memoised(fit: Callable[[], StepTimeModel], env: dict[str, str] | None = None,
             records_dir: Path = RECORDS_DIR) -> StepTimeModel:
    """The model stored for the current inputs, else `fit()`, stored for the next process."""
    key = hashlib.sha256(json.dumps([KIND, inputs_digest(records_dir)]).encode("utf-8")).hexdigest()
    entry = load_entry(key, env, KIND, ENTRY)
    if entry is not None and (model := _from_entry(entry["model"])) is not None:
        return model
    model = fit()
    store_entry(key, {"model": asdict(model)}, env, KIND)
    return model
