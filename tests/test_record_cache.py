"""The on-disk memo of generated submissions (golf.record.cache): what it returns is what generation gives, any
edit of golf changes its key, and a bad or unwritable cache never fails a build."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from record_helpers import preset

from golf.record import submission_config
from golf.record.bundle import GOLF_ROOT, _build, build
from golf.record.cache import (
    MAX_ENTRIES,
    _prune,
    bundle_key,
    cache_dir,
    load_entry,
    sources_digest,
    store_entry,
)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(config JSON, the generated bundle's fields, its entry file) for the tiny baseline, generated once into a
    fresh cache folder."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLF_CACHE_DIR", str(folder))
        _build.cache_clear()
        config_json = json.dumps(submission_config(preset("baseline")), sort_keys=True)
        fields = asdict(build(json.loads(config_json)))
        _build.cache_clear()
        yield config_json, fields, folder / "bundles" / f"{bundle_key(config_json, GOLF_ROOT)}.json"
    _build.cache_clear()


def test_a_stored_bundle_is_the_generated_one(stored, monkeypatch):
    config_json, fields, entry = stored
    assert entry.is_file()
    monkeypatch.setenv("GOLF_CACHE_DIR", str(entry.parents[1]))
    assert load_entry(bundle_key(config_json, GOLF_ROOT)) == fields
    assert asdict(build(json.loads(config_json))) == fields
    _build.cache_clear()


def _damage(entry: Path, how: str) -> None:
    data = json.loads(entry.read_text())
    if how == "truncated":
        entry.write_text(entry.read_text()[:1000])
    elif how == "not_json":
        entry.write_bytes(b"\x80\x04\x95 pickle bytes are never loaded")
    elif how == "other_key":
        entry.write_text(json.dumps({**data, "key": "0" * 64, "shipped": "print('not this')"}))
    elif how == "missing_field":
        del data["flat_names"]
        entry.write_text(json.dumps(data))
    else:
        entry.write_text(json.dumps({**data, "modules": "golf.model"}))


@pytest.mark.parametrize("how", ["truncated", "not_json", "other_key", "missing_field", "wrong_type"])
def test_a_damaged_entry_is_ignored(stored, tmp_path: Path, how: str):
    config_json, _, entry = stored
    copy = tmp_path / "bundles" / entry.name
    copy.parent.mkdir()
    shutil.copy(entry, copy)
    _damage(copy, how)
    assert load_entry(bundle_key(config_json, GOLF_ROOT), {"GOLF_CACHE_DIR": str(tmp_path)}) is None


def test_a_damaged_entry_is_regenerated_and_replaced(stored, tmp_path: Path, monkeypatch):
    config_json, fields, entry = stored
    copy = tmp_path / "bundles" / entry.name
    copy.parent.mkdir()
    shutil.copy(entry, copy)
    _damage(copy, "other_key")
    monkeypatch.setenv("GOLF_CACHE_DIR", str(tmp_path))
    _build.cache_clear()
    try:
        assert asdict(build(json.loads(config_json))) == fields
    finally:
        _build.cache_clear()
    assert copy.read_bytes() == entry.read_bytes()


def test_an_unwritable_or_disabled_cache_is_no_failure(stored, tmp_path: Path):
    config_json, fields, _ = stored
    key = bundle_key(config_json, GOLF_ROOT)
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("")
    for env in ({"GOLF_CACHE_DIR": str(blocker)}, {"GOLF_CACHE_DIR": "off"}):
        assert store_entry(key, fields, env) is None
        assert load_entry(key, env) is None
    assert list(tmp_path.iterdir()) == [blocker]


def test_any_edit_of_golf_changes_the_key(tmp_path: Path, stored):
    config_json = stored[0]
    copy = tmp_path / "golf"
    shutil.copytree(GOLF_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = sources_digest(copy)
    assert before == sources_digest(GOLF_ROOT)
    target = copy / "model" / "gpt.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    assert sources_digest(copy) != before
    other = json.dumps({**json.loads(config_json), "seed": 1}, sort_keys=True)
    assert bundle_key(other, GOLF_ROOT) != bundle_key(config_json, GOLF_ROOT)


def test_the_folder_follows_the_environment(tmp_path: Path):
    assert cache_dir({"GOLF_CACHE_DIR": str(tmp_path)}) == tmp_path / "bundles"
    assert cache_dir({"GOLF_CACHE_DIR": "off"}) is None
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "golf" / "bundles"


def test_old_entries_are_pruned(tmp_path: Path):
    env = {"GOLF_CACHE_DIR": str(tmp_path)}
    fields = {"shipped": "", "readable": "", "modules": [], "config": {}, "layout": "flat", "flat_names": {}}
    for i in range(MAX_ENTRIES + 3):
        store_entry(f"{i:064x}", fields, env)
    kept = sorted((tmp_path / "bundles").glob("*.json"))
    assert len(kept) == MAX_ENTRIES
    _prune(tmp_path / "bundles", 2)
    assert len(list((tmp_path / "bundles").glob("*.json"))) == 2
