"""Bad inputs through the real entry points (subprocesses), classified by golf.bench.faults: each must end in
exactly one `error:` line, no traceback, no hang, nothing partial left and nothing earlier lost."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_golf

from golf.bench.fault_cases import Fixtures, build_cases, unmount_all
from golf.bench.faults import format_table, run_case, summarize

# One or two per class, the ones issue #13 reported broken; every other case runs in test_every_fault_case (slow),
# the full set in `python -m golf.bench.faults`.
SELECTED = [
    "data/train_shard_0_tokens", "data/directory_named_like_shard", "artifact/decompression_bomb_1_5GB",
    "artifact/unknown_model_key", "checkpoint/malicious_pickle_eval", "config/eval_without_path",
    "config/bad_config_rerun_into_finished_run", "outputs/failed_eval_keeps_previous_log",
    "outputs/disk_full_during_export",
]


@pytest.fixture(scope="module")
def fault_cases(tiny_run: Path, data_root: Path, tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    run = work / "tiny_run"
    shutil.copytree(tiny_run, run)
    run_golf("export.py", f"run_dir={run}", "logger=none", "roundtrip_eval=false", data_root=data_root)
    cases, skipped = build_cases(Fixtures(data_root, run), work / "cases")
    yield {f"{c.cls}/{c.name}": c for c in cases}, skipped
    unmount_all(work / "cases")


@pytest.mark.parametrize("name", SELECTED)
def test_fault_case_is_one_line_and_loses_nothing(fault_cases, name):
    cases, skipped = fault_cases
    if name not in cases:
        pytest.skip(next(s for s in skipped if s.startswith(name)))
    o = run_case(cases[name], timeout=240)
    assert not o.hang and not o.traceback, o
    assert o.one_line, o
    assert not o.partial and not o.lost and o.other is None, o


@pytest.mark.slow
def test_every_fault_case(fault_cases):
    cases, _ = fault_cases
    rest = [c for key, c in cases.items() if key not in SELECTED]  # the selected ones ran above, one test each
    assert len(rest) + len(SELECTED) >= 60, sorted(cases)
    with ThreadPoolExecutor(2) as pool:  # cases are independent (one folder each), as `golf.bench.faults --jobs 2`
        outcomes = list(pool.map(lambda c: run_case(c, timeout=240), rest))
    rows = summarize(outcomes)
    total = rows[-1]
    assert total["one_line"] == total["cases"] and not any(
        total[k] for k in ("traceback", "hang", "partial", "lost", "other")), format_table(rows)
