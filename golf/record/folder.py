"""The record folder's text: submission.json (the records' schema), README.md (generated from the config),
requirements.txt; and the atomic write of the whole folder."""

from __future__ import annotations

import ast
import datetime
import inspect
import os
import re
import shutil
import statistics
from dataclasses import fields, is_dataclass
from importlib import metadata
from pathlib import Path

import torch

from golf.record.runs import RecordError, SeedRun
from golf.record.wrapper import run_packages
from golf.train.config import TrainRunConfig

TRACK = "10min_16mb"
NON_RECORD_TRACK = "non_record_16mb"
BASE_PACKAGES = ("torch", "numpy", "sentencepiece")
_SOURCE = re.compile(r"(PR #\d+(?:/#\d+)*|#\d{2,4}\b|20\d\d-\d\d-\d\d_[A-Za-z0-9_.+-]+|modded-nanogpt)")


def _mean(xs: list[float]) -> float:
    return float(statistics.fmean(xs))


def _std(xs: list[float]) -> float:
    return float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


def submission_json(runs: list[SeedRun], code_bytes: int, *, author: str, github_id: str, name: str, blurb: str,
                    date: str, track: str, hardware: str, comparison: dict | None) -> dict:
    """submission.json in the records' schema; numbers from the runs' metrics.json / export.json only."""
    loss, bpb = [r.val_loss for r in runs], [r.val_bpb for r in runs]
    arts = [r.artifact_bytes for r in runs]
    out = {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb, "date": date, "track": track,
        "val_loss": round(_mean(loss), 8), "val_bpb": round(_mean(bpb), 8),
        "val_loss_std": round(_std(loss), 8), "val_bpb_std": round(_std(bpb), 8),
        "seeds": [r.seed for r in runs],
        "seed_results": {str(r.seed): {
            "val_loss": round(r.val_loss, 8), "val_bpb": round(r.val_bpb, 8), "artifact_bytes": r.artifact_bytes,
            "steps": int(r.metrics["steps"]), "step_avg_ms": round(float(r.metrics["ms_per_step"]), 2),
            "eval_time_s": round(r.eval_time_s, 2)} for r in runs},
        "artifact_bytes_mean": round(_mean(arts)), "artifact_bytes_max": max(arts),
        "bytes_total": max(arts) + code_bytes, "bytes_code": code_bytes,
        "train_steps_mean": round(_mean([float(r.metrics["steps"]) for r in runs]), 1),
        "step_avg_ms_mean": round(_mean([float(r.metrics["ms_per_step"]) for r in runs]), 2),
        "hardware": hardware, "pytorch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "technique_summary": technique_summary(runs[0].cfg),
    }
    if comparison is not None:
        out.update(comparison)
    return out


def baseline_comparison(runs: list[SeedRun], baseline: list[SeedRun]) -> dict:
    """comparison_baseline_bpb, delta_vs_baseline_bpb/nats and the Welch p-value of the record rule
    (golf.sweep.stats.welch_compare, as golf.report computes it)."""
    from golf.sweep.stats import ConfigStats, welch_compare

    cand = ConfigStats("candidate", val_bpb=[r.val_bpb for r in runs], val_loss=[r.val_loss for r in runs])
    base = ConfigStats("baseline", val_bpb=[r.val_bpb for r in baseline], val_loss=[r.val_loss for r in baseline])
    c = welch_compare(cand, base)
    return {"comparison_baseline_bpb": round(_mean(base.val_bpb), 8), "delta_vs_baseline_bpb": round(c.delta_bpb, 8),
            "delta_vs_baseline_nats": round(c.delta_nats, 8), "welch_p_value": c.p_rule,
            "record_rule": {"margin_nats": c.margin_nats, "alpha": c.alpha, "meets_rule": c.meets_rule}}


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


IGNORED = ("experiment_name", "sweep_name", "seed", "logger.", "data.", "dist.", "export_after", "trainer.device",
           "trainer.checkpoint")
"""Keys that do not describe the submission's technique (names, paths, logging, launch)."""


def differences(cfg: TrainRunConfig) -> list[tuple[str, object, object, str]]:
    """(key, official baseline value, this run's value, source) for every config key that differs from golf's
    defaults (= the official baseline), the source quoted from the key's docstring (PR numbers, record folders)."""
    ours, base = _flat(cfg.to_dict()), _flat(TrainRunConfig().to_dict())
    docs = _field_docs(TrainRunConfig)
    rows = []
    for key, value in ours.items():
        if key.startswith(IGNORED) or base.get(key) == value:
            continue
        doc = docs.get(key, "")
        rows.append((key, base.get(key), value, ", ".join(dict.fromkeys(_SOURCE.findall(doc))) or "golf"))
    return rows


def technique_summary(cfg: TrainRunConfig) -> str:
    rows = differences(cfg)
    return "; ".join(f"{k}={v}" for k, _, v, _ in rows) or "official baseline"


def _field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """'group.field' -> the attribute docstring under the field in the dataclass source."""
    out: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())
    except (OSError, TypeError, SyntaxError):
        return out
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and i + 1 < len(body):
            nxt = body[i + 1]
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                out[f"{prefix}{node.target.id}"] = nxt.value.value
    class_doc = inspect.getdoc(cls) or ""
    for f in fields(cls):
        typ = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if is_dataclass(typ):
            sub = _field_docs(type(typ), f"{prefix}{f.name}.")
            for k, v in sub.items():
                out[k] = v
    if prefix == "":
        out[""] = class_doc
    return out


def requirements(cfg: TrainRunConfig) -> str:
    """The packages the generated file imports, at the versions installed here."""
    names = [*BASE_PACKAGES, *run_packages(cfg.quant.codec, cfg.budget.code_wrapper)]
    lines = []
    for n in names:
        try:
            lines.append(f"{n}=={metadata.version(n)}")
        except metadata.PackageNotFoundError:
            lines.append(n)
    return "\n".join(lines) + "\n"


def readme(runs: list[SeedRun], sub: dict, code_bytes: int, folder_name: str, modules: list[str]) -> str:
    """README.md generated from the config and the runs."""
    cfg = runs[0].cfg
    rows = differences(cfg)
    n = runs[0].metrics.get("world_size", 8)
    lines = [f"# {sub['name']}", "", sub["blurb"] or "", "",
             f"**val_bpb {sub['val_bpb']:.5f}** (std {sub['val_bpb_std']:.5f}, {len(runs)} seed(s)), "
             f"artifact ≤ {sub['artifact_bytes_max']:,} bytes + code {code_bytes:,} bytes = "
             f"{sub['bytes_total']:,} bytes.", "",
             "Generated by `python -m golf.record` from a golf run: `train_gpt.py` is the one file the run's config "
             "needs (golf's own modules, only those this config imports, minified and in the lzma self-extracting "
             "form); `train_gpt.readable.py` is the same program unminified.", "",
             "## What differs from the official baseline", "", "| key | baseline | this run | source |",
             "|---|---|---|---|"]
    lines += [f"| `{k}` | `{b}` | `{v}` | {s} |" for k, b, v, s in rows] or ["| — | | | |"]
    lines += ["", "## Command", "", "```bash",
              "# in the official layout: ./data/datasets/fineweb10B_sp1024, ./data/tokenizers/fineweb_1024_bpe.model",
              f"SEED=<seed> RUN_ID=seed<seed> torchrun --standalone --nproc_per_node={n} train_gpt.py", "```", "",
              "Other official variables override the baked config: DATA_PATH, TOKENIZER_PATH, ITERATIONS, "
              "MAX_WALLCLOCK_SECONDS, VAL_LOSS_EVERY, TRAIN_LOG_EVERY, WARMUP_STEPS, WARMDOWN_ITERS, "
              "TRAIN_BATCH_TOKENS, TRAIN_SEQ_LEN, VAL_BATCH_SIZE.", "",
              "## Results", "", "| seed | val_loss | val_bpb | artifact bytes | steps | step_avg ms | train s | "
              "GPTQ s | eval s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r.export.get("timings_s", {})
        lines.append(f"| {r.seed} | {r.val_loss:.8f} | {r.val_bpb:.8f} | {r.artifact_bytes:,} | {r.metrics['steps']} | "
                     f"{float(r.metrics['ms_per_step']):.2f} | {float(r.metrics['train_time_s']):.1f} | "
                     f"{float(t.get('gptq_hessian_s', 0.0)):.1f} | {r.eval_time_s:.1f} |")
    lines += ["", "## Hardware and time accounting", "",
              f"- Hardware: {sub['hardware']}; PyTorch {sub['pytorch_version']} (CUDA {sub['cuda_version']}).",
              "- Training: the wallclock-capped loop (train s); GPTQ calibration on training data (GPTQ s) counts "
              "toward the 600 s training budget.",
              f"- Evaluation: mode `{cfg.eval.mode}` on the reloaded artifact (eval s, limit 600 s).",
              f"- Code: {len(modules)} golf modules bundled; code bytes = size of `train_gpt.py` as shipped.", ""]
    if "comparison_baseline_bpb" in sub:
        lines += ["## Against the baseline", "",
                  f"Baseline val_bpb {sub['comparison_baseline_bpb']:.5f}; Δ {sub['delta_vs_baseline_bpb']:+.5f} bpb, "
                  f"{sub['delta_vs_baseline_nats']:+.5f} nats; one-sided Welch p = {sub['welch_p_value']} "
                  f"(record rule: > {sub['record_rule']['margin_nats']} nats at p < {sub['record_rule']['alpha']}: "
                  f"{'met' if sub['record_rule']['meets_rule'] else 'not met'}).", ""]
    lines += ["## Files", "", "- `train_gpt.py`, `train_gpt.readable.py`, `submission.json`, `requirements.txt`",
              *[f"- `train_seed{r.seed}.log`" for r in runs], ""]
    return "\n".join(lines)


def write_folder(final: Path, files: dict[str, str | Path]) -> None:
    """Write every file into a temporary sibling, fsync, then rename it to `final` (which must not exist)."""
    if final.exists():
        raise RecordError(f"{final} already exists; choose another --name or --out")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, content in files.items():
            target = tmp / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_text(content, encoding="utf-8")
            with target.open("rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_hardware(runs: list[SeedRun]) -> str:
    """'<world_size>x<device>' from the runs' metrics (name the GPU model with --hardware)."""
    m = runs[0].metrics
    return f"{m.get('world_size', '?')}x{m.get('device', '?')}"


def today() -> str:
    return datetime.date.today().isoformat()
