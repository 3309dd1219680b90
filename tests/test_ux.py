"""What users read: install choice, one-screen summaries, artifact names, golf.compare, reports ranked by the
submitted score, plots, sweep progress, and the GPU check script's CPU-safe parts (fast, no training)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from golf.compare import artifact_rows, format_rows
from golf.export_run import artifact_name
from golf.model import build_model
from golf.preflight.compose import compose_train_config
from golf.quant.artifact import write_artifact
from golf.quant.int8 import quantize_state_dict
from golf.summary import RunSummary, format_summary
from golf.sweep.plots import plot_bpb_vs_bytes, plot_group_bytes, plot_loss_curves
from golf.sweep.progress import SweepProgress, expected_jobs
from golf.sweep.records import collect_jobs
from golf.sweep.stats import group_by_config
from golf.sweep.summary import build_summary

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _install_tool():
    spec = importlib.util.spec_from_file_location("install_torch", REPO / "tools" / "install_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_install_picks_the_cuda_build_from_the_driver_and_cpu_without_one(monkeypatch, tmp_path: Path):
    tool = _install_tool()
    assert tool.variant_for_driver("580.65.06")[0] == "cu130"
    assert tool.variant_for_driver("570.124.06")[0] == "cu128"
    assert tool.variant_for_driver("550.54.15")[0] == "cu126"
    assert tool.variant_for_driver("470.82")[0] == "cu118"
    assert tool.variant_for_driver("390.1")[0] == "cpu" and tool.variant_for_driver("n/a")[0] == "cpu"
    monkeypatch.delenv("TORCH_VARIANT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on PATH
    assert tool.detect_variant() == ("cpu", "no NVIDIA driver (nvidia-smi not found)")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 565.57.01\n")
    fake.chmod(0o755)
    assert tool.detect_variant()[0] == "cu126"
    monkeypatch.setenv("TORCH_VARIANT", "cu128")
    assert tool.detect_variant() == ("cu128", "TORCH_VARIANT")
    cmds = tool.torch_commands("py", "cpu", "")
    assert "torch==2.13.0+cpu" in cmds[0] and cmds[1][-1].endswith("/whl/cpu")  # CI: local CPU pin first
    assert tool.torch_commands("py", "cu128", "")[0][-1] == "https://download.pytorch.org/whl/cu128"
    assert tool.torch_commands("py", "cu128", "http://mirror/x")[0][-1] == "http://mirror/x"
    deps = tool.golf_dependencies(REPO / "pyproject.toml")
    assert deps and not any(d.startswith("torch") for d in deps) and any(d.startswith("hydra-core") for d in deps)


def test_summary_names_the_tokens_the_score_and_the_budget_verdict():
    text = format_summary(RunSummary("eval", "outputs/r", 2.0727, 1.2244, 65_536, 65_536, "standard", "artifact",
                                     15_815_847, "outputs/r/model.int8+zlib.golf", 200_000, 16_000_000, eval_s=1.4))
    assert "the first 65,536 val tokens (eval.max_tokens)" in text and "artifact; standard" in text
    assert "16,015,847 / 16,000,000 bytes: OVER by 15,847" in text and "model.int8+zlib.golf" in text
    assert len(text.splitlines()) <= 12
    ok = format_summary(RunSummary("train", "outputs/r", 2.0, 1.2, 100, 0, code_bytes=10))
    assert "all 100 val tokens" in ok and "not exported yet: python export.py run_dir=outputs/r" in ok


def test_artifacts_are_named_by_scheme_and_codec():
    def name(*overrides):
        return artifact_name(compose_train_config(["experiment=smoke", *overrides]).quant)

    assert name() == "model.int8+zlib.golf"
    assert name("quant=int6") == "model.int6-rowmax+zstd.golf"
    assert name("quant=gptq_lite_int6") == "model.e8-a6-m6-o6-search+zstd.golf"
    assert name("quant=gptq_int6") != name("quant=sdclip_int6")
    assert len({name(), name("quant=int6"), name("quant=int6", "quant.codec=lzma", "quant.level=9")}) == 3


def _artifact(run: Path, quant_overrides: list[str], val_bpb: float | None, **report_keys) -> Path:
    cfg = compose_train_config(["experiment=smoke", "model.num_layers=1", "model.model_dim=64", "model.num_heads=2",
                                "model.num_kv_heads=1", "quant.keep_float_max_numel=1024", *quant_overrides])
    torch.manual_seed(0)
    state = build_model(cfg.model).state_dict()
    path = run / artifact_name(cfg.quant)
    info = write_artifact(path, quantize_state_dict(state, cfg.quant), codec=cfg.quant.codec, level=cfg.quant.level)
    if val_bpb is not None:
        report = {"scheme": cfg.quant.scheme, "codec": cfg.quant.codec, "level": cfg.quant.level,
                  "artifact_bytes": info.file_bytes, "code_bytes": 1000, "bytes_total": info.file_bytes + 1000,
                  "fits": True, "val_bpb": val_bpb, "quant_gap_bpb": val_bpb - 3.0, "pre_quant": {"val_bpb": 3.0},
                  "budget": {"groups": [{"group": "mlp", "compressed_bytes": 1234},
                                        {"group": "embed", "compressed_bytes": 999}]}, **report_keys}
        path.with_name(path.name + ".export.json").write_text(json.dumps(report))
    return path


def test_compare_tables_every_artifact_best_round_trip_first(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    _artifact(run, [], 3.01)
    _artifact(run, ["quant=int6"], 3.005)
    _artifact(run, ["quant=int6", "quant.codec=lzma", "quant.level=9"], None)  # no report: listed from its manifest
    rows = artifact_rows(run)
    assert [r["artifact"] for r in rows] == ["model.int6-rowmax+zstd.golf", "model.int8+zlib.golf",
                                            "model.int6-rowmax+lzma.golf"]
    assert rows[2]["codec"] == "lzma-9" and rows[2].get("val_bpb") is None
    table = format_rows(rows)
    assert "| model.int8+zlib.golf | int8 | zlib-9 |" in table and "+0.01000" in table
    proc = subprocess.run([sys.executable, "-m", "golf.compare", str(run)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (run / "group_bytes.png").read_bytes()[:8] == PNG and (run / "compare.md").is_file()
    empty = subprocess.run([sys.executable, "-m", "golf.compare", str(tmp_path)], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert empty.returncode == 2 and empty.stderr.startswith("error:") and empty.stderr.count("\n") == 1


def test_compare_names_a_gap_measured_on_standard_windows(tmp_path: Path):
    """eval.gap=standard: the gap column says its windows, so it is not read as the round trip mode's gap."""
    _artifact(tmp_path, [], 2.9, gap_mode="standard", roundtrip={"mode": "phased_ttt"})
    _artifact(tmp_path, ["quant=int6"], 3.01, gap_mode="sliding", roundtrip={"mode": "sliding"})
    table = format_rows(artifact_rows(tmp_path))
    assert "| -0.10000 (standard windows) |" in table and "| +0.01000 |" in table


def _job(root: Path, name: str, overrides: list[str], pre: float, rt: float | None, via_export: bool = False,
         steps: int = 30) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {"val_loss": pre * 1.7, "val_bpb": pre, "params": 1000, "steps": steps, "ms_per_step": 10.0}
    if rt is not None and not via_export:
        metrics.update(roundtrip_val_bpb=rt, roundtrip_val_loss=rt * 1.7, bytes_total=1_500_000)
    if rt is not None and via_export:
        (job / "export.json").write_text(json.dumps({"val_bpb": rt, "val_loss": rt * 1.7, "bytes_total": 1_400_000,
                                                     "artifact_bytes": 1_300_000, "code_bytes": 100_000}))
    (job / "metrics.json").write_text(json.dumps(metrics))
    seed = int(overrides[0].split("=")[1])
    rows = [{"step": s, "train/loss": pre * 1.7 + 3.0 / s + 0.01 * seed} for s in range(1, steps + 1)]
    rows += [{"step": s, "val/loss": pre * 1.7 + 2.5 / s} for s in (10, 20, 30)]
    (job / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["step"])))
    return job


def test_best_job_and_configurations_use_the_round_trip_score(tmp_path: Path):
    # job 0 is best before quantization, job 1 after (what is submitted); job 2 exported with export.py
    _job(tmp_path, "0", ["seed=1", "optim.matrix_lr=0.02"], 3.00, 3.20)
    _job(tmp_path, "1", ["seed=1", "optim.matrix_lr=0.04"], 3.05, 3.06)
    _job(tmp_path, "2", ["seed=2", "optim.matrix_lr=0.04"], 3.04, 3.07, via_export=True)
    summary, md = build_summary(tmp_path)
    assert summary["best"]["job"] == "1" and summary["best"]["score"] == "round trip"
    assert "Best: job 1, val_bpb 3.06000 (round trip)" in md
    assert "| 3.07000 | round trip | 3.04000 |" in md  # job 2: export.json's round trip, pre-quant beside it
    configs = {c.key: c for c in group_by_config(collect_jobs([tmp_path]))}
    lr04 = configs["optim.matrix_lr=0.04"]
    assert lr04.val_bpb == [3.06, 3.07] and lr04.score == "round trip"
    _job(tmp_path, "3", ["seed=3", "optim.matrix_lr=0.02"], 2.9, None)
    assert {c.key: c for c in group_by_config(collect_jobs([tmp_path]))}["optim.matrix_lr=0.02"].score == \
        "pre-quant + round trip"


def test_plots_render_seeds_means_and_the_budget_axis(tmp_path: Path):
    for i, (seed, lr) in enumerate([(1, 0.02), (2, 0.02), (1, 0.04), (2, 0.04)]):
        _job(tmp_path / "sweep", str(i), [f"seed={seed}", f"optim.matrix_lr={lr}"], 3.0 + lr, 3.01 + lr)
    jobs = collect_jobs([tmp_path / "sweep"])
    for fn, name in ((plot_loss_curves, "loss.png"), (plot_bpb_vs_bytes, "bytes.png")):
        data = fn(jobs, tmp_path / name).read_bytes()
        assert data[:8] == PNG and len(data) > 20_000
    bars = plot_group_bytes([{"label": "a", "groups": {"mlp": 9e6, "attn": 4e6}}, {"label": "b", "groups": {"mlp": 8e6}}],
                            tmp_path / "groups.png")
    assert bars.read_bytes()[:8] == PNG


def test_sweep_progress_counts_jobs_and_estimates_the_rest():
    t = iter([0.0, 10.0, 40.0, 45.0]).__next__
    p = SweepProgress(4, clock=t)
    assert p.start() == "sweep: job 1/4 starting; elapsed 0:10"
    assert p.end("completed") == "sweep: job 1/4 completed; elapsed 0:40, ETA 2:00 for 3 more job(s)"
    assert p.start().startswith("sweep: job 2/4 starting; elapsed 0:45")
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": {"optim.matrix_lr": "0.03,0.04,0.05",
                                                             "model.mlp_mult": "2,3"}},
                                      "overrides": {"task": ["model.mlp_mult=2", "seed=1,2", "eval.modes=[a,b]"]}}})
    assert expected_jobs(cfg) == 3 * 1 * 2
    assert expected_jobs(OmegaConf.create({"hydra": {"sweeper": {"n_trials": 40}, "overrides": {"task": []}}})) == 40
    assert expected_jobs(OmegaConf.create({"hydra": {"sweeper": {"params": {"x": "range(1,5)"}},
                                                     "overrides": {"task": []}}})) is None


def test_gpu_check_parses_the_official_log_and_its_arguments(tmp_path: Path):
    from golf.bench.gpu import DEFAULT_OFFICIAL, build_parser, main, parse_official_log

    log = DEFAULT_OFFICIAL.parent / "train.log"
    if not log.is_file():
        pytest.skip(f"{log} absent")
    parsed = parse_official_log(log.read_text())
    assert parsed["step_avg_ms"] == 43.54 and parsed["steps"] == 13_780 and parsed["model_bytes"] == 15_815_847
    assert parsed["roundtrip_val_bpb"] == 1.2244 and parsed["roundtrip_eval_ms"] == 1401
    args = build_parser().parse_args(["--out", str(tmp_path), "--steps", "50", "--budget-s", "100"])
    assert args.steps == 50 and args.budget_s == 100 and args.docs.is_file() and args.tokenizer.is_file()
    assert main(["--out", str(tmp_path), "--docs", str(tmp_path / "missing.jsonl")]) == 2


def test_export_and_eval_runs_join_the_training_runs_wandb_group(tmp_path: Path, monkeypatch):
    from golf.train.config import LoggerConfig
    from golf.train.tracking import Tracker, train_run_link

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = LoggerConfig(name="wandb", mode="offline")
    assert train_run_link(tmp_path) == {}
    train = Tracker(cfg, tmp_path, job_type="train", config={}, name="t", group="seeds_smoke", tags=[])
    train_id = train.run.id
    train.finish()
    link = train_run_link(tmp_path)
    assert link == {"id": train_id, "group": "seeds_smoke", "project": "golf"}
    export = Tracker(cfg, tmp_path, job_type="export", config={"train_run_id": link["id"]}, name="e",
                     group=link["group"], tags=[])
    assert export.run.group == "seeds_smoke" and export.run.config["train_run_id"] == train_id
    export.finish()
    assert train_run_link(tmp_path)["id"] == train_id  # an export run never replaces the link
