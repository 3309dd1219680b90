"""The challenge's clocks: GPTQ calibration inside training (Hessians stored, all-reduced across ranks), export
refusing after-the-fact calibration without --non-record, the compliance block, eval/export under torchrun."""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_golf

from golf.model import ModelConfig, build_model
from golf.quant.gptq import calibration_batches, collect_hessians
from golf.train.calibration import (
    HESSIANS_NAME,
    calibrate_in_training,
    load_stored_hessians,
    needs_hessians,
)
from golf.train.compliance import compliance_block, device_speed, hardware, summary_values
from golf.train.config import TrainRunConfig
from golf.train.dist import teardown

pytestmark = pytest.mark.usefixtures("one_thread")
CALIB = {"calib_batches": 3, "calib_batch_tokens": 256, "calib_seq_len": 64}


def _small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2)).eval()


def _gptq_run_config(data_root: Path) -> TrainRunConfig:
    cfg = TrainRunConfig.from_dict({"quant": {"scheme": "mixed", "keep_float_max_numel": 1024,
                                              "groups": {"attn": {"bits": 6, "method": "gptq", "clip": "std",
                                                                  "patterns": [".attn."]},
                                                         "mlp": {"bits": 6, "method": "gptq", "clip": "std",
                                                                 "patterns": [".mlp."]}},
                                              "gptq": CALIB},
                                    "trainer": {"train_seq_len": 64, "train_batch_tokens": 256}}, strict=False)
    cfg.data.root = str(data_root)
    return cfg


def test_compliance_verdicts_and_hardware_scale():
    assert device_speed("NVIDIA H100 80GB HBM3") == 1.0 and device_speed("NVIDIA GH200 480GB") == 1.0
    assert device_speed("Tesla T4") is None
    assert hardware(torch.device("cpu"), 2) == {"device": "cpu", "world_size": 2, "speed_vs_h100": None,
                                                "scale": None}
    h100x8 = {"device": "NVIDIA H100", "world_size": 8, "speed_vs_h100": 1.0, "scale": 1.0}
    h100x1 = {**h100x8, "world_size": 1, "scale": 8.0}
    ok = compliance_block(h100x8, train_time_s=595.0, calibration_time_s=8.0, calibration_where="in_training",
                          eval_time_s={"sliding": 100.0, "ttt": 610.0}, bytes_total=15_999_999,
                          val_data="score_first_ttt")
    assert ok["verdicts"] == {"train_time": "fail", "calibration": "fail", "eval_time:sliding": "pass",
                              "eval_time:ttt": "fail", "bytes": "pass", "val_data": "pass"}  # 595 + 8 > 600
    one_gpu = compliance_block(h100x1, train_time_s=4000.0, calibration_time_s=20.0,
                               calibration_where="in_training", eval_time_s={"ttt": 3500.0}, bytes_total=16_000_001)
    assert one_gpu["train_limit_s"] == 4800.0 and one_gpu["eval_limit_s"] == 4800.0
    assert one_gpu["verdicts"]["train_time"] == "pass" and one_gpu["verdicts"]["eval_time:ttt"] == "pass"
    assert one_gpu["verdicts"]["bytes"] == "fail"
    late = compliance_block(h100x8, train_time_s=500.0, calibration_time_s=5.0, calibration_where="after_training")
    assert late["verdicts"]["calibration"] == "fail" and late["verdicts"]["train_time"] == "pass"
    cpu = compliance_block(hardware(torch.device("cpu"), 1), eval_time_s={"standard": 1.0})
    assert cpu["verdicts"]["eval_time:standard"] == "unknown" and cpu["verdicts"]["calibration"] == "pass"
    flat = summary_values(ok)
    assert flat["compliance/verdict/bytes"] == "pass" and flat["compliance/eval_time_s/ttt"] == 610.0
    with pytest.raises(ValueError, match="calibration_where"):
        compliance_block(h100x8, calibration_where="later")


def _hessian_worker(rank: int, init_file: str, model, batches, names, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))
    try:
        mine = batches[rank::2]
        hessians, _ = collect_hessians(model, mine, names)
        if rank == 0:
            torch.save(hessians, out)
        teardown(barrier=True)
    finally:
        teardown()


def test_hessians_all_reduced_across_two_ranks_equal_one_process(sp1024_shards: Path, tmp_path: Path):
    import torch.multiprocessing as mp

    model = _small_model()
    glob = str(sp1024_shards / "fineweb_train_*.bin")
    batches = calibration_batches(glob, 3, 256, 64, torch.device("cpu"))
    shares = [calibration_batches(glob, 3, 256, 64, torch.device("cpu"), r, 2) for r in range(2)]
    assert [len(s) for s in shares] == [2, 1]
    assert torch.equal(shares[1][0][0], batches[1][0]) and torch.equal(shares[0][1][0], batches[2][0])
    names = {n for n, t in model.state_dict().items() if t.ndim == 2 and ".attn." in n}
    single, _ = collect_hessians(model, batches, names)
    out = tmp_path / "h.pt"
    mp.spawn(_hessian_worker, args=(str(tmp_path / "init"), model, batches, names, str(out)), nprocs=2)
    two = torch.load(out, weights_only=True)
    assert set(two) == set(single) == names
    for name in names:
        torch.testing.assert_close(two[name], single[name], rtol=1e-5, atol=1e-6)
    # a rank with no batch still takes part (zeros), so 3 ranks over 2 batches works the same way
    assert set(collect_hessians(model, [], names)[0]) == set()


def test_calibration_inside_training_stores_hessians_for_export(data_root: Path, tmp_path: Path):
    model = _small_model()
    cfg = _gptq_run_config(data_root)
    state = model.state_dict()
    names = needs_hessians(state, cfg.quant, cfg.budget)
    assert names and all(".attn." in n or ".mlp." in n for n in names)
    info = calibrate_in_training(model, cfg, 0, 1, torch.device("cpu"), tmp_path, is_main=True)
    assert info["where"] == "in_training" and info["seconds"] > 0 and info["matrices"] == len(names)
    assert (tmp_path / HESSIANS_NAME).is_file()
    stored = load_stored_hessians(tmp_path, state, names, cfg.quant, 64, 256)
    assert stored is not None
    hessians, meta = stored
    direct, _ = collect_hessians(model, calibration_batches(cfg.data.train_glob(), 3, 256, 64,
                                                            torch.device("cpu")), names)
    for name in names:
        assert torch.equal(hessians[name], direct[name])
    # other weights or other calibration settings: the stored Hessians are not used
    changed = {k: v.clone() for k, v in state.items()}
    next(iter(changed[n] for n in sorted(names))).add_(1.0)
    assert load_stored_hessians(tmp_path, changed, names, cfg.quant, 64, 256) is None
    more = dataclasses.replace(cfg.quant, gptq=dataclasses.replace(cfg.quant.gptq, calib_batches=4))
    assert load_stored_hessians(tmp_path, state, names, more, 64, 256) is None
    # nothing to calibrate: nothing collected, nothing written
    plain = TrainRunConfig()
    assert calibrate_in_training(model, plain, 0, 1, torch.device("cpu"), tmp_path / "none", True) is None


def test_export_refuses_after_the_fact_calibration_unless_non_record(tiny_run: Path, data_root: Path,
                                                                     tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    common = ["logger=none", "quant=gptq_int6", "quant.keep_float_max_numel=4096", "quant.gptq.calib_batches=2",
              "quant.gptq.calib_batch_tokens=4096", "eval.max_tokens=4096"]
    bad = run_golf("export.py", f"run_dir={run}", *common, data_root=data_root, check=False)
    assert bad.returncode == 2
    line = bad.stderr.strip().splitlines()[-1]
    assert line.startswith("error: GPTQ Hessians would calibrate on training data after training")
    assert "non_record=true" in line
    assert not list(run.glob("model.*.golf")) and not (run / "export.json").exists()
    ok = run_golf("export.py", f"run_dir={run}", *common, "--non-record", data_root=data_root)
    report = json.loads((run / "export.json").read_text())
    assert report["calibration"]["where"] == "after_training" and report["calibration"]["seconds"] > 0
    c = report["compliance"]
    assert c["calibration_where"] == "after_training" and c["verdicts"]["calibration"] == "fail"
    assert c["bytes_total"] == report["bytes_total"] and c["verdicts"]["bytes"] == "pass"
    assert c["eval_time_s"]["standard"] >= report["roundtrip"]["seconds"]
    assert c["train_time_s"] == json.loads((run / "metrics.json").read_text())["train_time_s"]
    assert "compliance: train_time" in ok.stdout + ok.stderr


@pytest.mark.slow
def test_eval_and_export_on_two_processes(tiny_run: Path, data_root: Path, tmp_path: Path):
    """eval.py and export.py with dist.nproc_per_node=2 re-launch under torchrun (gloo): the scores equal the
    single-process ones bit for bit, eval.json records 2 ranks and what each scored, rank 0 alone writes."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = [f"path={run / 'checkpoint.pt'}", "logger=none", "eval.max_tokens=4096", "eval.batch_tokens=2048",
            "eval.modes=[standard,sliding]", "eval.stride=64"]
    run_golf("eval.py", *args, f"out={tmp_path / 'one.json'}", data_root=data_root)
    run_golf("eval.py", *args, f"out={tmp_path / 'two.json'}", "dist.nproc_per_node=2", data_root=data_root,
             env={"OMP_NUM_THREADS": "1"})
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    for mode in ("standard", "sliding"):
        a, b = one["results"][mode], two["results"][mode]
        assert a["val_bpb"] == b["val_bpb"] and a["val_loss"] == b["val_loss"] and a["val_tokens"] == b["val_tokens"]
        assert sum(b["rank_tokens"]) == b["val_tokens"] and len(b["rank_tokens"]) == 2 and min(b["rank_tokens"]) > 0
        assert two["compliance"]["eval_time_s"][mode] > 0
    assert two["compliance"]["hardware"]["world_size"] == 2
    assert not list(run.glob("eval_rank1.json"))
    run_golf("export.py", f"run_dir={run}", "logger=none", "eval.max_tokens=4096", "eval.batch_tokens=2048",
             "dist.nproc_per_node=2", data_root=data_root, env={"OMP_NUM_THREADS": "1"})
    report = json.loads((run / "export.json").read_text())
    assert report["roundtrip"]["world_size"] == 2 and report["compliance"]["hardware"]["world_size"] == 2
    assert (run / "export_rank1.log").is_file() and Path(report["artifact"]).is_file()


@pytest.mark.slow
def test_train_calibrates_inside_the_cap_and_export_uses_it(data_root: Path, tmp_path: Path):
    """train.py with a GPTQ quant config collects the Hessians after the loop, inside the process (reserve kept
    before the cap), stores them, and export.py uses them without --non-record."""
    from conftest import TINY_OVERRIDES

    run = tmp_path / "run"
    gptq = ["quant=gptq_int6", "quant.keep_float_max_numel=4096", "quant.gptq.calib_batches=2",
            "quant.gptq.calib_batch_tokens=4096", "schedule.max_wallclock_seconds=600",
            "schedule.gptq_reserve_seconds=30"]
    proc = run_golf("train.py", *TINY_OVERRIDES, "schedule.iterations=8", *gptq, f"hydra.run.dir={run}",
                    data_root=data_root)
    metrics = json.loads((run / "metrics.json").read_text())
    calib = metrics["calibration"]
    assert calib["where"] == "in_training" and calib["seconds"] > 0 and calib["batches"] == 2
    c = metrics["compliance"]
    assert c["calibration_where"] == "in_training" and c["calibration_time_s"] == calib["seconds"]
    assert c["verdicts"]["calibration"] == "unknown" and c["hardware"]["device"] == "cpu"  # no CPU scale
    assert (run / HESSIANS_NAME).is_file() and "inside training" in proc.stdout + proc.stderr
    out = run_golf("export.py", f"run_dir={run}", "logger=none", *gptq[:4], "eval.max_tokens=4096",
                   data_root=data_root)
    report = json.loads((run / "export.json").read_text())
    assert report["calibration"] == {"where": "in_training", "seconds": calib["seconds"]}
    assert "gptq_hessian_s" not in report["timings_s"]  # nothing recalibrated after training
    assert "calibrated inside training" in out.stdout + out.stderr
