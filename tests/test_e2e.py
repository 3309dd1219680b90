"""The main job end to end on real FineWeb data: prepare -> train -> export -> eval."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from conftest import run_golf


def test_train_export_eval_roundtrip(tiny_run: Path, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"val_loss", "val_bpb", "steps", "train_time_s", "tokens_seen", "params"}
    assert metrics["steps"] == 30 and metrics["tokens_seen"] == 30 * 8192
    # Uniform prediction over 1024 tokens costs ln(1024) nats/token; a trained model must do much better.
    uniform_bpb = math.log2(1024) * metrics["val_tokens"] / metrics["val_bytes"]
    assert math.isfinite(metrics["val_bpb"]) and metrics["val_bpb"] < 0.85 * uniform_bpb

    run_golf("export.py", f"run_dir={run}", "logger=none", "eval.max_tokens=16384", data_root=data_root)
    report = json.loads((run / "export.json").read_text())
    assert report["fits"] and report["bytes_total"] == report["artifact_bytes"] + report["code_bytes"]
    artifact = run / "model.int8+zlib.golf"  # named by scheme + codec
    assert report["artifact"] == str(artifact) and report["artifact_bytes"] == artifact.stat().st_size
    assert abs(report["roundtrip"]["val_bpb"] - report["pre_quant"]["val_bpb"]) < 0.02
    assert abs(report["pre_quant"]["val_bpb"] - metrics["val_bpb"]) < 1e-6  # same tokens, same weights

    proc = run_golf("eval.py", f"path={artifact}", "logger=none", "eval.max_tokens=16384",
                    data_root=data_root)
    scored = json.loads((run / "eval.json").read_text())
    assert scored["kind"] == "artifact" and "val_bpb:" in proc.stdout
    assert abs(scored["val_bpb"] - report["roundtrip"]["val_bpb"]) < 1e-9
    ckpt_eval = run_golf("eval.py", f"path={run / 'checkpoint.pt'}", "logger=none", "eval.max_tokens=16384",
                         f"out={tmp_path / 'ckpt_eval.json'}", data_root=data_root)
    assert ckpt_eval.returncode == 0
    ckpt_scored = json.loads((tmp_path / "ckpt_eval.json").read_text())
    assert abs(ckpt_scored["val_bpb"] - scored["val_bpb"]) < 0.02


def test_over_budget_export_fails_and_writes_nothing(tiny_run: Path, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt_bytes = (run / "checkpoint.pt").read_bytes()
    proc = run_golf("export.py", f"run_dir={run}", "logger=none", "budget.target_bytes=100000",
                    data_root=data_root, check=False)
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "100000" in proc.stderr.replace(",", "")
    assert not list(run.glob("model*.golf")) and not (run / "export.json").exists()
    assert not list(run.glob(".model*.golf*"))
    assert (run / "checkpoint.pt").read_bytes() == ckpt_bytes
