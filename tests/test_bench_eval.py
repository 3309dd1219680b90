"""`python -m golf.bench.eval` runs every preset and reports a rate per mode and rank count (tiny CPU slice)."""

from __future__ import annotations

import pytest

from golf.bench.eval import PRESETS, main, preset, synthetic_val

pytestmark = pytest.mark.usefixtures("one_thread")


def test_presets_load_without_hydra_and_synthetic_documents():
    for name in PRESETS:
        cfg = preset(name, 4096, 256)
        assert cfg.batch_tokens == 4096
    assert preset("ttt", 4096, 256).ttt.chunk_tokens == 256  # score-first chunking shrunk to fit the slice
    assert preset("ttt_lora", 4096, 256).ttt.chunk_tokens == 256 and preset("sliding_docs", 1, None).doc_aware
    val = synthetic_val(4096, 64, 1024)
    assert val.tokens.numel() == 4097 and int((val.tokens == val.bos_id).sum()) >= 2


def test_bench_rows_per_mode_and_rank_count():
    rows = main(["--synthetic", "--ranks", "1", "--modes", "standard,sliding_docs", "--tokens", "512",
                 "--layers", "1", "--dim", "32", "--heads", "2", "--kv-heads", "1", "--seq-len", "64",
                 "--batch-tokens", "512"])
    assert [(r["mode"], r["ranks"]) for r in rows] == [("standard", 1), ("sliding_docs", 1)]
    for r in rows:
        assert r["tokens"] == 512 and r["tokens_per_s"] > 0 and r["rank_tokens"] == [512]
        assert r["data"] == "synthetic" and r["device"] == "cpu"
