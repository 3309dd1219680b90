"""Sampling train loaders (golf.data.samplers) give the same batches as the records' own loaders."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from records.oracle import load_record, record_dir

from golf.data.loader import DistributedTokenLoader, build_train_loader
from golf.data.prepare import prepare_shards
from golf.data.samplers import CoprimeStrideLoader, ShuffledSequenceLoader
from golf.train.config import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")
F0329 = "2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816"
F0409 = "2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT"


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory, sp1024_model: Path, fineweb_docs: Path) -> str:
    """Train shards of 60,000 tokens each (the sample's 150 training documents -> several shards)."""
    out = tmp_path_factory.mktemp("shards") / "fineweb10B_sp1024"
    prepare_shards(fineweb_docs, sp1024_model, out, val_docs=50, shard_tokens=60_000)
    return str(out / "fineweb_train_*.bin")


def _record(folder: str, script: str) -> types.ModuleType:
    if not (record_dir(folder) / script).is_file():
        pytest.skip(f"record folder {folder} not found")
    return load_record(folder, script, {})


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_shuffled_loader_is_record_0409s(small_shards, rank, world):
    mod = _record(F0409, "train_gpt.decompressed.py")
    h = types.SimpleNamespace(world_size=world, rank=rank, train_seq_len=1024, train_files=small_shards)
    ref = mod.ShuffledSequenceLoader(h, torch.device("cpu"))
    ours = ShuffledSequenceLoader(small_shards, rank, world, torch.device("cpu"), seq_len=1024)
    assert sum(len(s) for s in ours.starts) < 20 * 32  # so the re-shuffle path runs too
    for _ in range(20):
        rx, ry = ref.next_batch(1024 * 32 * world, 1)
        x, y = ours.next_batch(1024 * 32 * world, 1024, 1)
        assert torch.equal(x, rx) and torch.equal(y, ry)


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_coprime_loader_is_record_0329s(small_shards, rank, world):
    mod = _record(F0329, "train_gpt.py")
    ref = mod.DistributedTokenLoader(small_shards, rank, world, torch.device("cpu"))
    ours = CoprimeStrideLoader(small_shards, rank, world, torch.device("cpu"))
    for _ in range(40):  # 640 sequences > the ~470 blocks of all shards: every cursor restarts
        rx, ry = ref.next_batch(1024 * 16 * world, 1024, 1)
        x, y = ours.next_batch(1024 * 16 * world, 1024, 1)
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_loader_option_selects_the_loader(small_shards):
    def build(kind):
        return build_train_loader(kind, small_shards, 0, 1, torch.device("cpu"), 128)
    assert isinstance(build("coprime"), CoprimeStrideLoader)
    assert isinstance(build("shuffled"), ShuffledSequenceLoader)
    assert isinstance(build("sequential"), DistributedTokenLoader)
    assert TrainerConfig(loader="coprime").loader == "coprime"
    with pytest.raises(ValueError, match="trainer.loader"):
        TrainerConfig(loader="random")


@pytest.mark.parametrize("kind", ["shuffled", "coprime"])
def test_sampling_loaders_resume_where_they_stopped(small_shards, kind):
    """resume_state() after 3 batches + restore() into a fresh loader -> the same next batches (the
    trainer's resume point stores loader.stream.resume_state())."""
    def make():
        if kind == "shuffled":
            return ShuffledSequenceLoader(small_shards, 0, 1, torch.device("cpu"), seq_len=1024)
        return CoprimeStrideLoader(small_shards, 0, 1, torch.device("cpu"))
    a = make()
    for _ in range(3):
        a.next_batch(1024 * 16, 1024, 1)
    state = a.stream.resume_state()
    b = make()
    b.stream.restore(state)
    for _ in range(3):
        assert torch.equal(a.next_batch(1024 * 16, 1024, 1)[0], b.next_batch(1024 * 16, 1024, 1)[0])
