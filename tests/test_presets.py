"""Every experiment preset: full-scale parameter count, estimated artifact bytes, and an end-to-end run at
cpu_tiny scale (train -> export -> eval) on the FineWeb sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_golf
from hydra import compose, initialize_config_dir

from golf.config import register_configs, to_typed
from golf.model import count_params_for
from golf.quant.estimate import estimate_artifact_bytes
from golf.record import submission_code_bytes
from golf.train.config import TrainRunConfig

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
register_configs()

# Full-scale parameter counts. Published: baseline 17,059,912 (official log), smeargate_pr65 22,368,840
# (PR #65), pr374_gptq_lite 26,993,756 (record 2026-03-22 log); the others are golf's count of the seed's
# architecture (11L MLP 3x; 3 blocks x 3 with bigram + factored embedding).
PARAMS = {
    "baseline": 17_059_912, "smoke": 2_101_776, "nanoforge_int8": 17_059_912,
    "nanoforge_int6_ptq": 26_501_720, "nanoforge_int6_qat": 26_501_720, "depth_recurrent": 6_365_720,
    "pr374_gptq_lite": 26_993_756, "smeargate_pr65": 22_368_840, "record_0322_gptq_lite_ema": 26_993_756,
    "record_0321_xsa_partialrope": 26_829_913, "record_0409_sp8192_recur": 35_944_536,
    "record_0329_full_gptq": 27_038_812, "record_0323_legal_ttt": 26_928_220,
    "record_0427_sota": 35_945_671,  # the record's log (tests/test_record_0427.py checks it against the file)
}
# Presets whose published artifact fits but whose Gaussian-noise estimate (an upper bound for int6 row-max /
# clip-search codes, see golf/quant/estimate.py) does not: checked against that bound instead.
# record_0427_sota: the Gaussian estimate (brotli-11 for pergroup, no GPTQ) is 16,194,260 + code; the record
# published 15,901,919 (3-seed mean) with GPTQ + pergroup lrzip on trained weights.
# smeargate_pr65 keeps the embedding and bigram table fp16 as the record does: its model estimate (15.91 MB) is
# above the record's measured 15,817,180 bytes, and with golf's code (~121 KB) the estimate crosses 16 MB.
ESTIMATE_UPPER_BOUND_ONLY = {"nanoforge_int6_ptq", "nanoforge_int6_qat", "pr374_gptq_lite", "record_0427_sota",
                             "record_0322_gptq_lite_ema", "smeargate_pr65", "record_0321_xsa_partialrope",
                             "record_0329_full_gptq", "record_0323_legal_ttt"}


def preset(name: str, *overrides: str) -> TrainRunConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return to_typed(compose("train", overrides=[f"experiment={name}", *overrides]), TrainRunConfig)


def test_every_preset_has_a_count():
    assert set(PRESETS) == set(PARAMS)


@pytest.mark.parametrize("name", PRESETS)
def test_full_scale_parameter_count(name):
    assert count_params_for(preset(name).model) == PARAMS[name]


def test_estimate_matches_the_published_baseline_artifact():
    cfg = preset("baseline")
    published = 15_815_847  # records/track_10min_16mb/2026-03-17_NaiveBaseline: int8+zlib model bytes
    assert abs(estimate_artifact_bytes(cfg.model, cfg.quant) - published) / published < 0.02


# Record 04-09's own model is 15,976,325 bytes (log, seed 42) next to 16,594 bytes of lzma-wrapped code; golf's
# generated train_gpt.py (~37 KB) does not fit beside a model that size. Kept faithful (the preset is the record), and the
# overflow is asserted below so it is seen, not hidden.
OVER_BUDGET_WITH_GOLF_CODE = {"record_0409_sp8192_recur"}


@pytest.mark.parametrize("name", sorted(OVER_BUDGET_WITH_GOLF_CODE))
def test_record_model_plus_golf_code_is_over_budget(name):
    cfg = preset(name)
    assert 15_976_325 + submission_code_bytes(cfg) > cfg.budget.target_bytes


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in ESTIMATE_UPPER_BOUND_ONLY | OVER_BUDGET_WITH_GOLF_CODE])
def test_estimated_artifact_fits_the_budget(name):
    cfg = preset(name)
    code_bytes = submission_code_bytes(cfg)
    assert estimate_artifact_bytes(cfg.model, cfg.quant) + code_bytes < cfg.budget.target_bytes


# The shared test data root holds sp1024 shards only; sp8192 presets are checked by their record oracle instead.
SP8192_PRESETS = {"record_0409_sp8192_recur", "record_0427_sota"}  # (0427: CaseOps sp8192 data)


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PRESETS if p != "smoke" and p not in SP8192_PRESETS])
def test_preset_runs_end_to_end_at_cpu_tiny(name, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    tiny = ["scale=cpu_tiny", "logger=none", "schedule.iterations=6", "eval.max_tokens=4096"]
    run_golf("train.py", f"experiment={name}", *tiny, f"hydra.run.dir={run}", data_root=data_root)
    run_golf("export.py", f"run_dir={run}", "logger=none", "eval.max_tokens=4096", data_root=data_root)
    report = json.loads((run / "export.json").read_text())
    assert report["fits"] and abs(report["quant_gap_bpb"]) < 0.1
    run_golf("eval.py", f"path={run}", "logger=none", "eval.max_tokens=4096", data_root=data_root)
    assert json.loads((run / "eval.json").read_text())["kind"] == "artifact"
