"""golf.bench.presets: the data it prepares per tokenizer variant, its refusals and its table (the runs themselves
are the preset end-to-end tests of tests/test_presets.py)."""

from __future__ import annotations

import json
from pathlib import Path

from golf.bench.presets import PresetRow, ensure_data, format_table, main, presets
from golf.data.shards import read_header


def test_every_preset_but_smoke_is_benchmarked():
    names = presets()
    assert "smoke" not in names and {"baseline", "record_0409_sp8192_recur", "record_0427_sota"} <= set(names)


def test_an_sp8192_preset_gets_its_own_tokenizer_and_shards(tmp_path):
    assert ensure_data("record_0409_sp8192_recur", tmp_path) is None
    tok = tmp_path / "tokenizers" / "fineweb_8192_bpe.model"
    assert tok.is_symlink() and tok.resolve().name == "fineweb_8192_bpe.model"
    dataset = tmp_path / "datasets" / "fineweb10B_sp8192"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["vocab_size"] == 8192 and manifest["num_val_docs"] == 50
    val = sorted(dataset.glob("fineweb_val_*.bin"))
    assert val and sum(read_header(p) for p in val) == manifest["stats"]["tokens_val"]
    first = val[0].stat().st_mtime_ns
    assert ensure_data("record_0409_sp8192_recur", tmp_path) is None and val[0].stat().st_mtime_ns == first  # kept


def test_an_unknown_preset_is_one_line(capsys):
    assert main(["no_such_preset"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unknown preset(s) no_such_preset; known: ")


def test_the_table_has_a_row_per_preset_and_names_what_was_skipped():
    row = PresetRow("baseline", 1_168_420, 40, 27.1, 3.10497, 3.10521, 0.00023, 866_489, 27_177, 32_768, 44.8)
    table = format_table([row], {"record_0427_sota": "tokenizer x.model is in neither a or b"}).splitlines()
    assert table[2] == ("| `baseline` | 1,168,420 | 40 | 27.1 | 3.1050 → 3.1052 | +0.0002 | 866,489 | 27,177 | 45 |")
    assert table[3] == "| `record_0427_sota` | skipped: tokenizer x.model is in neither a or b |"


def test_the_throughput_bench_falls_back_to_the_prepared_sample(tmp_path, monkeypatch):
    """golf.bench.train (and preflight --measure) with no shards under the data root: the shared sample is
    prepared once under ~/.cache/golf/bench_data, through the presets bench's preparation."""
    import os

    from golf.bench.train import ensure_bench_data

    monkeypatch.setenv("GOLF_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ensure_bench_data()
    root = Path(os.environ["GOLF_DATA_DIR"])
    assert root == tmp_path / "home" / ".cache" / "golf" / "bench_data"
    assert list((root / "datasets" / "fineweb10B_sp1024").glob("fineweb_val_*.bin"))
    assert (root / "tokenizers" / "fineweb_1024_bpe.model").is_file()
