"""Train shards are checked like val shards, all at start-up; faults that hung or crashed are one line (#13)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from golf.bench.fault_inputs import shard_bytes
from golf.data.loader import DistributedTokenLoader, TokenStream
from golf.data.shards import ShardError, read_shard


@pytest.fixture(scope="module")
def tokens(sp1024_shards: Path) -> np.ndarray:
    return read_shard(sp1024_shards / "fineweb_train_000000.bin")[:20_000]


@pytest.fixture(autouse=True)
def no_hang():
    """A case that runs over 20 s fails instead of spinning (the 0-token shard used to loop forever)."""
    def boom(*_):
        raise TimeoutError("hung")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _shards(d: Path, *bodies: bytes | None) -> str:
    for i, b in enumerate(bodies):
        p = d / f"fineweb_train_{i:06d}.bin"
        p.mkdir() if b is None else p.write_bytes(b)
    return str(d / "fineweb_train_*.bin")


def test_zero_token_train_shard_is_refused_not_spun_on(tmp_path: Path):
    with pytest.raises(ShardError, match="fineweb_train_000000.bin: holds 0 tokens"):
        TokenStream(_shards(tmp_path, shard_bytes([])))


def test_every_train_header_is_checked_at_start_up(tmp_path: Path, tokens):
    pattern = _shards(tmp_path, shard_bytes(tokens), shard_bytes(tokens, magic=5))
    with pytest.raises(ShardError, match="fineweb_train_000001.bin: bad magic 5"):
        TokenStream(pattern)  # before the stream ever reaches shard 2


def test_directory_named_like_a_shard(tmp_path: Path, tokens):
    with pytest.raises(ShardError, match="fineweb_train_000001.bin: not a regular file"):
        TokenStream(_shards(tmp_path, shard_bytes(tokens), None))


def test_train_token_ids_are_checked_against_the_vocabulary(tmp_path: Path, tokens):
    bad = tokens.copy()
    bad[777] = 1024 + 9
    loader = None
    with pytest.raises(ShardError, match="token id 1033 >= vocab_size 1024 \\(first bad id at position 777\\)"):
        loader = DistributedTokenLoader(_shards(tmp_path, shard_bytes(bad)), 0, 1, torch.device("cpu"),
                                        vocab_size=1024)
    assert loader is None


@pytest.mark.parametrize("kind", ["doc_packing", "shuffled", "coprime"])
def test_every_train_loader_checks_token_ids_against_the_vocabulary(tmp_path: Path, tokens, kind):
    """The record loaders (memory-mapped or packed) refuse an id >= vocab_size with one line, like the sequential
    loader, instead of an IndexError in the embedding (a device-side assert on CUDA)."""
    from golf.data.loader import build_train_loader

    bad = tokens[:8192].copy()
    bad[777] = 1024 + 9
    pattern = _shards(tmp_path, shard_bytes(bad))
    with pytest.raises(ShardError, match="token id 1033 >= vocab_size 1024 \\(first bad id at position 777\\)"):
        loader = build_train_loader(kind, pattern, 0, 1, torch.device("cpu"), 128, vocab_size=1024)
        loader.next_batch(1024, 128, 1)
    (tmp_path / "ok").mkdir()
    good = build_train_loader(kind, _shards(tmp_path / "ok", shard_bytes(tokens[:8192].copy())), 0, 1,
                              torch.device("cpu"), 128, vocab_size=1024)
    x, y = good.next_batch(1024, 128, 1)
    assert int(x.max()) < 1024 and int(y.max()) < 1024
