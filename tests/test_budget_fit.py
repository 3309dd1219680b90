"""The budget fitter and the extended export on a real trained tiny model (tiny_run): it lands under the target,
prints the allocation, reports bytes per group, GPTQ timings and the quantization gap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_golf

from golf.quant.artifact import write_artifact
from golf.quant.config import BudgetConfig, QuantConfig
from golf.quant.fitter import FitError, choose_allocation, loss_function, measure_options, with_group_bits
from golf.quant.gptq import calibration_batches
from golf.quant.int8 import quantize_state_dict
from golf.train.load import load_for_eval

# The tiny model's matrices are all <= 65,536 elements; a 4,096 threshold puts them in the attn/mlp groups.
SMALL_KEEP = 4096


@pytest.fixture(scope="module")
def tiny_state(tiny_run: Path):
    loaded = load_for_eval(tiny_run / "checkpoint.pt", torch.device("cpu"))
    return loaded, {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}


def test_fitter_recon_metric_respects_limit_and_prefers_precision(tiny_state, tmp_path):
    _, state = tiny_state
    quant = QuantConfig(keep_float_max_numel=SMALL_KEEP, codec="zstd")
    table = measure_options(state, quant, BudgetConfig(fit=True, fit_metric="recon", fit_bits=[16, 8, 6, 4]))
    assert set(table.options) == {"embed", "attn", "mlp"}
    for opts in table.options.values():
        by_bits = {o.bits: o for o in opts}
        assert by_bits[4].bytes < by_bits[6].bytes < by_bits[8].bytes < by_bits[16].bytes
        assert by_bits[16].damage < by_bits[8].damage < by_bits[6].damage < by_bits[4].damage
    roomy = choose_allocation(table, 10**9)
    assert set(roomy.choice.values()) == {16}  # no pressure: the least damage is fp16 everywhere
    smallest = table.fixed_bytes + sum(min(o.bytes for o in v) for v in table.options.values())
    tight = choose_allocation(table, smallest + 2000)
    assert tight.predicted_bytes <= smallest + 2000 and tight.damage > roomy.damage
    with pytest.raises(FitError, match=f"smallest predicted is {smallest:,}"):
        choose_allocation(table, smallest - 1)
    # The per-group prediction is close to the real payload compressed as one stream (export refits on a miss).
    q = quantize_state_dict(state, with_group_bits(quant, tight.choice))
    info = write_artifact(tmp_path / "m.golf", q, codec="zstd", level=None)
    assert abs(info.compressed_bytes - tight.predicted_bytes) < 0.1 * tight.predicted_bytes


def test_fitter_loss_metric_measures_calibration_loss(tiny_state):
    loaded, state = tiny_state
    cfg = loaded.run_config
    batches = calibration_batches(cfg.data.train_glob(), 1, 2048, cfg.trainer.train_seq_len,
                                  torch.device("cpu"))
    loss = loss_function(loaded.model, batches)
    table = measure_options(state, QuantConfig(keep_float_max_numel=SMALL_KEEP),
                            BudgetConfig(fit=True, fit_bits=[8, 2], fit_groups=["mlp"]), loss, None)
    assert 3.0 < table.base_loss < 7.5
    damage = {o.bits: o.damage for o in table.options["mlp"]}
    assert abs(damage[8]) < 0.02 and damage[2] > damage[8]  # int2 MLP hurts more than int8 (nats)


def test_export_fit_lands_under_target_with_gptq(tiny_run: Path, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    common = ["logger=none", f"quant.keep_float_max_numel={SMALL_KEEP}", "eval.max_tokens=8192"]
    run_golf("export.py", f"run_dir={run}", *common, "roundtrip_eval=false", data_root=data_root)
    base = json.loads((run / "export.json").read_text())
    target = base["code_bytes"] + int(0.6 * base["artifact_bytes"])  # int8 everywhere does not fit
    proc = run_golf("export.py", f"run_dir={run}", *common, "quant=gptq_int6", "budget=fit",
                    f"budget.target_bytes={target}", "budget.fit_bits=[16,8,6,4]", "budget.fit_batches=1",
                    "quant.gptq.calib_batches=2", "quant.gptq.calib_batch_tokens=4096", "non_record=true",
                    data_root=data_root)  # the run calibrated nothing in training: after the fact = non-record
    report = json.loads((run / "export.json").read_text())
    assert report["calibration"]["where"] == "after_training"
    assert report["fits"] and report["bytes_total"] <= target
    assert report["artifact_bytes"] == (run / "model.fit+brotli.golf").stat().st_size == \
        Path(report["artifact"]).stat().st_size
    assert "budget fit" in proc.stdout + proc.stderr and "chosen:" in proc.stdout + proc.stderr
    assert set(report["fit"]["choice"]) == {"embed", "attn", "mlp"} and min(report["fit"]["choice"].values()) < 8
    assert report["timings_s"]["gptq_hessian_s"] > 0 and report["timings_s"]["quantize_s"] > 0
    assert report["codec"] == "brotli" and report["byte_shuffle"] == 2
    groups = {g["group"]: g for g in report["budget"]["groups"]}
    assert {"embed", "attn", "mlp", "small"} <= set(groups)
    assert sum(g["raw_bytes"] for g in groups.values()) == report["budget"]["payload_raw_bytes"]
    methods = {r["method"] for r in report["budget"]["rows"] if r["kind"].startswith("int")}
    assert methods == {"gptq"}
    assert abs(report["quant_gap_bpb"]) < 0.5 and report["roundtrip"]["val_bpb"] > 0
