"""Sweep report from run directories alone (no W&B): tables, seed statistics, significance, plots.

    python -m golf.report multirun/<date>_<time>_<sweep>                       # one sweep
    python -m golf.report multirun/<..>_seeds_idea --baseline multirun/<..>_seeds_baseline
    python -m golf.report multirun/<..>_grid --baseline-config "model.mlp_mult=2"   # baseline inside the sweep
    python -m golf.report outputs/run_a outputs/run_b --out /tmp/cmp             # single runs work too

Writes into --out (default: the first directory) report.md, report.json, loss_curves.png (train/loss of
every job on one chart) and bpb_vs_bytes.png (val_bpb against bytes_total with the 16,000,000-byte line),
and prints report.md. Per configuration (overrides without seed): mean ± std over its seeds. Against a
baseline: improvement in nats (val_loss) and bpb, Welch t-test p-values and the challenge's record rule
(>= 0.005 nats better at p < 0.01, one-sided; see golf.sweep.stats for the exact test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from golf.sweep.plots import plot_bpb_vs_bytes, plot_loss_curves
from golf.sweep.records import COMPLETED, FAILED, RecordsError, collect_jobs, fmt, job_table, split_overrides
from golf.sweep.stats import (
    RECORD_ALPHA,
    RECORD_MARGIN_NATS,
    ConfigStats,
    comparison_table,
    config_table,
    group_by_config,
    short_keys,
    welch_compare,
)

REPORT_MD, REPORT_JSON = "report.md", "report.json"
LOSS_PNG, BYTES_PNG = "loss_curves.png", "bpb_vs_bytes.png"


def pick_baseline(configs: list[ConfigStats], selector: str, where: str) -> ConfigStats:
    """The configuration holding every override of `selector` (all of them when empty); exactly one may match.

    Raises RecordsError naming the candidates otherwise.
    """
    wanted = set(selector.split())
    found = [c for c in configs if wanted <= set(c.key.split())]
    if len(found) != 1:
        listed = "; ".join(c.key or "(defaults)" for c in (found or configs))
        what = "no configuration" if not found else f"{len(found)} configurations"
        raise RecordsError(f"baseline {selector or '(any)'!r} in {where}: {what} match; choose one with "
                           f"--baseline-config from: {listed}")
    return found[0]


def load_jobs(paths: list[str | Path], baseline_paths: list[str | Path] = ()) -> tuple[list, list]:
    """(jobs, baseline jobs); baseline job names get a 'base/' prefix so that both sets stay distinct."""
    base = [dataclasses.replace(j, job=f"base/{j.job}") for j in collect_jobs(list(baseline_paths))] \
        if baseline_paths else []
    return collect_jobs(list(paths)), base


def build_report(paths: list[str | Path], baseline_paths: list[str | Path] = (), baseline_config: str = "",
                 margin_nats: float = RECORD_MARGIN_NATS, alpha: float = RECORD_ALPHA,
                 loaded: tuple[list, list] | None = None) -> tuple[dict, str]:
    """(report dict, markdown without plots) for the jobs under `paths` and an optional baseline.

    Raises RecordsError for a path without jobs or an ambiguous baseline.
    """
    jobs, base_jobs = loaded or load_jobs(paths, baseline_paths)
    configs = group_by_config(jobs)
    baseline = None
    if baseline_paths:
        baseline = pick_baseline(group_by_config(base_jobs), baseline_config, ", ".join(map(str, baseline_paths)))
    elif baseline_config:
        baseline = pick_baseline(configs, baseline_config, ", ".join(map(str, paths)))
    comparisons = [welch_compare(c, baseline, margin_nats, alpha) for c in configs
                   if baseline is not None and c is not baseline and c.n]
    labels = _labels(configs, baseline, paths, baseline_paths)
    shared, _ = split_overrides(jobs)
    n = {s: sum(j.status == s for j in jobs) for s in (COMPLETED, FAILED)}
    md = [f"# Report: {', '.join(Path(p).name for p in paths)}", "",
          f"{len(jobs)} jobs: {n[COMPLETED]} completed, {n[FAILED]} failed, "
          f"{len(jobs) - n[COMPLETED] - n[FAILED]} incomplete.", ""]
    if shared:
        md += [f"Common overrides: `{' '.join(shared)}`", ""]
    md += ["## Configurations (mean ± std over seeds)", "", config_table(configs), ""]
    if baseline is not None:
        where = ", ".join(Path(p).name for p in (baseline_paths or paths))
        b = baseline.to_dict()
        md += ["## Against the baseline", "",
               f"Baseline: {labels['baseline']} from {where}, n={baseline.n}, val_loss "
               f"{_pm(b['val_loss_mean'], b['val_loss_std'])}, val_bpb {_pm(b['val_bpb_mean'], b['val_bpb_std'])}.",
               "", comparison_table(comparisons, labels), "",
               f"Δ = baseline − candidate (positive: the candidate is better). Record rule: one-sided Welch t-test "
               f"of Δ val_loss > {margin_nats} nats, met at p < {alpha}.", ""]
    md += ["## Jobs", "", job_table(jobs), ""]
    clocks = [(j.job, job_compliance(j.path, j.metrics)) for j in jobs]
    if any(c for _, c in clocks):
        md += ["## Compliance (the challenge's clocks and bytes)", "", compliance_table(clocks), "",
               "Limits scaled to each run's hardware (600 s on 8xH100; unknown on CPU). Calibration `after` = "
               "calibrated on training data after training (non-record).", ""]
    if base_jobs:
        md += ["## Baseline jobs", "", job_table(base_jobs), ""]
    report = {"compliance": {job: c for job, c in clocks if c},
              "paths": [str(p) for p in paths], "baseline_paths": [str(p) for p in baseline_paths],
              "configs": [c.to_dict() for c in configs], "baseline": baseline.to_dict() if baseline else None,
              "comparisons": [c.to_dict() for c in comparisons], "jobs": [j.to_dict() for j in jobs],
              "baseline_jobs": [j.to_dict() for j in base_jobs]}
    return report, "\n".join(md)


def job_compliance(job_dir: Path, metrics: dict) -> dict:
    """The job's compliance blocks merged: training (metrics.json), export (export.json), eval (eval.json);
    later files add eval times and bytes, and their verdicts win for the rules they judge (an `unknown` never
    replaces a known verdict). {} when none."""
    merged: dict = {}
    blocks = [metrics.get("compliance")]
    for name in ("export.json", "eval.json"):
        path = Path(job_dir) / name
        if path.is_file():
            try:
                blocks.append(json.loads(path.read_text()).get("compliance"))
            except (OSError, ValueError):
                continue
    for block in filter(None, blocks):
        eval_times = {**merged.get("eval_time_s", {}), **block.get("eval_time_s", {})}
        verdicts = {**merged.get("verdicts", {}),
                    **{k: v for k, v in block["verdicts"].items() if v != "unknown" or k not in merged.get("verdicts", {})}}
        keep_calibration = merged.get("calibration_where", "none") != "none" and \
            block.get("calibration_where") == "none"
        merged.update({k: v for k, v in block.items() if v is not None
                       and not (keep_calibration and k in ("calibration_where", "calibration_time_s"))})
        merged["eval_time_s"], merged["verdicts"] = eval_times, verdicts
    return merged


def compliance_table(rows: list[tuple[str, dict]]) -> str:
    """Markdown: job, train s, calibration (where, s), eval s per mode, bytes, one verdict per rule."""
    lines = ["| job | train s | calibration | eval s | bytes_total | verdicts |", "|---|---:|---|---|---:|---|"]
    for job, c in rows:
        if not c:
            continue
        calib = c.get("calibration_where", "none")
        if c.get("calibration_time_s") is not None:
            calib += f" {c['calibration_time_s']:.1f}s"
        evals = ", ".join(f"{m} {s:.1f}" for m, s in c.get("eval_time_s", {}).items()) or "—"
        verdicts = ", ".join(f"{k} {v}" for k, v in c.get("verdicts", {}).items())
        lines.append(f"| {job} | {fmt(c.get('train_time_s'), '.1f')} | {calib} | {evals} | "
                     f"{fmt(c.get('bytes_total'), ',.0f')} | {verdicts} |")
    return "\n".join(lines)


def _labels(configs: list[ConfigStats], baseline: ConfigStats | None, paths, baseline_paths) -> dict[str, str]:
    """Short names for the tables: what tells a configuration apart from the others and from the baseline;
    the directory name when the overrides are the same (e.g. two code versions run with one preset)."""
    keys = list(dict.fromkeys([c.key for c in configs] + ([baseline.key] if baseline else [])))
    short = short_keys(keys) if len(keys) > 1 else {keys[0]: ""} if keys else {}
    names = ", ".join(Path(p).name for p in paths)
    labels = {k: f"`{v}`" if v and v != "(all)" else names for k, v in short.items()}
    if baseline is not None:
        same = baseline_paths and baseline.key in [c.key for c in configs]
        labels["baseline"] = ", ".join(Path(p).name for p in baseline_paths) if same or not short.get(baseline.key) \
            or short[baseline.key] == "(all)" else f"`{short[baseline.key]}`"
    return labels


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.5f}" + (f" ± {std:.5f}" if std is not None else "")


def write_report(paths: list[str | Path], out: str | Path | None = None, baseline_paths: list[str | Path] = (),
                 baseline_config: str = "", margin_nats: float = RECORD_MARGIN_NATS,
                 alpha: float = RECORD_ALPHA) -> dict:
    """Build the report and write report.md, report.json and both PNGs into `out` (default: paths[0])."""
    jobs, base = load_jobs(paths, baseline_paths)
    report, md = build_report(paths, baseline_paths, baseline_config, margin_nats, alpha, (jobs, base))
    out = Path(out or paths[0])
    out.mkdir(parents=True, exist_ok=True)
    plot_loss_curves(jobs, out / LOSS_PNG, base)
    plot_bpb_vs_bytes(jobs, out / BYTES_PNG, base)
    md += f"\n## Plots\n\n![training loss]({LOSS_PNG})\n\n![val_bpb vs artifact bytes]({BYTES_PNG})\n"
    (out / REPORT_MD).write_text(md)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    report["markdown"] = md
    report["out"] = str(out)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golf.report", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="sweep directories (multirun/...) or run directories")
    parser.add_argument("--baseline", nargs="+", default=[], help="sweep/run directories of the baseline")
    parser.add_argument("--baseline-config", default="",
                        help="overrides selecting the baseline configuration (in --baseline, else in PATHS)")
    parser.add_argument("--out", default=None, help="output directory (default: the first PATH)")
    parser.add_argument("--margin-nats", type=float, default=RECORD_MARGIN_NATS,
                        help="required improvement in val_loss (default: the challenge's 0.005)")
    parser.add_argument("--alpha", type=float, default=RECORD_ALPHA, help="significance level (default 0.01)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.paths, args.out, args.baseline, args.baseline_config, args.margin_nats,
                              args.alpha)
    except RecordsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report["markdown"])
    print(f"wrote {report['out']}/{{{REPORT_MD},{REPORT_JSON},{LOSS_PNG},{BYTES_PNG}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
