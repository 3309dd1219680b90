"""Decompression bounded by the declared size, unused payload bytes, model size limit, torch's pickle advice
never shown (issue #13). Each would be accepted, allocate or print a multi-line hint without its fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from golf.bench.fault_inputs import (
    bomb_artifact,
    join_artifact,
    malicious_checkpoint,
    mutate_artifact,
    split_artifact,
)
from golf.model import build_model
from golf.model.checked import MAX_LOAD_PARAMS, ModelLoadError, load_checked_model
from golf.model.config import ModelConfig
from golf.quant.artifact import ArtifactError, read_artifact, write_artifact
from golf.quant.compress import CodecError, compress, decompress
from golf.quant.config import CODEC_LEVELS, QuantConfig
from golf.quant.int8 import quantize_state_dict
from golf.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from golf.train.config import TrainRunConfig
from golf.train.load import RUN_SECTION, load_for_eval

TINY = ModelConfig(num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    model = build_model(TINY)
    path = tmp_path_factory.mktemp("a") / "model.golf"
    write_artifact(path, quantize_state_dict(model.state_dict(), QuantConfig()), codec="zlib",
                   extra={RUN_SECTION: TrainRunConfig(model=TINY).to_dict()})
    return path


@pytest.mark.parametrize("codec", sorted(CODEC_LEVELS))
def test_decompression_stops_at_the_declared_size(codec: str):
    raw = bytes(4_000_000)
    blob = compress(raw, codec)
    assert decompress(blob, codec, max_bytes=len(raw)) == raw
    with pytest.raises(CodecError, match="inflates beyond the declared 3,999,999 bytes"):
        decompress(blob, codec, max_bytes=len(raw) - 1)


def test_a_small_file_that_inflates_to_1_5_gb_is_refused(artifact: Path, tmp_path: Path):
    bomb = bomb_artifact(artifact, tmp_path / "bomb.golf")
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(ArtifactError, match="inflates beyond the declared"):
        read_artifact(bomb)


def test_payload_bytes_no_tensor_uses_are_refused(artifact: Path, tmp_path: Path):
    bad = mutate_artifact(artifact, tmp_path / "m.golf", lambda m, r: (m, r + bytes(16)))
    with pytest.raises(ArtifactError, match=r"payload bytes \[\d+, \d+\) belong to no tensor"):
        read_artifact(bad)


def test_declared_payload_beyond_the_limit_is_refused_before_decompressing(artifact: Path, tmp_path: Path):
    manifest, raw = split_artifact(artifact.read_bytes())
    manifest["raw_payload_bytes"] = 10**12
    (tmp_path / "m.golf").write_bytes(join_artifact(manifest, raw, fix_sizes=False))
    with pytest.raises(ArtifactError, match="beyond the reader's limit"):
        read_artifact(tmp_path / "m.golf")


def test_model_size_limit_is_checked_before_allocation():
    huge = ModelConfig(num_layers=2, model_dim=2**16, num_heads=8, num_kv_heads=4, vocab_size=64)
    with pytest.raises(ModelLoadError, match=f"beyond the loader's limit of {MAX_LOAD_PARAMS:,}"):
        load_checked_model(huge, {}, "m")  # would be ~100 GB of fp32 if it were allocated
    with pytest.raises(ModelLoadError, match="1000000 layers"):
        load_checked_model(ModelConfig(num_layers=1_000_000), {}, "m")


def test_artifact_weights_that_do_not_fit_are_listed(artifact: Path, tmp_path: Path):
    def wider(m, r):
        m["extra"][RUN_SECTION]["model"]["model_dim"] = 64
        return m, r
    with pytest.raises(ModelLoadError, match="shape mismatch for 'tok_emb.weight': stored \\[64, 32\\]"):
        load_for_eval(mutate_artifact(artifact, tmp_path / "w.golf", wider), torch.device("cpu"))


def test_malicious_checkpoint_is_refused_without_torchs_weights_only_advice(tmp_path: Path):
    src = save_checkpoint(tmp_path / "good.pt", build_model(TINY), [], 0, TrainRunConfig(model=TINY))
    marker = tmp_path / "PWNED"
    bad = malicious_checkpoint(src, tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(bad)
    msg = str(exc.value)
    assert "posix.system" in msg and "refused" in msg and "weights_only" not in msg and "\n" not in msg
    assert not marker.exists() and not os.path.exists("PWNED")


def test_wrong_type_and_missing_key_in_a_stored_config_are_named(tmp_path: Path):
    import json

    path = save_checkpoint(tmp_path / "c.pt", build_model(TINY), [], 0, TrainRunConfig(model=TINY))
    payload = torch.load(path, weights_only=True)
    cfg = json.loads(payload["config_json"])
    cfg["model"]["model_dim"] = "32"
    del cfg["trainer"]["train_seq_len"]
    payload["config_json"] = json.dumps(cfg)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="'model.model_dim' is str '32', expected int; "
                                              "missing key 'trainer.train_seq_len'"):
        load_checkpoint(path)


def test_an_unverified_read_of_a_sound_file_equals_the_verified_one(artifact: Path):
    """verify=False (a record's train_gpt.py reading back its own file) skips only the structural checks."""
    (checked, manifest), (trusted, manifest2) = read_artifact(artifact), read_artifact(artifact, verify=False)
    assert manifest == manifest2 and checked.names == trusted.names and checked.qmeta == trusted.qmeta
    for name in checked.quantized:
        assert torch.equal(checked.quantized[name], trusted.quantized[name])
        assert torch.equal(checked.scales[name], trusted.scales[name])
    assert all(torch.equal(v, trusted.passthrough[k]) for k, v in checked.passthrough.items())


def test_a_record_file_ships_the_payload_checksum_and_not_the_header_checks():
    """A record's train_gpt.py reads back only its own file (verify=False): the payload sha256 ships, the
    magic, version and size checks for files from elsewhere do not."""
    from record_helpers import preset

    from golf.record import submission_bundle

    readable = submission_bundle(preset("baseline")).readable
    assert "payload sha256 differs from the manifest (corrupt file)" in readable
    for gone in ("not a golf artifact", "this golf reads", "-byte payload", "decompressed payload sha256"):
        assert gone not in readable, gone


def test_an_unverified_read_still_checks_the_checksums(artifact: Path, tmp_path: Path):
    data = bytearray(artifact.read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "flip.golf").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_artifact(tmp_path / "flip.golf", verify=False)
