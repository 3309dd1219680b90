"""Issue #13: an export never corrupts its source weights, writes only after every check passed, and a failed or
concurrent export leaves the previous artifact and report untouched (real tiny trained model, real FineWeb)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_golf

from golf.eval.config import EvalConfig
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_evaluation
from golf.export_run import ExportError, _check_source_unchanged, export_run, weights_checksum
from golf.io import LockedError
from golf.quant.budget import BudgetExceededError
from golf.quant.config import BudgetConfig, QuantConfig
from golf.quant.fitter import loss_function, measure_options
from golf.quant.gptq import calibration_batches
from golf.record import submission_code_bytes
from golf.train.load import load_for_eval

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL_KEEP = 4096  # the tiny model's matrices land in the attn/mlp groups (as in test_budget_fit)
EVAL = EvalConfig(max_tokens=8192, batch_tokens=8192)


def _fresh_score(path: Path, run_cfg) -> float:
    """val_bpb of the file at `path`, loaded afresh from disk."""
    val = load_val_data(run_cfg.data, run_cfg.model.vocab_size, run_cfg.trainer.train_seq_len, EVAL.max_tokens)
    return run_evaluation(load_for_eval(path, torch.device("cpu")).model, val, EVAL,
                          EvalContext(torch.device("cpu"), progress=False)).val_bpb


@pytest.mark.parametrize("metric", ["loss", "recon"])
def test_budget_fit_export_scores_what_it_writes(tiny_run: Path, tmp_path: Path, metric: str):
    """The corrupted-export bug: fit trials were loaded into the live model, whose state dict the fitter and
    the quantizer read, so the artifact was the last (int4) trial and pre-quant == round-trip (gap ~0)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt_bytes = (run / "checkpoint.pt").read_bytes()
    budget = BudgetConfig(fit=True, fit_metric=metric, fit_bits=[8, 4], fit_batches=1, target_bytes=10**9)
    result = export_run(run, QuantConfig(keep_float_max_numel=SMALL_KEEP), budget, EVAL, torch.device("cpu"),
                        non_record=True, code_bytes=submission_code_bytes)  # loss trials calibrate on training data after training
    run_cfg = load_for_eval(run / "checkpoint.pt", torch.device("cpu")).run_config
    assert (run / "checkpoint.pt").read_bytes() == ckpt_bytes
    assert result["fit"]["choice"] and set(result["fit"]["choice"].values()) == {8}  # roomy target: int8 chosen
    # The reported numbers are the checkpoint's and the written artifact's, each re-read from disk.
    assert result["pre_quant"]["val_bpb"] == _fresh_score(run / "checkpoint.pt", run_cfg)
    assert result["roundtrip"]["val_bpb"] == _fresh_score(Path(result["artifact"]), run_cfg)
    assert 0 < result["quant_gap_bpb"] < 0.05  # int8 costs a little, never the int4 trial's damage
    assert json.loads((run / "export.json").read_text())["val_bpb"] == result["val_bpb"]


def test_loss_trials_never_write_the_model_or_its_storage(tiny_run: Path):
    loaded = load_for_eval(tiny_run / "checkpoint.pt", torch.device("cpu"))
    cfg = loaded.run_config
    state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}  # shares storage with the model
    assert all(state[k].data_ptr() == v.data_ptr() for k, v in loaded.model.state_dict().items())
    before = weights_checksum(state)
    batches = calibration_batches(cfg.data.train_glob(), 1, 2048, cfg.trainer.train_seq_len, torch.device("cpu"))
    table = measure_options(state, QuantConfig(keep_float_max_numel=SMALL_KEEP),
                            BudgetConfig(fit=True, fit_bits=[8, 2], fit_groups=["mlp"]),
                            loss_function(loaded.model, batches), None)
    assert weights_checksum(state) == weights_checksum(loaded.model.state_dict()) == before
    damage = {o.bits: o.damage for o in table.options["mlp"]}
    assert damage[2] > damage[8]


def test_checksum_guard_names_the_changed_weights(tiny_run: Path):
    loaded = load_for_eval(tiny_run / "checkpoint.pt", torch.device("cpu"))
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    good = weights_checksum(state)
    _check_source_unchanged(good, state, loaded.model)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(1e-3)
    with pytest.raises(ExportError, match="checkpoint model weights changed"):
        _check_source_unchanged(good, state, loaded.model)


def test_failed_export_leaves_previous_outputs_untouched(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    path = Path(export_run(run, QuantConfig(), BudgetConfig(), EVAL, torch.device("cpu"),
                           roundtrip_eval=False, code_bytes=submission_code_bytes)["artifact"])
    artifact, report = path.read_bytes(), (run / "export.json").read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the user's umask, not mkstemp's 0600
    with pytest.raises(BudgetExceededError):
        export_run(run, QuantConfig(scheme="int8", codec="zlib", level=1), BudgetConfig(target_bytes=100_000),
                   EVAL, torch.device("cpu"), code_bytes=submission_code_bytes)
    assert path.read_bytes() == artifact and (run / "export.json").read_bytes() == report
    assert not [p.name for p in run.iterdir() if p.name.endswith(".golftmp")]


def test_out_writes_its_report_beside_its_artifact(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    other = tmp_path / "elsewhere" / "alt.golf"
    export_run(run, QuantConfig(), BudgetConfig(), EVAL, torch.device("cpu"), out=other, roundtrip_eval=False, code_bytes=submission_code_bytes)
    assert other.is_file() and (other.parent / "alt.golf.export.json").is_file()
    assert not (run / "export.json").exists() and not list(run.glob("model*.golf"))


def test_second_export_into_a_locked_directory_names_the_holder(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"another export \\(pid {holder.pid} on "):
            export_run(run, QuantConfig(), BudgetConfig(), EVAL, torch.device("cpu"), roundtrip_eval=False, code_bytes=submission_code_bytes)
        assert not list(run.glob("model*.golf"))
    finally:
        holder.kill()
        holder.wait()
    export_run(run, QuantConfig(), BudgetConfig(), EVAL, torch.device("cpu"), roundtrip_eval=False, code_bytes=submission_code_bytes)  # released


def test_export_cli_over_budget_keeps_earlier_log_and_outputs(tiny_run: Path, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    run_golf("export.py", f"run_dir={run}", "logger=none", "roundtrip_eval=false", data_root=data_root)
    names = [p.name for p in run.glob("model*.golf")] + ["export.json", "export.log", "export_report.md"]
    kept = {n: (run / n).read_bytes() for n in names}
    hydra_kept = {p.name: p.read_bytes() for p in (run / ".hydra_export").iterdir()}
    proc = run_golf("export.py", f"run_dir={run}", "logger=none", "budget.target_bytes=100000",
                    data_root=data_root, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [proc.stderr.strip().splitlines()[-1]]
    assert {n: (run / n).read_bytes() for n in kept} == kept
    assert {p.name: p.read_bytes() for p in (run / ".hydra_export").iterdir()} == hydra_kept


# A process that holds a run directory's export lock until it is killed (as a long export would).
HOLD_LOCK = "import sys, time; from golf.io import run_lock\nwith run_lock(sys.argv[1], 'export'):\n    print('held', flush=True)\n    time.sleep(600)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
