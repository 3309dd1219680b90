"""A record's train_gpt.py is the run: generated from the config, it trains, exports and evaluates to the same
val_bpb and the same artifact bytes as golf's own train -> export -> eval, without golf installed."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_golf
from record_helpers import TINY, data_dir, final_line, preset, run_guarded

from golf.export_run import export_run
from golf.record import submission_bundle, submission_code_bytes
from golf.submission import apply_env
from golf.train.context import RunContext
from golf.train.run import train


def golf_reference(cfg, work: Path, monkeypatch) -> dict:
    """golf's own path: train (in process) -> export.py's export_run -> round-trip eval, cwd = `work`."""
    monkeypatch.chdir(work)
    run_dir = work / "run"
    train(cfg, RunContext(run_dir=run_dir, name="ref", group="ref", tags=[], config=cfg.to_dict()))
    return export_run(run_dir, None, cfg.budget, cfg.eval, torch.device("cpu"), code_bytes=submission_code_bytes)


def write_script(cfg, folder: Path) -> Path:
    bundle = submission_bundle(cfg)
    script = folder / "train_gpt.py"
    script.write_text(bundle.shipped, encoding="utf-8")
    return script


SEED = "7"


@pytest.mark.slow
@pytest.mark.parametrize("name,overrides", [
    ("baseline", []),
    ("smeargate_pr65", []),
    ("pr374_gptq_lite", []),
    ("depth_recurrent", []),
    ("baseline", ["eval=ttt", "eval.ttt.epochs=1", "quant.codec=brotli"]),  # brotli artifact and wrapper
])
def test_generated_script_reproduces_golf(name, overrides, data_root: Path, tmp_path: Path, monkeypatch,
                                          one_thread):
    cfg = preset(name, f"seed={SEED}", *overrides)
    ref = golf_reference(cfg, data_dir(tmp_path / "golf", data_root), monkeypatch)
    sub = data_dir(tmp_path / "submission", data_root)
    script = write_script(cfg, sub)
    proc = run_guarded(script, sub, {"SEED": SEED, "RUN_ID": "proof"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    val_loss, val_bpb = final_line(proc.stdout)
    assert abs(val_bpb - ref["val_bpb"]) < 1e-6 and abs(val_loss - ref["val_loss"]) < 1e-6
    assert (sub / "final_model.golf").read_bytes() == Path(ref["artifact"]).read_bytes()
    assert f"Code size: {script.stat().st_size} bytes" in proc.stdout
    for line in ("model_params:", "train_loss:", "step_avg:", "Serialized model", "Total submission size"):
        assert line in proc.stdout
    assert (sub / "logs" / "proof.txt").is_file()


@pytest.mark.slow
def test_generated_script_under_torchrun_reproduces_golf_under_torchrun(data_root: Path, tmp_path: Path,
                                                                          one_thread):
    """2 gloo ranks: golf's train.py with dist.nproc_per_node=2 (re-launched under torchrun) -> export, against
    the generated file under `torchrun --standalone --nproc_per_node=2` (training and eval on both ranks)."""
    overrides = ["experiment=baseline", *TINY, f"seed={SEED}"]
    cfg = preset("baseline", f"seed={SEED}", "dist.nproc_per_node=2")  # the run's config, as the record bakes it
    work = data_dir(tmp_path / "golf", data_root)
    run_dir = work / "run"
    run_golf(str(REPO / "train.py"), *overrides[1:], "experiment=baseline", "dist.nproc_per_node=2",
             f"hydra.run.dir={run_dir}", data_root=data_root, cwd=work, env={"OMP_NUM_THREADS": "1"})
    import os

    os.chdir(work)
    try:
        ref = export_run(run_dir, None, cfg.budget, cfg.eval, torch.device("cpu"), code_bytes=submission_code_bytes)
    finally:
        os.chdir(REPO)
    sub = data_dir(tmp_path / "submission", data_root)
    script = write_script(cfg, sub)
    proc = run_guarded(script, sub, {"SEED": SEED, "RUN_ID": "dist"}, nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world_size:2" in proc.stdout
    val_loss, val_bpb = final_line(proc.stdout)
    assert abs(val_bpb - ref["val_bpb"]) < 1e-6 and abs(val_loss - ref["val_loss"]) < 1e-6
    assert (sub / "final_model.golf").read_bytes() == Path(ref["artifact"]).read_bytes()


def test_code_bytes_are_the_file_on_disk(tmp_path: Path):
    cfg = preset("baseline")
    bundle = submission_bundle(cfg)
    script = write_script(cfg, tmp_path)
    assert submission_code_bytes(cfg) == bundle.code_bytes == script.stat().st_size
    assert bundle.shipped.count("\n") == 2 and bundle.shipped.startswith("import lzma as L,base64 as B\n")
    # Every module inside imports (at module level) only the standard library, torch, numpy, sentencepiece, the
    # codecs and itself; function-level imports of tqdm (enabled progress bars) and wandb (logger=wandb) never run
    # in a submission, which the guarded runs above prove (both are blocked there).
    # triton: part of CUDA builds of torch, imported under try/except by golf/model/kernels.py.
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy", "sentencepiece", "zstandard", "brotli", "triton", "_pg"}
    assert bundle.layout == "flat"  # one namespace: the module-level code of every bundled module is the file's
    imported = _imports(bundle.readable)
    assert imported <= allowed, imported - allowed
    assert "golf" not in imported and "_pg" not in imported


def _imports(source: str) -> set[str]:
    """Top-level packages imported at module level (function bodies skipped)."""
    out = set()
    nodes = list(ast.parse(source).body)
    for node in nodes:
        if isinstance(node, (ast.If, ast.Try)):
            nodes.extend(node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", []))
            nodes.extend(h for hs in getattr(node, "handlers", []) for h in hs.body)
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("option,preset_with,module", [
    ("smear gate + bigram", "smeargate_pr65", "golf.model.gates"),
    ("bigram / value embeddings", "pr374_gptq_lite", "golf.model.embeddings"),
    ("sliding eval", "pr374_gptq_lite", "golf.eval.sliding"),
    ("QAT", "pr374_gptq_lite", "golf.train.qat"),
    ("SWA", "pr374_gptq_lite", "golf.train.averaging"),
    ("mixed intN scheme", "pr374_gptq_lite", "golf.quant.intn"),
    ("per-group lrzip/brotli codec", "record_0427_sota", "golf.quant.pergroup"),
    ("LQER", "record_0427_sota", "golf.quant.lqer"),
    ("fused CE / LeakyReLU² kernels", "record_0427_sota", "golf.model.kernels"),
    ("document-packing loader", "record_0427_sota", "golf.data.packing"),
    ("GPTQ calibration inside training", "record_0427_sota", "golf.train.calibration"),
    ("shuffled/coprime loaders", "record_0409_sp8192_recur", "golf.data.samplers"),
    ("zstd codec", "pr374_gptq_lite", "golf.quant.codec_zstd"),
    ("lzma codec", "record_0323_legal_ttt", "golf.quant.codec_lzma"),
    ("brotli codec", "record_0409_sp8192_recur", "golf.quant.codec_brotli"),
    ("document-masked attention", "record_0427_sota", "golf.model.varlen"),
])
def test_a_config_ships_exactly_the_option_code_it_uses(option, preset_with, module):
    with_option = submission_bundle(preset(preset_with))
    without = submission_bundle(preset("baseline"))
    private = "_pg" + module[len("golf"):]
    assert module in with_option.modules and f"\n#@{private} " in with_option.readable, option
    assert module not in without.modules and f"\n#@{private} " not in without.readable, option


def test_scheme_none_ships_only_with_a_config_that_uses_it():
    unquantized = submission_bundle(preset("baseline", "quant.scheme=none"))
    assert "golf.quant.passthrough" in unquantized.modules and "golf.quant.int8" in unquantized.modules
    assert "golf.quant.passthrough" not in submission_bundle(preset("baseline")).modules


def test_data_fields_the_export_does_not_rewrite_are_folded():
    """export_core.portable rewrites only data.root/dataset_dir/tokenizer_path, so data.text_transform is baked:
    the CaseOps byte sidecar loader ships with a caseops config only."""
    assert "def load_validation_byte_sidecar(" not in submission_bundle(preset("baseline")).readable
    assert "def load_validation_byte_sidecar(" in submission_bundle(preset("record_0427_sota")).readable


def test_the_unused_skip_anchor_ships_with_a_switchable_loop_only():
    assert "_unused_skip_anchor" not in submission_bundle(preset("baseline")).readable
    assert "_unused_skip_anchor" in submission_bundle(preset("record_0409_sp8192_recur")).readable


def test_codec_best_ships_every_codec_and_pergroup_the_fitters_only():
    best = submission_bundle(preset("baseline", "quant.codec=best")).modules
    assert {"golf.quant.codec_zstd", "golf.quant.codec_lzma", "golf.quant.codec_brotli"} <= set(best)
    pergroup = set(submission_bundle(preset("record_0427_sota")).modules)  # GPTQ: the fitter predicts with zstd
    assert "golf.quant.codec_zstd" in pergroup and not {"golf.quant.codec_lzma", "golf.quant.codec_brotli"} & pergroup


@pytest.mark.parametrize("name", ["baseline", "record_0427_sota"])
def test_no_submission_ships_golf_run_machinery(name):
    """Resume points, checkpoints, W&B tracking, run-directory policy, the compliance report, export.py's
    driver and the structural checks of artifacts from elsewhere are golf's, not the record's: the plain Trainer
    and export_core are all a train_gpt.py runs, and it reads back only its own artifact."""
    bundle = submission_bundle(preset(name))
    assert not set(bundle.modules) & {"golf.train.resume", "golf.train.resumable", "golf.train.checkpoint",
                                      "golf.train.run", "golf.train.tracking", "golf.train.compliance",
                                      "golf.export_run", "golf.train.load", "golf.quant.artifact_checks",
                                      "golf.validate"}
    # the loaders' and hooks' resume state goes with the resume point (named apart from torch's state_dict)
    assert "def resume_state(" not in bundle.readable and "def restore(" not in bundle.readable


def test_ttt_config_ships_ttt_and_lora_only_then():
    ttt = submission_bundle(preset("baseline", "eval=ttt"))
    assert {"golf.eval.ttt", "golf.eval.lora"} <= set(ttt.modules)
    assert not {"golf.eval.ttt", "golf.eval.lora"} & set(submission_bundle(preset("baseline")).modules)


def test_env_overrides_follow_the_official_names():
    cfg = preset("baseline").to_dict()
    out = apply_env(cfg, {"SEED": "42", "ITERATIONS": "9", "MAX_WALLCLOCK_SECONDS": "600",
                          "DATA_PATH": "/d/fineweb10B_sp1024", "TOKENIZER_PATH": "/t.model", "VAL_LOSS_EVERY": "0"})
    assert out["seed"] == 42 and out["schedule"]["iterations"] == 9
    assert out["schedule"]["max_wallclock_seconds"] == 600.0 and out["schedule"]["val_loss_every"] == 0
    assert out["data"]["dataset_dir"] == "/d/fineweb10B_sp1024" and out["data"]["tokenizer_path"] == "/t.model"
    assert cfg["seed"] != 42  # the baked dict is left alone
    from golf.errors import GolfError

    with pytest.raises(GolfError, match="ITERATIONS='x'"):
        apply_env(cfg, {"ITERATIONS": "x"})
    json.dumps(out)


def test_configs_stored_before_budget_code_paths_was_retired_still_load():
    from golf.train.config import TrainRunConfig

    old = TrainRunConfig().to_dict()
    old["budget"] = {**old["budget"], "code_mode": "lzma", "code_paths": ["train.py", "golf/model"]}
    assert TrainRunConfig.from_dict(old) == TrainRunConfig()


@pytest.mark.slow
def test_generated_script_over_budget_fails_with_one_line(data_root: Path, tmp_path: Path, one_thread):
    cfg = preset("baseline", "schedule.iterations=1", "budget.target_bytes=100000")
    sub = data_dir(tmp_path / "submission", data_root)
    script = write_script(cfg, sub)
    proc = run_guarded(script, sub, {"RUN_ID": "over"})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "100,000-byte target" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (sub / "final_model.golf").exists() and not list(sub.glob(".final_model*"))
