"""Sweeps end to end on the FineWeb sample: grid, seed sets, Optuna, submitit_local, torchrun inside a sweep,
failed jobs, one W&B run per job, the report; and torchrun vs a single process (same global batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY_OVERRIDES, run_golf
from hydra.types import RunMode
from scipy import stats as sstats

from golf.report import BYTES_PNG, LOSS_PNG, REPORT_MD, write_report
from golf.sweep.job import JobFailed
from golf.sweep.launch import TorchrunJobError, torchrun_command
from golf.sweep.records import collect_jobs
from golf.sweep.wandb_records import run_file, run_info, summary_of

# Smaller than TINY_OVERRIDES: a 2-layer d64 model, 1,024 tokens/step, 4 steps, 4,096 val tokens.
CHANGES = {"model.model_dim": "64", "model.num_heads": "2", "model.num_kv_heads": "1", "trainer.train_seq_len": "64",
           "trainer.train_batch_tokens": "1024", "trainer.grad_accum_base": "2", "schedule.iterations": "4",
           "schedule.warmup_steps": "0", "schedule.warmdown_iters": "2", "schedule.train_log_every": "1",
           "eval.batch_tokens": "4096", "eval.max_tokens": "4096"}


# One intra-op thread per process: with the cores shared, multi-threaded CPU kernels stall (4-11 s per tiny step
# measured under load, against ~0.15 s with one thread). torchrun sets the same for its workers.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def train_py(*args: str, data_root: Path, check: bool = True):
    """Run train.py (a sweep or a single run) as a user would, with one thread per process."""
    return run_golf("train.py", *args, data_root=data_root, env=ONE_THREAD, check=check)


def tiny(*extra: str) -> list[str]:
    """TINY_OVERRIDES with CHANGES applied, then `extra` (keys in `extra` replace earlier ones)."""
    merged = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in TINY_OVERRIDES}
    merged.update(CHANGES)
    for o in extra:
        merged[o.split("=", 1)[0]] = o.split("=", 1)[1]
    return [f"{k}={v}" for k, v in merged.items()]


def metrics_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


# ---------------------------------------------------------------- fast checks (no training)

def test_job_failed_marker_is_not_float_castable():
    # Optuna's sweeper marks a trial FAIL only for a non-float return; float('nan') would crash study.tell.
    marker = JobFailed.from_exception(ValueError("bad value\nmore"))
    with pytest.raises(TypeError):
        float(marker)
    assert str(marker) == "ValueError: bad value"


def test_torchrun_command_carries_overrides_and_plumbing(tmp_path: Path):
    cmd = torchrun_command(REPO / "train.py", ["seed=2", "sweep=seeds", "logger.group=old"], tmp_path / "0", 2,
                           "seeds x")
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[6:8] == ["seed=2", "sweep=seeds"] and "logger.group=old" not in cmd
    assert cmd[-4:] == ["logger.group='seeds x'", f"hydra.run.dir={tmp_path / '0'}", "hydra.output_subdir=null",
                        "hydra.mode=RUN"]
    with pytest.raises(TorchrunJobError, match="cannot pass"):
        torchrun_command("train.py", [], Path("/tmp/it's"), 2, "g")


def compose_train(overrides: list[str], with_hydra: bool = False):
    """The composed train config (with its `hydra` node when asked; to_typed needs it without)."""
    from hydra import compose, initialize_config_dir

    from golf.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=with_hydra)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "conf" / "sweep").glob("*.yaml")))
def test_every_sweep_preset_composes_and_validates(preset):
    from golf.config import to_typed
    from golf.train.config import TrainRunConfig

    typed = to_typed(compose_train([f"sweep={preset}", "experiment=smoke"]), TrainRunConfig)
    cfg = compose_train([f"sweep={preset}", "experiment=smoke"], with_hydra=True)
    assert typed.sweep_name == f"{preset}_smoke" and typed.export_after
    assert cfg.hydra.mode == RunMode.MULTIRUN and len(cfg.hydra.sweeper.params) >= 1
    assert cfg.hydra.callbacks.golf_sweep._target_ == "golf.sweep.callback.SweepCallback"
    if preset == "optuna":
        assert cfg.hydra.sweeper.direction == "minimize" and "Optuna" in cfg.hydra.sweeper._target_


def test_slurm_launcher_preset_runs_one_task_per_node():
    launcher = compose_train(["hydra/launcher=golf_slurm"], with_hydra=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (1, 8, 1)


@pytest.mark.parametrize(("override", "message"), [
    ("dist.nproc_per_node=0", "dist.nproc_per_node=0; must be an integer >= 1"),
    ("trainer.checkpoint=false", "export_after=true needs trainer.checkpoint=true"),
])
def test_sweep_options_are_validated(override, message):
    from golf.config import to_typed
    from golf.errors import ConfigError
    from golf.train.config import TrainRunConfig

    with pytest.raises(ConfigError, match=message):
        to_typed(compose_train(["export_after=true", override]), TrainRunConfig)


# ---------------------------------------------------------------- sweeps (train tiny models)

@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, data_root: Path) -> Path:
    """sweep=grid narrowed to 2 x 2 on the command line (export_after=true comes from the preset)."""
    sweep = tmp_path_factory.mktemp("grid") / "sweep"
    train_py("sweep=grid", *tiny("optim.matrix_lr=0.02,0.04", "model.mlp_mult=2,3"),
             f"hydra.sweep.dir={sweep}", data_root=data_root)
    return sweep


@pytest.mark.slow
def test_grid_completes_with_four_jobs_and_summary(grid_sweep: Path):
    jobs = sorted(p.name for p in grid_sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    summary = json.loads((grid_sweep / "summary.json").read_text())
    assert (summary["n_jobs"], summary["n_completed"], summary["n_failed"]) == (4, 4, 0)
    combos = set()
    for job in summary["jobs"]:
        m = metrics_of(grid_sweep / job["job"])
        assert job["metrics"]["val_bpb"] == m["val_bpb"] and m["bytes_total"] > m["artifact_bytes"] > 0
        assert json.loads((grid_sweep / job["job"] / "status.json").read_text())["status"] == "completed"
        combos.add(tuple(o for o in job["overrides"] if o.startswith(("optim.matrix_lr=", "model.mlp_mult="))))
    assert combos == {("optim.matrix_lr=0.02", "model.mlp_mult=2"), ("optim.matrix_lr=0.02", "model.mlp_mult=3"),
                      ("optim.matrix_lr=0.04", "model.mlp_mult=2"), ("optim.matrix_lr=0.04", "model.mlp_mult=3")}
    best = min(summary["jobs"], key=lambda j: j["metrics"]["roundtrip_val_bpb"])  # ranked by the submitted score
    assert summary["best"]["job"] == best["job"] and summary["best"]["score"] == "round trip"
    md = (grid_sweep / "summary.md").read_text()
    assert "4 completed, 0 failed" in md and md.count("| completed |") == 4


@pytest.mark.slow
def test_report_writes_table_and_both_plots(grid_sweep: Path, tmp_path: Path):
    report = write_report([grid_sweep], tmp_path)
    md = (tmp_path / REPORT_MD).read_text()
    header = ("| job | overrides | val_bpb (submitted) | score | pre-quant val_bpb | val_loss | bytes_total | params | "
              "steps | ms/step | status |")
    assert header in md and md.count("| completed |") == 4
    for job in report["jobs"]:
        m = job["metrics"]
        assert f"| {m['roundtrip_val_bpb']:.5f} | round trip | {m['val_bpb']:.5f} |" in md
        assert f"{m['bytes_total']:,}" in md
    for png in (LOSS_PNG, BYTES_PNG):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.fixture(scope="module")
def seed_sets(tmp_path_factory, data_root: Path) -> tuple[Path, Path]:
    """Two 3-seed sets (sweep=seeds): a baseline and a candidate with another matrix_lr, the candidate on W&B."""
    root = tmp_path_factory.mktemp("seeds")
    train_py("sweep=seeds", *tiny("export_after=false", "optim.matrix_lr=0.02"),
             f"hydra.sweep.dir={root / 'base'}", data_root=data_root)
    train_py("sweep=seeds", *tiny("optim.matrix_lr=0.05", "logger=wandb"),
             f"hydra.sweep.dir={root / 'cand'}", data_root=data_root)
    return root / "base", root / "cand"


@pytest.mark.slow
def test_seed_sets_mean_std_and_welch_p_value(seed_sets, tmp_path: Path):
    base, cand = seed_sets
    report = write_report([cand], tmp_path, baseline_paths=[base])
    base_loss = [metrics_of(base / j)["val_loss"] for j in ("0", "1", "2")]
    # the candidate exported (export_after=true): its submitted scores are the artifacts' round trips
    cand_loss = [metrics_of(cand / j)["roundtrip_val_loss"] for j in ("0", "1", "2")]
    cand_bpb = [metrics_of(cand / j)["roundtrip_val_bpb"] for j in ("0", "1", "2")]
    (config,) = report["configs"]
    assert config["n"] == 3 and sorted(config["seeds"]) == ["1337", "2025", "42"]
    assert config["val_bpb_mean"] == pytest.approx(sum(cand_bpb) / 3)
    assert config["val_bpb_std"] == pytest.approx(torch.tensor(cand_bpb, dtype=torch.float64).std().item())
    (cmp,) = report["comparisons"]
    direct = sstats.ttest_ind(base_loss, cand_loss, equal_var=False)
    assert cmp["t"] == pytest.approx(direct.statistic) and cmp["p_two_sided"] == pytest.approx(direct.pvalue)
    rule = sstats.ttest_ind(base_loss, [x + 0.005 for x in cand_loss], equal_var=False, alternative="greater")
    assert cmp["p_rule"] == pytest.approx(rule.pvalue)
    assert cmp["delta_nats"] == pytest.approx(sum(base_loss) / 3 - sum(cand_loss) / 3)
    assert cmp["meets_rule"] == (rule.pvalue < 0.01)
    assert "## Against the baseline" in report["markdown"] and "Welch t" in report["markdown"]


@pytest.mark.slow
def test_each_job_has_its_own_wandb_run(seed_sets):
    _, cand = seed_sets
    run_ids = set()
    for job in ("0", "1", "2"):
        job_dir = cand / job
        seed = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())[0]
        info, summary, m = run_info(run_file(job_dir)), summary_of(run_file(job_dir)), metrics_of(job_dir)
        run_ids.add(info["run_id"])
        assert info["group"] == "seeds_smoke" and info["job_type"] == "train"
        assert {seed, "sweep:seeds", "experiment:smoke", "model:baseline", "optim.matrix_lr=0.05"} <= set(info["tags"])
        assert info["name"].startswith(f"{seed},sweep=seeds")
        assert info["config"]["optim.matrix_lr"] == 0.05 and info["config"]["seed"] == int(seed.split("=")[1])
        assert summary["val_bpb"] == pytest.approx(m["val_bpb"]) and summary["val_loss"] == pytest.approx(m["val_loss"])
        assert summary["bytes_total"] == m["bytes_total"] > 0
        assert (summary["params"], summary["steps"]) == (m["params"], 4) and summary["train_time_s"] > 0
        assert len(list(job_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    assert len(run_ids) == 3


@pytest.mark.slow
def test_optuna_search_returns_the_best_and_survives_a_failed_trial(tmp_path: Path, data_root: Path):
    sweep = tmp_path / "optuna"
    # grad_accum_base=3 does not divide the batch: those trials fail at the start of training.
    train_py("sweep=optuna", *tiny("export_after=false", "trainer.grad_accum_base=choice(2,3)"),
             "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=4", f"hydra.sweep.dir={sweep}",
             data_root=data_root)
    jobs = collect_jobs([sweep])
    assert len(jobs) == 3 and {j.status for j in jobs} == {"completed", "failed"}
    done = [j for j in jobs if j.status == "completed"]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min(done, key=lambda j: j.metrics["val_bpb"])
    assert result["best_value"] == pytest.approx(best.metrics["val_bpb"])
    for key, value in result["best_params"].items():
        assert f"{key}={value}" in best.overrides
    failed = next(j for j in jobs if j.status == "failed")
    assert "trainer.grad_accum_base=3" in failed.overrides and "ConfigError" in failed.error


@pytest.mark.slow
def test_submitit_local_runs_torchrun_jobs_and_records_a_failure(tmp_path: Path, data_root: Path):
    """submitit_local (the SLURM launcher's local twin) runs two jobs that each re-launch themselves under
    torchrun with 2 gloo processes; one fails (grad_accum_base=3 on 2 ranks) and is recorded as failed."""
    sweep = tmp_path / "sub"
    proc = train_py("-m", *tiny("dist.nproc_per_node=2", "export_after=true",
                                            "trainer.grad_accum_base=2,3"),
                    "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
                    data_root=data_root, check=False)
    assert proc.returncode == 1 and "1 of 2 sweep jobs did not complete" in proc.stderr
    assert list(sweep.glob(".submitit/*/*_0_result.pkl"))
    ok, bad = sweep / "0", sweep / "1"
    m = metrics_of(ok)
    assert m["world_size"] == 2 and m["rank_param_max_abs_diff"] == 0.0 and m["bytes_total"] > 0
    assert {p.name for p in ok.glob("train_rank*.log")} == {"train_rank0.log", "train_rank1.log"}
    assert "running -m torch.distributed.run --standalone --nproc_per_node=2" in (ok / "train_rank0.log").read_text()
    assert sorted(p.name for p in (ok / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    status = json.loads((bad / "status.json").read_text())
    assert status["status"] == "failed" and "grad_accum_base=3 must be divisible by world_size=2" in status["error"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert (summary["n_completed"], summary["n_failed"]) == (1, 1) and summary["best"]["job"] == "0"


# ---------------------------------------------------------------- torchrun itself (issue 2)

@pytest.mark.slow
def test_torchrun_two_ranks_share_run_dir_and_match_one_process(tmp_path: Path, data_root: Path):
    """`torchrun --nproc_per_node=2 train.py` on CPU: one run dir keyed on GOLF_RUN_ID with a log per rank,
    identical parameters on both ranks, and the same model as one process at the same global batch."""
    overrides = tiny("trainer.grad_accum_base=2", "trainer.device=cpu")
    env = {**os.environ, "GOLF_DATA_DIR": str(data_root), "GOLF_RUN_ID": "ddp", "WANDB_MODE": "offline", **ONE_THREAD}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "train.py"), *overrides], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    assert run_dir.name == "ddp_smoke"
    assert {p.name for p in run_dir.glob("train_rank*.log")} == {"train_rank0.log", "train_rank1.log"}
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    ddp = metrics_of(run_dir)
    assert ddp["world_size"] == 2 and ddp["rank_param_max_abs_diff"] == 0.0

    single_dir = tmp_path / "single"
    train_py(*overrides, f"hydra.run.dir={single_dir}", data_root=data_root)
    assert metrics_of(single_dir)["world_size"] == 1
    a = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(single_dir / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert ddp["val_loss"] == pytest.approx(metrics_of(single_dir)["val_loss"], abs=1e-4)
