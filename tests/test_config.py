"""Composition and validation of the Hydra configs: every error names the key and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from golf.config import EvalRunConfig, ExportRunConfig, register_configs, to_typed
from golf.errors import ConfigError
from golf.train.config import TrainRunConfig
from golf.train.context import check_vocab, grad_accum_steps_for

REPO = Path(__file__).resolve().parents[1]
register_configs()


def typed(overrides: list[str], name: str = "train", schema=TrainRunConfig):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return to_typed(compose(name, overrides=overrides), schema)


def test_default_config_is_the_official_baseline():
    cfg = typed([])
    m, o, s, t = cfg.model, cfg.optim, cfg.schedule, cfg.trainer
    assert (m.num_layers, m.model_dim, m.num_heads, m.num_kv_heads, m.mlp_mult) == (9, 512, 8, 4, 2.0)
    assert (m.rope_base, m.qk_gain_init, m.logit_softcap, m.tied_embed_init_std) == (10000.0, 1.5, 30.0, 0.005)
    assert (o.matrix_lr, o.scalar_lr, o.tied_embed_lr, o.beta1, o.beta2, o.adam_eps) == (0.04, 0.04, 0.05, 0.9, 0.95, 1e-8)
    assert (s.iterations, s.warmdown_iters, s.warmup_steps, s.max_wallclock_seconds) == (20000, 1200, 20, 600.0)
    assert (t.train_batch_tokens, t.train_seq_len, t.grad_accum_base) == (524288, 1024, 8)
    assert cfg.seed == 1337 and cfg.quant.scheme == "int8" and cfg.budget.target_bytes == 16_000_000


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes(name):
    assert typed([f"experiment={name}"]).experiment_name == name


@pytest.mark.parametrize(("override", "message"), [
    ("+model.modle_dim=3", "unknown config key 'model.modle_dim'; allowed here: .*model_dim"),
    ("+typo=1", "unknown config key 'typo'; allowed here: averaging, budget, data"),
    ("+optim.lr=0.1", "unknown config key 'optim.lr'"),
    ("model.num_heads=7", "model.model_dim=512 must be divisible by model.num_heads=7"),
    ("model.num_kv_heads=3", "model.num_heads=8 must be divisible by model.num_kv_heads=3"),
    ("model.attention_backend=xformers", "model.attention_backend='xformers'; allowed: auto, sdpa, fa2, fa3"),
    ("trainer.device=tpu", "trainer.device='tpu'; allowed: auto, cpu, cuda"),
    ("logger.name=mlflow", "logger.name='mlflow'; allowed: wandb, none"),
    ("optim.muon_momentum=1.5", "optim.muon_momentum=1.5"),
])
def test_invalid_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        typed([override])


def test_missing_required_value():
    with pytest.raises(ConfigError, match="missing required config value 'run_dir'"):
        typed([], "export", ExportRunConfig)
    assert typed(["path=x"], "eval", EvalRunConfig).path == "x"


def test_batch_geometry_rule():
    cfg = typed([])
    assert grad_accum_steps_for(cfg, 1) == 8 and grad_accum_steps_for(cfg, 8) == 1
    with pytest.raises(ConfigError, match="grad_accum_base=8 must be divisible by world_size=3"):
        grad_accum_steps_for(cfg, 3)
    bad = typed(["trainer.train_batch_tokens=524800"])
    with pytest.raises(ConfigError, match="train_batch_tokens=524800 must be divisible by world_size x grad_accum"):
        grad_accum_steps_for(bad, 2)


def test_vocab_must_match_tokenizer(data_root, monkeypatch):
    monkeypatch.setenv("GOLF_DATA_DIR", str(data_root))
    check_vocab(typed([]))
    with pytest.raises(ConfigError, match=r"model.vocab_size=4096 does not match the tokenizer's vocab_size=1024"):
        check_vocab(typed(["model.vocab_size=4096"]))


def test_cfg_job_prints_resolved_config():
    out = subprocess.run([sys.executable, "train.py", "experiment=smoke", "--cfg", "job", "--resolve"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={"GOLF_DATA_DIR": "/data/x", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert "num_layers: 4" in out.stdout and "root: /data/x" in out.stdout


def test_bad_override_exits_nonzero_and_leaves_no_run_dir(data_root, tmp_path):
    from conftest import run_golf

    run_dir = tmp_path / "run"
    proc = run_golf("train.py", "experiment=smoke", "logger=none", "+model.modle_dim=3", f"hydra.run.dir={run_dir}",
                    data_root=data_root, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown config key 'model.modle_dim'")
    assert not run_dir.exists()
