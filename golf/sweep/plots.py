"""PNG charts of a sweep, drawn from run directories alone (history.jsonl, metrics.json).

Uses matplotlib's object API (`Figure` + Agg canvas via savefig): no pyplot global state, no display needed.
Jobs of one configuration (its seeds) share a colour; baseline jobs are dashed / hollow.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from golf.sweep.records import JobRecord
from golf.sweep.stats import config_key, short_keys

BUDGET_BYTES = 16_000_000


def _colours(jobs: list[JobRecord]) -> tuple[dict[str, str], dict[str, str]]:
    """Per job: a colour shared by its configuration, and the legend label of that configuration."""
    keys = list(dict.fromkeys(config_key(j.overrides) for j in jobs))
    palette = [f"C{i % 10}" for i in range(len(keys))]
    colour = dict(zip(keys, palette, strict=True))
    short = short_keys(keys)
    return ({j.job: colour[config_key(j.overrides)] for j in jobs},
            {j.job: short[config_key(j.overrides)] for j in jobs})


def _label(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_loss_curves(jobs: list[JobRecord], path: str | Path, baseline: list[JobRecord] = (),
                     metric: str = "train/loss") -> Path:
    """One chart: `metric` (default train/loss, nats per token) against step for every job. Returns `path`."""
    fig = Figure(figsize=(9, 5.5), dpi=110)
    ax = fig.add_subplot()
    everyone = list(jobs) + list(baseline)
    colour, label = _colours(everyone)
    seen: set[str] = set()
    drawn = 0
    for j in everyone:
        rows = [r for r in j.history() if metric in r]
        if not rows:
            continue
        is_base = j in baseline
        name = ("baseline: " if is_base else "") + label[j.job]
        ax.plot([r["step"] for r in rows], [r[metric] for r in rows], color=colour[j.job], lw=1.2, alpha=0.85,
                ls="--" if is_base else "-", label=_label(name) if name not in seen else None)
        seen.add(name)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, f"no '{metric}' in any history.jsonl", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} (nats/token)" if metric.endswith("loss") else metric)
    ax.set_title(f"{metric} of {drawn} job(s)")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_bpb_vs_bytes(jobs: list[JobRecord], path: str | Path, baseline: list[JobRecord] = (),
                      budget_bytes: int = BUDGET_BYTES) -> Path:
    """val_bpb against artifact bytes (bytes_total = artifact + code) with the budget line. Returns `path`.

    Only jobs that exported (export_after=true) have bytes_total; the x axis turns logarithmic when the
    artifacts are far below the budget so that both stay visible.
    """
    fig = Figure(figsize=(9, 5.5), dpi=110)
    ax = fig.add_subplot()
    everyone = list(jobs) + list(baseline)
    colour, label = _colours(everyone)
    points = [j for j in everyone if j.value("bytes_total") is not None and j.value("val_bpb") is not None]
    seen: set[str] = set()
    for j in points:
        is_base = j in baseline
        name = ("baseline: " if is_base else "") + label[j.job]
        x, y = j.value("bytes_total"), j.value("val_bpb")
        ax.scatter([x], [y], s=36, color="none" if is_base else colour[j.job], edgecolors=colour[j.job],
                   label=_label(name) if name not in seen else None, zorder=3)
        ax.annotate(j.job, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
        seen.add(name)
    ax.axvline(budget_bytes, color="red", ls="--", lw=1.2, label=f"budget {budget_bytes:,} bytes")
    sizes = [j.value("bytes_total") for j in points]
    if sizes and min(sizes) < budget_bytes / 10:
        ax.set_xscale("log")
    if not points:
        ax.text(0.5, 0.5, "no job has bytes_total (train with export_after=true)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("bytes_total = artifact + code (bytes)")
    ax.set_ylabel("val_bpb (bits/byte, lower is better)")
    ax.set_title(f"val_bpb vs artifact size, {len(points)} job(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
