"""`python -m golf.record`: the folder it writes from exported seed runs, and its one-line refusals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from record_helpers import data_dir, preset

from golf.export_run import export_run
from golf.record import submission_bundle, submission_code_bytes
from golf.record.__main__ import main, make_record
from golf.record.runs import RecordError, check_limits, find_runs
from golf.train.context import RunContext
from golf.train.run import train


def _exported_run(run_dir: Path, *overrides: str) -> Path:
    cfg = preset("baseline", "schedule.iterations=2", *overrides)
    handler = logging.FileHandler(run_dir.parent / f"{run_dir.name}.log")
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        train(cfg, RunContext(run_dir=run_dir, name=run_dir.name, group="g", tags=[], config=cfg.to_dict()))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    shutil.move(run_dir.parent / f"{run_dir.name}.log", run_dir / "train_rank0.log")
    export_run(run_dir, None, cfg.budget, cfg.eval, torch.device("cpu"), code_bytes=submission_code_bytes)
    return run_dir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_root: Path) -> Path:
    """Two exported seed runs of one tiny baseline config (seeds 1, 2) and one run of another config."""
    work = data_dir(tmp_path_factory.mktemp("record_cli"), data_root)
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        (work / "sweep").mkdir()
        for seed in (1, 2):
            _exported_run(work / "sweep" / str(seed - 1), f"seed={seed}")
        _exported_run(work / "other", "seed=3", "optim.matrix_lr=0.05")
    finally:
        mp.undo()
    return work


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_record_folder_from_a_seed_sweep(sweep: Path, tmp_path: Path):
    final = make_record(sweep / "sweep", tmp_path / "records", name="tiny baseline", author="A. Person",
                        github_id="aperson", blurb="test", date="2026-11-29")
    assert final == tmp_path / "records" / "track_10min_16mb" / "2026-11-29_tiny_baseline"
    names = sorted(p.name for p in final.iterdir())
    assert names == ["README.md", "requirements.txt", "submission.json", "train_gpt.py", "train_gpt.readable.py",
                     "train_seed1.log", "train_seed2.log"]
    runs = find_runs(sweep / "sweep")
    bundle = submission_bundle(runs[0].cfg)
    assert (final / "train_gpt.py").read_text() == bundle.shipped
    sub = json.loads((final / "submission.json").read_text())
    exports = [json.loads((sweep / "sweep" / d / "export.json").read_text()) for d in ("0", "1")]
    assert sub["seeds"] == [1, 2] and sub["bytes_code"] == (final / "train_gpt.py").stat().st_size
    assert sub["seed_results"]["2"]["val_bpb"] == round(exports[1]["val_bpb"], 8)
    assert sub["bytes_total"] == max(e["artifact_bytes"] for e in exports) + sub["bytes_code"]
    assert sub["author"] == "A. Person" and sub["github_id"] == "aperson" and sub["track"] == "10min_16mb"
    for key in ("val_loss_std", "val_bpb_std", "artifact_bytes_mean", "artifact_bytes_max", "train_steps_mean",
                "step_avg_ms_mean", "hardware", "pytorch_version", "cuda_version", "technique_summary"):
        assert key in sub
    text = (final / "README.md").read_text()
    assert "## What differs from the official baseline" in text and "`model.num_layers`" not in text
    assert "`model.model_dim` | `512` | `128`" in text and "torchrun --standalone" in text
    assert (final / "train_seed1.log").read_text() == (sweep / "sweep" / "0" / "train_rank0.log").read_text()
    assert "torch==" in (final / "requirements.txt").read_text()


def test_baseline_comparison(sweep: Path, tmp_path: Path):
    final = make_record(sweep / "sweep", tmp_path, baseline=sweep / "sweep", date="2026-11-29")
    sub = json.loads((final / "submission.json").read_text())
    assert sub["delta_vs_baseline_bpb"] == 0.0 and sub["welch_p_value"] is not None
    assert sub["record_rule"]["meets_rule"] is False


def _refused(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_refuses_mixed_configurations(sweep: Path, tmp_path: Path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(sweep / "sweep" / "0", mixed / "0")
    shutil.copytree(sweep / "other", mixed / "1")
    assert "optim.matrix_lr" in _refused(capsys, str(mixed), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_refuses_a_missing_log(sweep: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(sweep / "sweep" / "0", run)
    (run / "train_rank0.log").unlink()
    assert "no training log" in _refused(capsys, str(run), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_refuses_over_600s_unless_non_record(sweep: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(sweep / "sweep" / "0", run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "train_time_s": 601.0}))
    assert "training took 601.0 s" in _refused(capsys, str(run), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert main([str(run), "--out", str(tmp_path / "out"), "--non-record"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["track_non_record_16mb"]


def test_refuses_over_budget(sweep: Path):
    runs = find_runs(sweep / "sweep")
    code = submission_code_bytes(runs[0].cfg)
    check_limits(runs, code, max(r.artifact_bytes for r in runs) + code, non_record=False)
    with pytest.raises(RecordError, match="over the .*-byte budget"):
        check_limits(runs, code, max(r.artifact_bytes for r in runs) + code - 1, non_record=False)
