"""Seeds and significance: mean ± std per configuration, Welch t-test against a baseline, the record rule.

A configuration is a job's overrides without `seed=...`; its jobs are the seeds. Only completed jobs count.

The challenge's rule (openai/parameter-golf README, "Submission Process"): a new record must beat the SOTA by
at least 0.005 nats, and "provide enough run logs to show at p < 0.01 that they achieved the required 0.005-nat
improvement". We read that literally as a one-sided test of the improvement *beyond the margin*:
    H0: mean(val_loss_baseline) - mean(val_loss_candidate) <= 0.005    H1: > 0.005
with Welch's unequal-variance t-test on val_loss (nats per token; `scipy.stats.ttest_ind(baseline, candidate +
0.005, equal_var=False, alternative="greater")`); the rule is met when that p < 0.01. The plain two-sided Welch
p-value (any difference, `ttest_ind(baseline, candidate, equal_var=False)`) is reported beside it. Both need at
least two runs per side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sstats

from golf.sweep.records import COMPLETED, FAILED, JobRecord, fmt
from golf.train.tracking import compact_override

RECORD_MARGIN_NATS = 0.005
RECORD_ALPHA = 0.01
SEED_PREFIXES = ("seed=", "+seed=", "++seed=")


def config_key(overrides: list[str]) -> str:
    """The configuration a job belongs to: its overrides without the seed, sorted ('' = the defaults)."""
    return " ".join(sorted(o for o in overrides if not o.startswith(SEED_PREFIXES)))


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _std(xs: list[float]) -> float | None:
    """Sample standard deviation (ddof=1); None with fewer than two values."""
    return float(np.std(xs, ddof=1)) if len(xs) >= 2 else None


@dataclass
class ConfigStats:
    """The completed seeds of one configuration."""

    key: str
    jobs: list[str] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    val_bpb: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    bytes_total: list[float] = field(default_factory=list)
    n_failed: int = 0
    sources: set = field(default_factory=set)
    """Which scores val_bpb/val_loss hold: {"round trip"} (artifacts), {"pre-quant"} or both (mixed)."""

    @property
    def score(self) -> str:
        return " + ".join(sorted(self.sources)) or "—"

    @property
    def n(self) -> int:
        return len(self.val_loss)

    def to_dict(self) -> dict:
        return {"key": self.key, "jobs": self.jobs, "seeds": self.seeds, "n": self.n, "n_failed": self.n_failed,
                "val_bpb": self.val_bpb, "val_loss": self.val_loss, "bytes_total": self.bytes_total,
                "val_bpb_mean": _mean(self.val_bpb), "val_bpb_std": _std(self.val_bpb),
                "val_loss_mean": _mean(self.val_loss), "val_loss_std": _std(self.val_loss),
                "bytes_total_mean": _mean(self.bytes_total), "score": self.score}


def group_by_config(jobs: list[JobRecord]) -> list[ConfigStats]:
    """One ConfigStats per configuration, in order of first appearance."""
    groups: dict[str, ConfigStats] = {}
    for j in jobs:
        g = groups.setdefault(config_key(j.overrides), ConfigStats(config_key(j.overrides)))
        if j.status == FAILED:
            g.n_failed += 1
        if j.status != COMPLETED or j.submitted("val_loss") is None or j.submitted("val_bpb") is None:
            continue
        g.jobs.append(j.job)
        g.seeds.append(next((o.split("=", 1)[1] for o in j.overrides if o.startswith(SEED_PREFIXES)), None))
        g.val_bpb.append(j.submitted("val_bpb"))  # as submitted: round trip when the job has an artifact
        g.val_loss.append(j.submitted("val_loss"))
        g.sources.add(j.score_source)
        if j.value("bytes_total") is not None:
            g.bytes_total.append(j.value("bytes_total"))
    return list(groups.values())


@dataclass
class Comparison:
    """A candidate configuration against a baseline; deltas are baseline - candidate (> 0: candidate better)."""

    candidate: str
    baseline: str
    n_candidate: int
    n_baseline: int
    delta_nats: float
    """Mean val_loss improvement in nats per token."""
    delta_bpb: float
    """Mean val_bpb improvement in bits per byte."""
    t: float | None
    p_two_sided: float | None
    """Welch t-test, H1: the mean val_loss differ."""
    t_rule: float | None
    p_rule: float | None
    """Welch t-test, one-sided, H1: baseline - candidate > margin_nats."""
    margin_nats: float = RECORD_MARGIN_NATS
    alpha: float = RECORD_ALPHA

    @property
    def meets_rule(self) -> bool:
        return self.p_rule is not None and self.p_rule < self.alpha

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "meets_rule": self.meets_rule}


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def welch_compare(candidate: ConfigStats, baseline: ConfigStats, margin_nats: float = RECORD_MARGIN_NATS,
                  alpha: float = RECORD_ALPHA) -> Comparison:
    """Compare two configurations' seeds on val_loss (test) and val_bpb (delta). p-values need n >= 2 each."""
    base, cand = np.asarray(baseline.val_loss), np.asarray(candidate.val_loss)
    t = p = t_rule = p_rule = None
    if len(base) >= 2 and len(cand) >= 2:
        two = sstats.ttest_ind(base, cand, equal_var=False)
        rule = sstats.ttest_ind(base, cand + margin_nats, equal_var=False, alternative="greater")
        t, p, t_rule, p_rule = (_finite(v) for v in (two.statistic, two.pvalue, rule.statistic, rule.pvalue))
    return Comparison(candidate.key, baseline.key, len(cand), len(base),
                      float(np.mean(base) - np.mean(cand)) if len(base) and len(cand) else math.nan,
                      float(np.mean(baseline.val_bpb) - np.mean(candidate.val_bpb))
                      if len(base) and len(cand) else math.nan, t, p, t_rule, p_rule, margin_nats, alpha)


def _pm(xs: list[float], spec: str) -> str:
    if not xs:
        return "—"
    s = _std(xs)
    return f"{_mean(xs):{spec}}" + (f" ± {s:{spec}}" if s is not None else "")


def short_keys(keys: list[str]) -> dict[str, str]:
    """Configuration keys without the overrides they all share (what tells them apart), for tables."""
    if len(keys) == 1:
        return {keys[0]: "(all jobs)"}
    common = set.intersection(*(set(k.split()) for k in keys)) if keys else set()
    return {k: " ".join(compact_override(o) for o in k.split() if o not in common) or "(all)" for k in keys}


def config_table(configs: list[ConfigStats]) -> str:
    """Markdown: configuration, n, submitted val_bpb and val_loss mean ± std (and which score), mean bytes_total,
    failed jobs."""
    short = short_keys([c.key for c in configs])
    lines = ["| configuration | n | val_bpb | val_loss | score | bytes_total | failed |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for c in configs:
        lines.append(f"| {short[c.key]} | {c.n} | {_pm(c.val_bpb, '.5f')} | {_pm(c.val_loss, '.5f')} | {c.score} | "
                     f"{fmt(_mean(c.bytes_total), ',.0f')} | {c.n_failed} |")
    return "\n".join(lines)


def comparison_table(comparisons: list[Comparison], labels: dict[str, str] | None = None) -> str:
    """Markdown: improvement over the baseline in nats and bpb, Welch t and p-values, the record rule.

    `labels` maps configuration keys to what the first column shows (default: the key)."""
    if not comparisons:
        return "(no comparison)"
    margin, alpha = comparisons[0].margin_nats, comparisons[0].alpha
    lines = [f"| configuration | n | Δ val_loss (nats) | Δ val_bpb | Welch t | p (two-sided) | "
             f"p (Δ > {margin} nats, one-sided) | record rule (p < {alpha}) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in comparisons:
        verdict = "**meets**" if c.meets_rule else ("no" if c.p_rule is not None else "n/a (need ≥ 2 runs each)")
        shown = (labels or {}).get(c.candidate) or c.candidate or "(defaults)"
        lines.append(f"| {shown} | {c.n_candidate} vs {c.n_baseline} | {c.delta_nats:+.5f} | "
                     f"{c.delta_bpb:+.5f} | {fmt(c.t, '.3f')} | {fmt(c.p_two_sided, '.3g')} | "
                     f"{fmt(c.p_rule, '.3g')} | {verdict} |")
    return "\n".join(lines)
