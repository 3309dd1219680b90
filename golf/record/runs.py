"""The seed runs a record is made of: each an exported golf run directory (metrics.json, export.json and the
artifact it names, train_rank0.log), all of one configuration. Every check fails with one line (RecordError) before anything is
written."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from golf.errors import GolfError
from golf.quant.artifact import read_artifact
from golf.train.config import TrainRunConfig
from golf.train.load import artifact_run_config, is_artifact

METRICS = "metrics.json"
EXPORT = "export.json"
LOG_NAMES = ("train_rank0.log", "train.log")
TRACK_SECONDS = 600.0
"""The track's limits: 10 minutes of training (GPTQ calibration included) and 10 minutes of evaluation."""


class RecordError(GolfError):
    """A run or sweep cannot become a record folder (missing file, over budget or time, mixed configurations)."""


@dataclass
class SeedRun:
    """One seed of the record: where it is, its typed config and its numbers."""

    path: Path
    cfg: TrainRunConfig
    metrics: dict
    export: dict
    log: Path

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def val_loss(self) -> float:
        return float(self.export["val_loss"])

    @property
    def val_bpb(self) -> float:
        return float(self.export["val_bpb"])

    @property
    def artifact_bytes(self) -> int:
        return int(self.export["artifact_bytes"])

    @property
    def train_time_s(self) -> float:
        """Training wallclock plus GPTQ Hessian collection (calibration counts toward the training budget)."""
        return float(self.metrics["train_time_s"]) + float(self.export.get("timings_s", {}).get("gptq_hessian_s", 0.0))

    @property
    def eval_time_s(self) -> float:
        return float(self.export.get("roundtrip", {}).get("seconds", 0.0))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError:
        raise RecordError(f"{path} is missing (train and export the run first: python export.py run_dir=...)") \
            from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_run(path: Path) -> SeedRun:
    """A seed run from its directory. Raises RecordError for a missing metrics/export/artifact/log."""
    metrics, export = _read_json(path / METRICS), _read_json(path / EXPORT)
    if "val_bpb" not in export:
        raise RecordError(f"{path / EXPORT} has no round-trip val_bpb (export with roundtrip_eval=true)")
    artifact = Path(export.get("artifact", ""))
    if not artifact.is_absolute():
        artifact = path / artifact.name
    if not artifact.is_file() or not is_artifact(artifact):
        raise RecordError(f"{path}: the exported artifact {artifact.name or '(none)'} is missing "
                          f"(python export.py run_dir={path})")
    _, manifest = read_artifact(artifact)
    cfg = artifact_run_config(manifest, artifact)
    log = next((path / n for n in LOG_NAMES if (path / n).is_file()), None)
    if log is None:
        raise RecordError(f"{path}: no training log ({' or '.join(LOG_NAMES)})")
    return SeedRun(path, cfg, metrics, export, log)


def find_runs(path: Path) -> list[SeedRun]:
    """The run at `path`, or every run directly below a sweep directory (sorted by seed). All must share one
    configuration (their configs equal up to the seed). Raises RecordError."""
    if not path.is_dir():
        raise RecordError(f"{path} is not a run or sweep directory")
    if (path / METRICS).is_file():
        dirs = [path]
    else:
        dirs = sorted(d for d in path.iterdir() if d.is_dir() and (d / METRICS).is_file())
    if not dirs:
        raise RecordError(f"{path}: no run directories (expected metrics.json here or in its subdirectories)")
    runs = sorted((load_run(d) for d in dirs), key=lambda r: r.seed)
    first = replace(runs[0].cfg, seed=0).to_dict()
    for r in runs[1:]:
        if replace(r.cfg, seed=0).to_dict() != first:
            diff = _first_difference(first, replace(r.cfg, seed=0).to_dict())
            raise RecordError(f"{r.path} is a different configuration from {runs[0].path} ({diff}); a record is "
                              "seed runs of one configuration")
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise RecordError(f"{path}: seeds repeat ({seeds}); a record needs distinct seeds")
    return runs


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            found = _first_difference(a[k], b[k], f"{prefix}{k}.")
            if found:
                return found
        elif a.get(k) != b.get(k):
            return f"{prefix}{k}: {a.get(k)!r} vs {b.get(k)!r}"
    return ""


def check_limits(runs: list[SeedRun], code_bytes: int, target_bytes: int, non_record: bool) -> None:
    """Refuse (RecordError) a run over the byte budget, or over 600 s of training / eval unless non_record."""
    for r in runs:
        total = r.artifact_bytes + code_bytes
        if total > target_bytes:
            raise RecordError(f"seed {r.seed}: artifact {r.artifact_bytes:,} + code {code_bytes:,} = {total:,} bytes "
                              f"is over the {target_bytes:,}-byte budget")
        if non_record:
            continue
        if r.train_time_s > TRACK_SECONDS:
            raise RecordError(f"seed {r.seed}: training took {r.train_time_s:.1f} s (> {TRACK_SECONDS:.0f} s, "
                              "GPTQ calibration included); use --non-record for the non-record track")
        if r.eval_time_s > TRACK_SECONDS:
            raise RecordError(f"seed {r.seed}: evaluation took {r.eval_time_s:.1f} s (> {TRACK_SECONDS:.0f} s); "
                              "use --non-record for the non-record track")
