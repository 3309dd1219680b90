"""Job records read from run directories alone: status, overrides and metrics of every job of a sweep.

A job directory (multirun/<date>_<time>_<sweep_name>/<job_num>/, or a single run's outputs/<run>/) holds
  .hydra/overrides.yaml   the job's overrides (Hydra)
  metrics.json            final numbers (rank 0 of golf.train): val_bpb, val_loss, params, steps, ms_per_step, ...
  history.jsonl           one JSON object per logged step (train/loss, val/bpb, ...)
  status.json             written by the golf_sweep callback: completed / failed (+ error), overrides, return value
A job without status.json is `completed` when it has metrics.json, else `incomplete` (still running, or killed
before Hydra could record it); so is one whose status.json says completed but that has no metrics.json (metrics.json is
written only after the final checkpoint: a preempted run leaves resume.pt and no metrics.json). `write_summary` turns a sweep directory into summary.json + summary.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from golf.errors import GolfError
from golf.train.tracking import (
    HISTORY_NAME,
    METRICS_NAME,
    compact_override,
    experiment_overrides,
    read_json,
    write_json,
)

STATUS_NAME = "status.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
COMPLETED, FAILED, INCOMPLETE = "completed", "failed", "incomplete"


class RecordsError(GolfError):
    """A path given as a sweep or run directory holds no job records; the message names the path."""


@dataclass
class JobRecord:
    """One job (or single run) as found on disk."""

    job: str
    """Name shown in tables: the job directory's name (Hydra's job number in a sweep)."""
    path: Path
    overrides: list[str] = field(default_factory=list)
    """The job's experiment overrides (routing overrides such as hydra.* dropped)."""
    status: str = INCOMPLETE
    error: str = ""
    metrics: dict = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        """A finite numeric metric, or None."""
        v = self.metrics.get(key)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    def submitted(self, key: str = "val_bpb") -> float | None:
        """The as-submitted score: round-trip (post-quantization) `key` (val_bpb / val_loss) when the job has
        an artifact, else the pre-quantization value. `score_source` says which."""
        rt = self.value(f"roundtrip_{key}")
        return rt if rt is not None else self.value(key)

    @property
    def score_source(self) -> str:
        """"round trip" (artifact score) or "pre-quant" (no artifact: the checkpoint's score)."""
        return "round trip" if self.value("roundtrip_val_bpb") is not None else "pre-quant"

    def history(self) -> list[dict]:
        """Rows of history.jsonl (empty when the file is missing)."""
        path = self.path / HISTORY_NAME
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def to_dict(self) -> dict:
        return {"job": self.job, "path": str(self.path), "overrides": self.overrides, "status": self.status,
                "error": self.error, "metrics": self.metrics}


def write_status(job_dir: str | Path, status: str, overrides: list[str], error: str = "",
                 return_value: float | None = None) -> None:
    """Record a finished job's outcome in <job_dir>/status.json (atomic)."""
    write_json(Path(job_dir) / STATUS_NAME, {"status": status, "overrides": list(overrides), "error": error,
                                             "return_value": return_value})


def read_job(job_dir: str | Path, name: str | None = None) -> JobRecord:
    """The JobRecord of one job directory (see the module docstring for how the status is decided)."""
    job_dir = Path(job_dir)
    rec = JobRecord(job=name or job_dir.name, path=job_dir)
    status = read_json(job_dir / STATUS_NAME) if (job_dir / STATUS_NAME).is_file() else {}
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    raw = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else status.get("overrides", [])
    rec.overrides = experiment_overrides([str(o) for o in raw or []])
    if (job_dir / METRICS_NAME).is_file():
        rec.metrics = read_json(job_dir / METRICS_NAME)
    _add_export_scores(rec.metrics, job_dir)
    rec.status = status.get("status") or (COMPLETED if rec.metrics else INCOMPLETE)
    if rec.status == COMPLETED and not rec.metrics:  # metrics.json comes after the final checkpoint: without it
        rec.status = INCOMPLETE                     # the run was interrupted (e.g. preempted, resume.pt left)
    rec.error = status.get("error", "")
    return rec


def _add_export_scores(metrics: dict, job_dir: Path) -> None:
    """A run exported after training (export.py) has its round-trip score in export.json: take it (and the
    bytes) into the metrics when metrics.json has none, so reports rank by the submitted score."""
    if not metrics or "roundtrip_val_bpb" in metrics or not (job_dir / "export.json").is_file():
        return
    try:
        exp = read_json(job_dir / "export.json")
    except (OSError, ValueError):
        return
    if isinstance(exp.get("val_bpb"), int | float):
        metrics.update(roundtrip_val_bpb=exp["val_bpb"], roundtrip_val_loss=exp.get("val_loss"))
    for k in ("bytes_total", "artifact_bytes", "code_bytes"):
        if k in exp and k not in metrics:
            metrics[k] = exp[k]


def is_job_dir(path: Path) -> bool:
    return any((path / n).exists() for n in (METRICS_NAME, STATUS_NAME, ".hydra/overrides.yaml"))


def find_job_dirs(path: str | Path) -> list[Path]:
    """`path` itself when it is a job/run directory, else its job subdirectories in job-number order."""
    path = Path(path)
    if not path.is_dir():
        raise RecordsError(f"{path}: not a directory")
    if is_job_dir(path):
        return [path]
    dirs = [p for p in path.iterdir() if p.is_dir() and is_job_dir(p)]
    return sorted(dirs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def collect_jobs(paths: list[str | Path]) -> list[JobRecord]:
    """JobRecords of every job under the given sweep or run directories. Raises RecordsError when none."""
    jobs: list[JobRecord] = []
    for path in paths:
        dirs = find_job_dirs(path)
        if not dirs:
            raise RecordsError(f"{path}: no job directories (expected <job>/metrics.json or .hydra/)")
        prefix = f"{Path(path).name}/" if len(paths) > 1 and dirs != [Path(path)] else ""
        jobs += [read_job(d, prefix + d.name) for d in dirs]
    return jobs


def split_overrides(jobs: list[JobRecord]) -> tuple[list[str], dict[str, list[str]]]:
    """(overrides shared by all jobs, per job the overrides that vary) — what a table needs to show."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if jobs else set()
    shared = [o for o in jobs[0].overrides if o in common] if jobs else []
    return shared, {j.job: [o for o in j.overrides if o not in common] for j in jobs}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def fmt(value: float | None, spec: str) -> str:
    """Format a number for a table cell ('—' for missing)."""
    return "—" if value is None else format(value, spec)


def job_table(jobs: list[JobRecord]) -> str:
    """Markdown: job, overrides (those that vary), submitted val_bpb and which score it is, pre-quant val_bpb,
    val_loss, bytes_total, params, steps, ms/step, status."""
    _, varying = split_overrides(jobs)
    lines = ["| job | overrides | val_bpb (submitted) | score | pre-quant val_bpb | val_loss | bytes_total | params | "
             "steps | ms/step | status |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for j in jobs:
        status = j.status if not j.error else f"{j.status}: {j.error[:100]}"
        lines.append(
            f"| {_cell(j.job)} | {_cell(' '.join(map(compact_override, varying[j.job])) or '—')} | "
            f"{fmt(j.submitted('val_bpb'), '.5f')} | {j.score_source} | {fmt(j.value('val_bpb'), '.5f')} | "
            f"{fmt(j.submitted('val_loss'), '.5f')} | {fmt(j.value('bytes_total'), ',.0f')} | "
            f"{fmt(j.value('params'), ',.0f')} | {fmt(j.value('steps'), '.0f')} | "
            f"{fmt(j.value('ms_per_step'), '.1f')} | {_cell(status)} |")
    return "\n".join(lines)


def sweep_name_of(sweep_dir: Path) -> str:
    """The sweep name in a `<date>_<time>_<sweep_name>` directory name (the whole name otherwise)."""
    m = re.match(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_(.+)$", sweep_dir.name)
    return m.group(1) if m else sweep_dir.name
