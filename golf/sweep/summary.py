"""A sweep's summary.json and summary.md: counts, the best job, per-job rows and per-configuration stats.

Above both golf.sweep.records (reading job directories) and golf.sweep.stats (grouping, Welch tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from golf.sweep.records import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    SUMMARY_JSON,
    SUMMARY_MD,
    find_job_dirs,
    job_table,
    read_job,
    split_overrides,
    sweep_name_of,
)
from golf.sweep.stats import config_table, group_by_config
from golf.train.tracking import write_json


def build_summary(sweep_dir: str | Path) -> tuple[dict, str]:
    """(summary dict, markdown) of a sweep directory: counts, best job, per-job rows, per-configuration stats."""
    sweep_dir = Path(sweep_dir)
    jobs = [read_job(d) for d in find_job_dirs(sweep_dir)] if sweep_dir.is_dir() else []
    done = [j for j in jobs if j.status == COMPLETED and j.submitted("val_bpb") is not None]
    best = min(done, key=lambda j: j.submitted("val_bpb")) if done else None  # ranked as submitted
    counts = {s: sum(j.status == s for j in jobs) for s in (COMPLETED, FAILED, INCOMPLETE)}
    configs = group_by_config(jobs)
    summary = {"sweep_dir": str(sweep_dir), "sweep_name": sweep_name_of(sweep_dir), "n_jobs": len(jobs),
               **{f"n_{k}": v for k, v in counts.items()},
               "best": {"job": best.job, "val_bpb": best.submitted("val_bpb"), "score": best.score_source,
                        "overrides": best.overrides} if best else None,
               "jobs": [j.to_dict() for j in jobs], "configs": [c.to_dict() for c in configs]}
    shared, varying = split_overrides(jobs)
    md = [f"# Sweep {summary['sweep_name']}", "",
          f"`{sweep_dir}`: {len(jobs)} jobs — {counts[COMPLETED]} completed, {counts[FAILED]} failed, "
          f"{counts[INCOMPLETE]} incomplete.", ""]
    if shared:
        md += [f"Common overrides: `{' '.join(shared)}`", ""]
    if best:
        md += [f"Best: job {best.job}, val_bpb {best.submitted('val_bpb'):.5f} ({best.score_source}) "
               f"(`{' '.join(varying[best.job])}`)", ""]
    md += ["Scores are as submitted: the round-trip (post-quantization) val_bpb of the job's artifact where it "
           "exported, else the pre-quantization val_bpb (column `score`).", ""]
    md += ["## Jobs", "", job_table(jobs), "", "## Configurations (mean ± std over seeds)", "", config_table(configs)]
    return summary, "\n".join(md) + "\n"


def write_summary(sweep_dir: str | Path) -> dict:
    """Write <sweep_dir>/summary.json and summary.md (atomic; safe when jobs finish concurrently)."""
    sweep_dir = Path(sweep_dir)
    summary, md = build_summary(sweep_dir)
    write_json(sweep_dir / SUMMARY_JSON, summary)
    tmp = sweep_dir / f".{SUMMARY_MD}.{os.getpid()}.tmp"
    tmp.write_text(md)
    os.replace(tmp, sweep_dir / SUMMARY_MD)
    return summary
