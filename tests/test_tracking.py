"""W&B (offline) and run-directory records of a training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, run_golf

from golf.sweep.wandb_records import WandbFileError, iter_records, run_file, run_info, summary_of


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, data_root: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("wandb_run") / "run"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("logger=", "schedule.iterations="))]
    run_golf("train.py", *overrides, "logger=wandb", "schedule.iterations=5", "schedule.train_log_every=1",
             f"hydra.run.dir={run_dir}", data_root=data_root)
    return run_dir


def test_offline_run_summary_holds_val_bpb(wandb_run: Path):
    metrics = json.loads((wandb_run / "metrics.json").read_text())
    summary = summary_of(run_file(wandb_run))
    assert summary["val/bpb"] == pytest.approx(metrics["val_bpb"])
    assert summary["val/loss"] == pytest.approx(metrics["val_loss"])
    assert summary["params"] == metrics["params"] and summary["steps"] == 5
    for key in ("train/loss", "train/lr", "train/tokens_per_s"):
        assert key in summary


def test_offline_run_metadata(wandb_run: Path):
    info = run_info(run_file(wandb_run))
    assert info["group"] == "smoke" and info["job_type"] == "train"
    assert {"model:baseline", "quant:int8", "experiment:smoke"} <= set(info["tags"])
    assert info["config"]["model.num_layers"] == 2  # resolved config, flattened
    assert "git_sha" in info["config"]


def test_history_and_run_dir_contents(wandb_run: Path):
    lines = [json.loads(line) for line in (wandb_run / "history.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in lines if "train/loss" in r]
    assert train_steps == [1, 2, 3, 4, 5]
    assert (wandb_run / ".hydra" / "config.yaml").is_file() and (wandb_run / "train_rank0.log").is_file()


def test_corrupt_wandb_file_is_reported(tmp_path: Path):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a wandb file")
    with pytest.raises(WandbFileError, match="run-x.wandb"):
        list(iter_records(bad))
