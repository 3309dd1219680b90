"""golf.report and golf.sweep.{records,stats} on hand-made run directories (fast; the end-to-end report on a
real sweep is in test_sweeps.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from scipy import stats as sstats

from golf.report import main, write_report
from golf.sweep.records import collect_jobs, read_job, write_status
from golf.sweep.stats import ConfigStats, config_key, group_by_config, welch_compare
from golf.sweep.summary import write_summary


def make_job(root: Path, name: str, overrides: list[str], val_loss: float | None, status: str | None = None,
             bytes_total: int | None = None) -> Path:
    """A job directory as train.py leaves it: .hydra/overrides.yaml, metrics.json, history.jsonl."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if val_loss is not None:
        metrics = {"val_loss": val_loss, "val_bpb": val_loss / 1.7, "params": 1000, "steps": 3, "ms_per_step": 12.5}
        if bytes_total is not None:
            metrics["bytes_total"] = bytes_total
        (job / "metrics.json").write_text(json.dumps(metrics))
        rows = [{"step": s, "train/loss": val_loss + 1.0 / s} for s in (1, 2, 3)]
        (job / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status is not None:
        write_status(job, status, overrides, error="ConfigError: bad" if status == "failed" else "")
    return job


def stats_of(losses: list[float]) -> ConfigStats:
    return ConfigStats("x", val_loss=losses, val_bpb=[v / 1.7 for v in losses])


def test_welch_matches_scipy_and_the_rule_needs_the_margin():
    base = stats_of([3.000, 3.001, 2.999])
    clear = welch_compare(stats_of([2.990, 2.991, 2.989]), base)       # 0.010 nats better, tight
    direct = sstats.ttest_ind(base.val_loss, [2.990, 2.991, 2.989], equal_var=False)
    assert clear.t == pytest.approx(direct.statistic) and clear.p_two_sided == pytest.approx(direct.pvalue)
    assert clear.delta_nats == pytest.approx(0.010) and clear.meets_rule
    # 0.004 nats better with almost no noise: a "significant" difference, but not the 0.005-nat improvement.
    small = welch_compare(stats_of([2.996, 2.9961, 2.9959]), stats_of([3.0, 3.0001, 2.9999]))
    assert small.p_two_sided < 0.01 and small.p_rule > 0.5 and not small.meets_rule
    # 0.006 better but noisy: not shown at p < 0.01.
    noisy = welch_compare(stats_of([2.990, 2.998, 2.994]), base)
    assert noisy.delta_nats == pytest.approx(0.006) and not noisy.meets_rule
    single = welch_compare(stats_of([2.9]), base)
    assert single.p_rule is None and not single.meets_rule


def test_configurations_group_seeds_and_count_failures(tmp_path: Path):
    make_job(tmp_path, "0", ["seed=1", "model.mlp_mult=2"], 3.0)
    make_job(tmp_path, "1", ["seed=2", "model.mlp_mult=2"], 3.2)
    make_job(tmp_path, "2", ["seed=1", "model.mlp_mult=3"], None, status="failed")
    make_job(tmp_path, "3", ["seed=2", "model.mlp_mult=3"], 2.9)
    configs = {c.key: c for c in group_by_config(collect_jobs([tmp_path]))}
    assert set(configs) == {"model.mlp_mult=2", "model.mlp_mult=3"} == {config_key(["model.mlp_mult=2", "seed=9"]),
                                                                        "model.mlp_mult=3"}
    two = configs["model.mlp_mult=2"].to_dict()
    assert (two["n"], two["seeds"], two["val_loss_mean"]) == (2, ["1", "2"], pytest.approx(3.1))
    assert two["val_loss_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert configs["model.mlp_mult=3"].n == 1 and configs["model.mlp_mult=3"].n_failed == 1


def test_job_status_from_files(tmp_path: Path):
    assert read_job(make_job(tmp_path, "done", ["seed=1"], 3.0)).status == "completed"
    assert read_job(make_job(tmp_path, "running", ["seed=2"], None)).status == "incomplete"
    failed = read_job(make_job(tmp_path, "bad", ["seed=3"], None, status="failed"))
    assert (failed.status, failed.error) == ("failed", "ConfigError: bad")
    preempted = make_job(tmp_path, "preempted", ["seed=4"], None, status="completed")
    (preempted / "resume.pt").write_bytes(b"")  # stopped by a signal: a resume point and no metrics.json
    assert read_job(preempted).status == "incomplete"
    summary = write_summary(tmp_path)
    assert (summary["n_completed"], summary["n_failed"], summary["n_incomplete"]) == (1, 1, 2)
    assert "| bad | seed=3 |" in (tmp_path / "summary.md").read_text()


def test_report_against_a_baseline_sweep_from_directories_alone(tmp_path: Path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    for i, loss in enumerate([3.000, 3.002, 2.998]):
        make_job(base, str(i), [f"seed={i}", "sweep=seeds"], loss, "completed", 15_000_000)
    for i, loss in enumerate([2.985, 2.986, 2.984]):
        make_job(cand, str(i), [f"seed={i}", "sweep=seeds"], loss, "completed", 15_900_000)
    report = write_report([cand], tmp_path / "out", baseline_paths=[base])
    (cmp,) = report["comparisons"]
    assert cmp["delta_nats"] == pytest.approx(0.015, abs=1e-9) and cmp["n_baseline"] == 3
    md = report["markdown"]
    assert "Baseline: base from base" in md and "| cand | 3 vs 3 |" in md  # same overrides: named by directory
    assert cmp["meets_rule"] is True and "| **meets** |" in md  # 0.015 nats better, p_rule < 0.01
    assert "## Baseline jobs" in md and "| base/0 |" in md
    noisy = tmp_path / "noisy"
    for i, loss in enumerate([2.990, 3.004, 2.996]):
        make_job(noisy, str(i), [f"seed={i}", "sweep=seeds"], loss, "completed", 15_900_000)
    (miss,) = write_report([noisy], tmp_path / "out2", baseline_paths=[base])["comparisons"]
    assert miss["meets_rule"] is False and "**meets**" not in write_report(
        [noisy], tmp_path / "out3", baseline_paths=[base])["markdown"]
    for name in ("report.md", "report.json", "loss_curves.png", "bpb_vs_bytes.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_baseline_config_inside_one_sweep_and_cli_errors(tmp_path: Path, capsys):
    sweep = tmp_path / "grid"
    for i, (mult, loss) in enumerate([(2, 3.0), (3, 2.9), (2, 3.01), (3, 2.91)]):
        make_job(sweep, str(i), [f"model.mlp_mult={mult}", f"seed={i // 2}"], loss)
    report = write_report([sweep], baseline_config="model.mlp_mult=2")
    (cmp,) = report["comparisons"]
    assert cmp["candidate"] == "model.mlp_mult=3" and cmp["delta_nats"] == pytest.approx(0.1)
    assert main([str(sweep), "--baseline", str(sweep)]) == 2  # two configurations: which one?
    assert "choose one with --baseline-config" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no job directories" in capsys.readouterr().err


def test_report_shows_the_compliance_of_training_export_and_eval(tmp_path: Path):
    from golf.train.compliance import compliance_block

    h100x8 = {"device": "NVIDIA H100", "world_size": 8, "speed_vs_h100": 1.0, "scale": 1.0}
    job = make_job(tmp_path / "sweep", "0", ["seed=0"], 3.0, "completed")
    metrics = json.loads((job / "metrics.json").read_text())
    metrics["compliance"] = compliance_block(h100x8, train_time_s=596.0, calibration_time_s=3.5,
                                             calibration_where="in_training")
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "eval.json").write_text(json.dumps({"compliance": compliance_block(
        h100x8, eval_time_s={"ttt": 640.0}, bytes_total=15_900_000, val_data="score_first_ttt")}))
    report = write_report([tmp_path / "sweep"], tmp_path / "out")
    merged = report["compliance"]["0"]
    assert merged["train_time_s"] == 596.0 and merged["eval_time_s"] == {"ttt": 640.0}
    assert merged["verdicts"]["train_time"] == "pass" and merged["verdicts"]["eval_time:ttt"] == "fail"
    md = report["markdown"]
    assert "## Compliance" in md and "in_training 3.5s" in md and "eval_time:ttt fail" in md
    assert "15,900,000" in md
