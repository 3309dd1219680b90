"""Checkpoints load without unpickling arbitrary objects; bad files give one-line errors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, run_golf

from golf.model import ModelConfig, build_model
from golf.optim import build_optimizers
from golf.optim.config import OptimConfig
from golf.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from golf.train.config import TrainRunConfig


class _Exploit:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_round_trip(tmp_path: Path):
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    opts = build_optimizers(model, OptimConfig(), True)
    cfg = TrainRunConfig()
    cfg.model.num_layers = 1
    path = save_checkpoint(tmp_path / "c.pt", model, opts, 7, cfg)
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.config == cfg and isinstance(ckpt.config, TrainRunConfig)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model[k], v)
    assert not list(tmp_path.glob("*.tmp"))


def test_arbitrary_objects_are_refused(tmp_path: Path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "golf-checkpoint-v1", "model": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="evil.pt: cannot load checkpoint"):
        load_checkpoint(path)
    assert "arbitrary code ran" not in capsys.readouterr().out
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_truncated_and_foreign_files(tmp_path: Path):
    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    path = save_checkpoint(tmp_path / "c.pt", model, [], 0, TrainRunConfig())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a golf checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_stored_config_from_a_newer_golf_is_one_line(tmp_path: Path):
    """A config key this golf does not know (e.g. written by a newer version) is refused, naming the key."""
    import json

    model = build_model(ModelConfig(num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1))
    path = save_checkpoint(tmp_path / "c.pt", model, [], 0, TrainRunConfig())
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config_json"])
    config["model"]["future_option"] = 1
    payload["config_json"] = json.dumps(config)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown config key 'model.future_option'"):
        load_checkpoint(path)


def test_corrupt_shard_stops_training_with_one_line(data_root: Path, tmp_path: Path):
    root = tmp_path / "root"
    (root / "datasets" / "fineweb10B_sp1024").mkdir(parents=True)
    (root / "tokenizers").symlink_to(data_root / "tokenizers", target_is_directory=True)
    src = data_root / "datasets" / "fineweb10B_sp1024"
    shutil.copy(src / "fineweb_val_000000.bin", root / "datasets" / "fineweb10B_sp1024")
    bad = root / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000000.bin"
    bad.write_bytes((src / "fineweb_train_000000.bin").read_bytes()[:5000])  # truncated
    run_dir = tmp_path / "run"
    proc = run_golf("train.py", *TINY_OVERRIDES, f"hydra.run.dir={run_dir}", data_root=root, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "fineweb_train_000000.bin" in last
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.json").exists()
