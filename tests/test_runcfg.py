"""golf.runcfg: export and eval keep a run's own eval and quant settings, with the command line's keys on top."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from golf.eval.config import EvalConfig
from golf.preflight.compose import compose_train_config
from golf.quant.config import QuantConfigError
from golf.runcfg import command_line_paths, overlay, run_eval_settings


def _run_with_eval(tmp_path: Path, **eval_values) -> Path:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"eval": eval_values}))
    return tmp_path


def test_command_line_paths_are_the_keys_below_the_group():
    overrides = ["run_dir=x", "eval.max_tokens=4096", "+eval.ttt.epochs=1", "quant.codec=lzma", "evaluation=1"]
    assert command_line_paths(overrides, "eval") == ["max_tokens", "ttt.epochs"]
    assert command_line_paths(overrides, "quant") == ["codec"]
    assert command_line_paths(["eval=sliding", "eval.stride=32"], "eval") is None  # the group itself
    assert command_line_paths(["run_dir=x"], "eval") == []


def test_an_eval_key_on_the_command_line_keeps_the_runs_mode(tmp_path):
    """`eval.py path=<sliding run> eval.max_tokens=4096` scores sliding windows on 4,096 tokens (it used to
    drop the run's whole eval group and score standard windows)."""
    run = _run_with_eval(tmp_path, mode="sliding", stride=64, batch_tokens=16384, max_tokens=0)
    given = dataclasses.replace(EvalConfig(), max_tokens=4096)
    cfg, where = run_eval_settings(run, given, ["path=x", "eval.max_tokens=4096"])
    assert (cfg.mode, cfg.stride, cfg.batch_tokens, cfg.max_tokens) == ("sliding", 64, 16384, 4096)
    assert where.endswith("with eval.max_tokens from the command line")


def test_the_runs_eval_settings_without_overrides_and_the_command_lines_group_with_one(tmp_path):
    run = _run_with_eval(tmp_path, mode="sliding", stride=64)
    cfg, where = run_eval_settings(run, EvalConfig(), ["path=x"])
    assert (cfg.mode, cfg.stride) == ("sliding", 64) and "override with eval.*" in where
    given = dataclasses.replace(EvalConfig(), mode="standard")
    assert run_eval_settings(run, given, ["eval=standard"]) == (given, "eval settings from the command line")
    cfg, where = run_eval_settings(tmp_path / "elsewhere", given, ["eval.max_tokens=1"])
    assert cfg is given and "the run saved no config" in where


def test_a_quant_key_changes_only_that_key_of_the_runs_quant_settings():
    run = compose_train_config(["experiment=pr374_gptq_lite"]).quant
    given = compose_train_config(["experiment=smoke", "quant.codec=lzma", "quant.level=9"]).quant  # export.py's
    out = overlay(run, given, ["codec", "level"])
    assert (out.codec, out.level) == ("lzma", 9) and out.scheme == run.scheme == "mixed" and out.groups == run.groups
    assert given.scheme != run.scheme  # replacing the group (the old behaviour) would export another scheme


def test_an_overlay_is_checked_like_the_schema():
    """The run's zstd level 22 with the command line's lzma is refused with the key, as a composed config is."""
    run = compose_train_config(["experiment=pr374_gptq_lite"]).quant
    given = compose_train_config(["experiment=smoke", "quant.codec=lzma"]).quant
    with pytest.raises(QuantConfigError, match=r"quant.level=22 is not an int in \[0, 9\] \(codec 'lzma'\)"):
        overlay(run, given, ["codec"])


def test_export_refuses_a_bad_quant_mix_in_one_line_before_any_work(tiny_run, data_root, tmp_path):
    """The run's zstd-22 with `quant.codec=lzma`: one line naming the key, before W&B starts or a file is written."""
    import shutil

    from conftest import run_golf

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    saved = run / ".hydra" / "config.yaml"
    config = OmegaConf.load(saved)
    config.quant.codec, config.quant.level = "zstd", 22
    OmegaConf.save(config, saved)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    proc = run_golf("export.py", f"run_dir={run}", "quant.codec=lzma", data_root=data_root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: quant.level=22 is not an int in [0, 9] (codec 'lzma')"
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # no wandb/, no artifact, no log
