"""golf.preflight.memo: the step-time model is fitted once per golf/conf/record-log state, and a stale or bad
entry is never returned."""

from __future__ import annotations

import shutil

import pytest

from golf.preflight.check import fit_records_step_time
from golf.preflight.memo import KIND, memoised
from golf.preflight.records import RECORDS, RECORDS_DIR

pytestmark = pytest.mark.skipif(not (RECORDS_DIR / RECORDS[0].folder).is_dir(), reason="record folders absent")


@pytest.fixture(scope="module")
def fitted():
    return fit_records_step_time()


def _counting(model):
    calls = []

    def fit():
        calls.append(1)
        return model

    return fit, calls


def test_a_second_process_reads_the_stored_fit(tmp_path, fitted):
    env = {"GOLF_CACHE_DIR": str(tmp_path)}
    fit, calls = _counting(fitted)
    assert memoised(fit, env) == fitted and len(calls) == 1
    assert memoised(fit, env) == fitted and len(calls) == 1  # read back, equal field for field
    assert len(list((tmp_path / KIND).glob("*.json"))) == 1


def test_a_changed_record_log_is_a_new_key(tmp_path, fitted):
    records = tmp_path / "records"
    for rec in RECORDS:
        shutil.copytree(RECORDS_DIR / rec.folder, records / rec.folder)
    env = {"GOLF_CACHE_DIR": str(tmp_path / "cache")}
    fit, calls = _counting(fitted)
    memoised(fit, env, records)
    memoised(fit, env, records)
    assert len(calls) == 1
    log = sorted((records / RECORDS[0].folder).glob("train*.log"))[0]
    log.write_text(log.read_text() + "step:1/1 train_loss:1.0 step_avg:1.00ms\n")
    memoised(fit, env, records)
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["not json", "[]", '{{"key": "{key}", "model": {{}}}}',
                                    '{{"key": "{key}", "model": {{"ms_per_tflop": "1"}}}}'])
def test_a_bad_entry_is_ignored_and_replaced(tmp_path, fitted, damage):
    env = {"GOLF_CACHE_DIR": str(tmp_path)}
    fit, calls = _counting(fitted)
    memoised(fit, env)
    entry = next((tmp_path / KIND).glob("*.json"))
    entry.write_text(damage.format(key=entry.stem))  # under its own key: only the shape is wrong
    assert memoised(fit, env) == fitted and len(calls) == 2
    assert memoised(fit, env) == fitted and len(calls) == 2  # the replacement checks


def test_off_fits_every_time(fitted):
    fit, calls = _counting(fitted)
    memoised(fit, {"GOLF_CACHE_DIR": "off"})
    memoised(fit, {"GOLF_CACHE_DIR": "off"})
    assert len(calls) == 2
