"""Parameter counts: the official baseline, the meta-device counter, and record architectures (conf/model YAMLs)
whose published model_params golf must reproduce exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from golf.config import register_configs, to_typed
from golf.model import ModelConfig, build_model, count_params, count_params_for
from golf.train.config import TrainRunConfig


def tiny(**overrides) -> ModelConfig:
    base = dict(vocab_size=1024, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2)
    return ModelConfig(**{**base, **overrides})


def test_official_and_seed003_parameter_counts():
    assert count_params_for(ModelConfig()) == 17_059_912
    # Seed 003 = PR #65 (2026-03-19_smeargate_orthoinit_muonwd): 9L d512 8H/4KV, MLP 3x, tied, SmearGate,
    # BigramHash 4096x128 -> 512. 21,778,504 (MLP 3x body) + 512 (gate) + 524,288 + 65,536 (bigram).
    seed003 = ModelConfig(mlp_mult=3.0, smear_gate="v1", smear_gate_init=3.0, bigram_buckets=4096, bigram_dim=128,
                          bigram_hash="mul", ortho_init="pr65")
    assert count_params_for(seed003) == 22_368_840
    assert count_params_for(ModelConfig(mlp_mult=3.0)) == 21_778_504


def test_meta_count_equals_built_model():
    cfg = tiny(smear_gate="v2", bigram_buckets=64, bigram_hash="xor", value_embed_dim=16, value_embed_layers=[2, 3],
               attn_gate="dense", skip_gates=True, num_loops=1, loop_start=1, loop_end=2, parallel_start_layer=3,
               ortho_init="pr162")
    assert count_params_for(cfg) == count_params(build_model(cfg))


@pytest.mark.parametrize(("name", "params"), [
    ("baseline", 17_059_912),
    ("smeargate_pr65", 22_368_840),  # seed 003 / PR #65, published
    ("xsa_ve_pr374", 26_993_756),  # 2026-03-22 record log, model_params
    ("loop_parallel_sp8192", 35_945_671),  # 2026-04-27 top record
])
def test_model_yaml_compose_to_published_parameter_counts(name, params):
    register_configs()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=[f"model={name}", "logger=none"]), TrainRunConfig)
    assert count_params_for(cfg.model) == params
