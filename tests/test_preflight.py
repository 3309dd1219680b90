"""Preflight (golf.preflight): byte and step-time estimates against the records' own logs, warnings, the CLI,
and the device line / one-line errors of train.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golf.preflight import format_summary, preflight
from golf.preflight.compose import compose_train_config
from golf.preflight.records import OFFICIAL_BASELINE_MS, RECORDS, RECORDS_DIR, parse_log_text, read_record_log
from golf.preflight.steptime import fit_step_time_model
from golf.quant.estimate import NOISE_STD, estimate_artifact, trained_weight_std

REPO = Path(__file__).resolve().parents[1]
needs_records = pytest.mark.skipif(not RECORDS_DIR.is_dir(), reason=f"record folders absent at {RECORDS_DIR}")


@needs_records
def test_log_parser_reads_the_baselines_logged_bytes_and_step_time():
    log = read_record_log("2026-03-17_NaiveBaseline")
    assert log.model_bytes == 15_815_847 and log.step_ms == pytest.approx(43.54)
    assert log.eval_ms["final_int8_zlib_roundtrip"] == 1401


def test_log_parser_ignores_source_code_lines_and_step_zero():
    text = ('    log0(f"Serialized model int6+{c}: {n} bytes")\nstep:0/9 val_loss:6.9 train_time:0ms step_avg:0.01ms\n'
            "step:5/9 train_loss:2.0 train_time:500ms step_avg:100.00ms\nSerialized model: 999 bytes\n"
            "Serialized model int6+zstd: 1234 bytes\n")
    assert parse_log_text(text) == (1234, 100.0, {})


@needs_records
def test_every_expressible_record_is_estimated_within_3_percent_of_its_logged_bytes():
    from golf.preflight.table import record_rows

    rows = record_rows()
    present = [r for r in RECORDS if (RECORDS_DIR / r.folder).is_dir()]
    assert len(rows) == len(present) >= 3
    for row in rows:
        assert abs(row["bytes_error"]) < 0.03, row
        assert abs(row["ms_error"]) < 0.05, row


def test_heavier_decay_means_smaller_weights_and_a_smaller_artifact():
    assert trained_weight_std(0.04, 0.0) == NOISE_STD
    assert trained_weight_std(0.025, 0.04) < trained_weight_std(0.02, 0.01) <= NOISE_STD
    cfg = compose_train_config(["experiment=smoke", "quant=int6", "quant.keep_float_max_numel=4096",
                                "quant.groups.attn.scale_floor=qmax", "quant.groups.mlp.scale_floor=qmax"])
    big = estimate_artifact(cfg.model, cfg.quant, 0.3).total_bytes
    small = estimate_artifact(cfg.model, cfg.quant, 0.1).total_bytes
    assert small < 0.85 * big


def test_step_time_fit_recovers_a_linear_law():
    m = fit_step_time_model([("a", 1.0, 12.0), ("b", 2.0, 22.0), ("c", 4.0, 42.0)])
    assert m.ms_per_tflop == pytest.approx(10.0) and m.overhead_ms == pytest.approx(2.0)
    with pytest.raises(ValueError):
        fit_step_time_model([])


@needs_records
def test_baseline_preflight_predicts_the_official_step_time_and_fits():
    r = preflight(compose_train_config(["experiment=baseline"]), device="cuda")
    assert r.params == 17_059_912 and r.fits
    assert abs(r.step_ms - OFFICIAL_BASELINE_MS) / OFFICIAL_BASELINE_MS < 0.03
    assert 13_000 < r.steps_in_cap < 14_500
    assert set(r.bytes_by_group) == {"embed", "attn", "mlp", "small"}
    assert sum(r.bytes_by_group.values()) <= r.artifact_bytes
    assert r.warnings == []


def test_a_quant_group_that_matches_no_tensor_is_a_warning():
    # smoke size: every attention matrix has <= 65,536 elements and stays in `small`
    r = preflight(compose_train_config(["experiment=smoke", "quant=int6"]), device="cpu")
    assert any(w.startswith("quant.groups.attn.bits=6 applies to no tensor") for w in r.warnings)
    assert any("eval.max_tokens=65,536" in w for w in r.warnings)
    fixed = preflight(compose_train_config(["experiment=smoke", "quant=int6", "quant.keep_float_max_numel=4096"]),
                      device="cpu")
    assert not any("applies to no tensor" in w for w in fixed.warnings)


def test_full_scale_on_cpu_and_over_budget_are_warnings():
    r = preflight(compose_train_config(["experiment=baseline", "model.num_layers=12", "quant=int8"]), device="cpu")
    assert not r.fits and any(w.startswith("full-scale config on CPU") for w in r.warnings)
    assert any("over budget.target_bytes=16,000,000" in w for w in r.warnings)
    assert "OVER" in format_summary(r)


def test_cli_prints_the_table_and_one_line_summary_in_seconds(tmp_path: Path):
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, "-m", "golf.preflight", "--json", str(out), "experiment=baseline"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("preflight: 17,059,912 params") and "(fits)" in last and "steps in 600 s" in last
    assert out.is_file() and '"fits": true' in out.read_text()
    bad = subprocess.run([sys.executable, "-m", "golf.preflight", "model.num_heads=7"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error:")


def test_measure_without_a_gpu_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --measure would run")
    proc = subprocess.run([sys.executable, "-m", "golf.preflight", "--measure", "experiment=smoke"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --measure needs a CUDA GPU; the estimate above stands"


def test_train_cuda_without_gpu_is_one_line_and_leaves_no_run_dir(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "experiment=smoke", "trainer.device=cuda", "logger=none",
                           f"hydra.run.dir={run}"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GOLF_DATA_DIR": str(tmp_path / "nodata")})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: trainer.device=cuda but CUDA")
    assert not run.exists()


@pytest.mark.parametrize("missing", ["tokenizer", "train shards"])
def test_train_checks_its_data_before_the_preflight(missing, data_root: Path, tmp_path: Path):
    """A missing tokenizer or shard is the run's one error line, printed before the preflight does its work."""
    root = tmp_path / "data"
    shutil.copytree(data_root / "tokenizers", root / "tokenizers")
    shutil.copytree(data_root / "datasets", root / "datasets")
    if missing == "tokenizer":
        shutil.rmtree(root / "tokenizers")
    else:
        for shard in (root / "datasets" / "fineweb10B_sp1024").glob("fineweb_train_*.bin"):
            shard.unlink()
    proc = subprocess.run([sys.executable, "train.py", "experiment=smoke", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GOLF_DATA_DIR": str(root), "OMP_NUM_THREADS": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    want = "error: tokenizer " if missing == "tokenizer" else "error: No files found for pattern: "
    assert proc.stderr.strip().splitlines()[-1].startswith(want), out[-2000:]
    assert "preflight:" not in out


@pytest.mark.slow
def test_measure_runs_the_real_loop_and_reports_ms_per_step(data_root: Path, monkeypatch):
    from golf.preflight.measure import measure

    monkeypatch.setenv("GOLF_DATA_DIR", str(data_root))
    m = measure(["experiment=smoke", "model.num_layers=1", "model.model_dim=64", "model.num_heads=2",
                 "model.num_kv_heads=1", "trainer.train_seq_len=64", "trainer.train_batch_tokens=2048",
                 "schedule.warmup_steps=0", "eval.batch_tokens=4096"], steps=2, allow_cpu=True)
    assert m["steps"] == 2 and m["ms_per_step"] > 0 and m["ms_per_step_8gpu"] == pytest.approx(m["ms_per_step"] / 8)
    assert m["steps_in_cap_8gpu"] == int(600_000 / m["ms_per_step_8gpu"])
