"""eval.gap=standard: export measures the quantization gap on standard windows (the records' `diagnostic
pre-quantization` / `diagnostic quantized` pair) and scores the artifact with eval.mode once, not twice."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

import golf.eval.sliding as sliding
from golf.eval.config import EvalConfig
from golf.export_run import export_run
from golf.quant.config import BudgetConfig
from golf.record import submission_code_bytes
from golf.runcfg import run_eval_settings

SLIDING = EvalConfig(mode="sliding", stride=64, batch_tokens=16384, max_tokens=4096)


def _export(run, eval_cfg, name):
    return export_run(run, None, BudgetConfig(), eval_cfg, torch.device("cpu"), out=run / f"{name}.golf",
                      code_bytes=submission_code_bytes)


def test_gap_standard_runs_the_mode_once_and_scores_the_same_artifact(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    calls = []
    score = sliding.score
    monkeypatch.setattr(sliding, "score", lambda *a, **k: calls.append(1) or score(*a, **k))

    by_mode = _export(run, SLIDING, "by_mode")
    assert len(calls) == 2 and "quantized" not in by_mode  # checkpoint and artifact, both sliding
    assert by_mode["pre_quant"]["mode"] == by_mode["roundtrip"]["mode"] == by_mode["gap_mode"] == "sliding"

    calls.clear()
    by_standard = _export(run, dataclasses.replace(SLIDING, gap="standard"), "by_standard")
    assert len(calls) == 1  # the artifact's score only
    assert by_standard["pre_quant"]["mode"] == by_standard["quantized"]["mode"] == by_standard["gap_mode"] == "standard"
    assert by_standard["roundtrip"]["mode"] == "sliding"
    assert by_standard["val_bpb"] == by_mode["val_bpb"]  # the same artifact, the same sliding score
    assert by_standard["quant_gap_bpb"] == by_standard["quantized"]["val_bpb"] - by_standard["pre_quant"]["val_bpb"]

    # The standard pair is what a standard-mode export reports for the checkpoint and the artifact.
    standard = _export(run, dataclasses.replace(SLIDING, mode="standard"), "standard")
    assert by_standard["pre_quant"]["val_bpb"] == standard["pre_quant"]["val_bpb"]
    assert by_standard["quantized"]["val_bpb"] == standard["val_bpb"]
    assert by_standard["quant_gap_bpb"] == standard["quant_gap_bpb"]
    # The round trip's eval time is the sliding score's (what the generated train_gpt.py runs), not the pair's.
    assert by_standard["compliance"]["eval_time_s"].keys() == {"sliding"}


def test_gap_is_checked_and_kept_over_the_runs_eval_settings(tmp_path):
    with pytest.raises(ValueError, match=r"^eval.gap='windows'; allowed: mode, standard$"):
        EvalConfig(gap="windows")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("eval:\n  mode: phased_ttt\n  max_tokens: 0\n")
    cfg, _ = run_eval_settings(tmp_path, EvalConfig(gap="standard"), ["run_dir=x", "eval.gap=standard"])
    assert (cfg.mode, cfg.gap) == ("phased_ttt", "standard")
