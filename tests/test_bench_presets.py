"""golf.bench.presets: the data it prepares per tokenizer variant, its refusals and its table (the runs themselves
are the preset end-to-end tests of tests/test_presets.py)."""

from __future__ import annotations

import json

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
