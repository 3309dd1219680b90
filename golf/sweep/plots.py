"""PNG charts of a sweep, drawn from run directories alone (history.jsonl, metrics.json).

Uses matplotlib's object API (`Figure` + Agg canvas via savefig): no pyplot global state, no display needed.
Jobs of one configuration (its seeds) share a colour; baseline jobs are dashed / hollow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

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


_SEED_STYLES = ["-", "--", ":", "-."]


def _interp(xs: list[float], ys: list[float], grid: np.ndarray) -> np.ndarray:
    """ys at `grid` (linear interpolation; NaN outside the logged range)."""
    out = np.interp(grid, xs, ys)
    out[(grid < xs[0]) | (grid > xs[-1])] = np.nan
    return out


def plot_loss_curves(jobs: list[JobRecord], path: str | Path, baseline: list[JobRecord] = (),
                     metric: str = "train/loss", val_metric: str = "val/loss") -> Path:
    """`metric` (default train/loss, nats per token) against step: every seed as a thin line (one colour per
    configuration, one line style per seed), the configuration's mean as a thick line with a ± 1 std band
    (2+ seeds), and the validation points (`val_metric`) as markers. Returns `path`."""
    fig = Figure(figsize=(10, 6), dpi=110)
    ax = fig.add_subplot()
    everyone = list(jobs) + list(baseline)
    colour, label = _colours(everyone)
    by_config: dict[str, list[tuple[JobRecord, list[dict]]]] = {}
    for j in everyone:
        rows = [r for r in j.history() if metric in r]
        if rows:
            by_config.setdefault(("baseline: " if j in baseline else "") + label[j.job], []).append((j, rows))
    drawn = 0
    for name, members in by_config.items():
        c = colour[members[0][0].job]
        for i, (j, rows) in enumerate(members):
            seed = next((o.split("=", 1)[1] for o in j.overrides if o.startswith("seed=")), None)
            which = f"seed {seed}" if seed is not None else f"run {j.job}"
            ax.plot([r["step"] for r in rows], [r[metric] for r in rows], color=c, lw=1.1, alpha=0.95, zorder=3,
                    ls=_SEED_STYLES[i % len(_SEED_STYLES)], label=f"{_label(name, 40)} · {which}")
            vals = [r for r in j.history() if val_metric in r]
            if vals:
                ax.scatter([r["step"] for r in vals], [r[val_metric] for r in vals], color=c, marker="o", s=22,
                           edgecolors="black", linewidths=0.5, zorder=4)
            drawn += 1
        if len(members) > 1:
            grid = np.unique(np.concatenate([[r["step"] for r in rows] for _, rows in members]).astype(float))
            curves = np.stack([_interp([float(r["step"]) for r in rows], [r[metric] for r in rows], grid)
                               for _, rows in members])
            mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0, ddof=1)
            ax.plot(grid, mean, color=c, lw=4.0, alpha=0.35, zorder=2, label=f"{_label(name, 40)} · mean of {len(members)}")
            ax.fill_between(grid, mean - std, mean + std, color=c, alpha=0.15, lw=0, zorder=1)
    if not drawn:
        ax.text(0.5, 0.5, f"no '{metric}' in any history.jsonl", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.scatter([], [], color="grey", marker="o", s=22, edgecolors="black", linewidths=0.5,
                   label=f"{val_metric} (validation)")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} (nats/token)" if metric.endswith("loss") else metric)
    ax.set_title(f"{metric}: {drawn} run(s) in {len(by_config)} configuration(s); one line style per seed, "
                 "wide pale line = mean, band = ± 1 std")
    ax.grid(alpha=0.3)
    _zoom_loss(ax, [r[metric] for ms in by_config.values() for _, rows in ms for r in rows]
               + [r[val_metric] for ms in by_config.values() for j, _ in ms for r in j.history() if val_metric in r])
    if drawn:
        ax.legend(fontsize=7, loc="upper right", ncol=2 if drawn > 8 else 1)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _zoom_loss(ax, values: list[float]) -> None:
    """Keep the interesting part: from a bit under the lowest loss to the 90th percentile (the first steps'
    ~7 nats would otherwise flatten every difference)."""
    if len(values) < 4:
        return
    lo, hi = float(np.min(values)), float(np.percentile(values, 90))
    if hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.15 * (hi - lo))


def plot_bpb_vs_bytes(jobs: list[JobRecord], path: str | Path, baseline: list[JobRecord] = (),
                      budget_bytes: int = BUDGET_BYTES) -> Path:
    """Submitted val_bpb (round trip where exported) against bytes_total = artifact + code, in MB (10^6 bytes),
    with the budget line; each point labelled by its configuration. Returns `path`.

    Only jobs that exported (export_after=true, or export.py) have bytes_total."""
    fig = Figure(figsize=(10, 6), dpi=110)
    ax = fig.add_subplot()
    everyone = list(jobs) + list(baseline)
    colour, label = _colours(everyone)
    points = [j for j in everyone if j.value("bytes_total") is not None and j.submitted("val_bpb") is not None]
    seen: set[str] = set()
    for j in points:
        is_base = j in baseline
        name = ("baseline: " if is_base else "") + label[j.job]
        x, y = j.value("bytes_total") / 1e6, j.submitted("val_bpb")
        ax.scatter([x], [y], s=40, color="none" if is_base else colour[j.job], edgecolors=colour[j.job],
                   label=_label(name, 50) if name not in seen else None, zorder=3)
        ax.annotate(_label(f"{name} [{j.job}]", 36), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
        seen.add(name)
    ax.axvline(budget_bytes / 1e6, color="red", ls="--", lw=1.2, label=f"budget {budget_bytes:,} bytes")
    sizes = [j.value("bytes_total") for j in points]
    if sizes and min(sizes) < budget_bytes / 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(sizes) / 1e6 / 1.6, budget_bytes / 1e6 * 1.3)
    if not points:
        ax.text(0.5, 0.5, "no job has bytes_total (train with export_after=true)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("bytes_total = artifact + code (MB, 10^6 bytes)")
    ax.set_ylabel("val_bpb as submitted (bits/byte, lower is better)")
    scores = sorted({j.score_source for j in points})
    ax.set_title(f"val_bpb ({' / '.join(scores) or 'no score'}) vs submission size, {len(points)} run(s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_group_bytes(artifacts: list[dict], path: str | Path) -> Path:
    """Grouped bars: compressed bytes per tensor group (embed/attn/mlp/other/small) for each artifact, in MB.
    `artifacts`: [{"label": str, "groups": {group: bytes}}]. Returns `path`."""
    fig = Figure(figsize=(10, 5.5), dpi=110)
    ax = fig.add_subplot()
    groups = [g for g in ("embed", "attn", "mlp", "other", "small")
              if any(a["groups"].get(g) for a in artifacts)]
    width = 0.8 / max(1, len(artifacts))
    for i, a in enumerate(artifacts):
        xs = np.arange(len(groups)) + (i - (len(artifacts) - 1) / 2) * width
        ys = [a["groups"].get(g, 0) / 1e6 for g in groups]
        bars = ax.bar(xs, ys, width, label=_label(a["label"], 50), color=f"C{i % 10}")
        ax.bar_label(bars, labels=[f"{y:.3g}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("compressed bytes (MB, 10^6 bytes; each group compressed alone)")
    ax.set_title(f"bytes per tensor group, {len(artifacts)} artifact(s)")
    ax.grid(alpha=0.3, axis="y")
    if artifacts:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
