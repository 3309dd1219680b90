"""The Trainer and resume (issue #9, #13): a run stopped by a signal and resumed equals the uninterrupted run bit
for bit — every step's loss, the final weights, val_bpb and the training clock — with and without a wallclock
cap, on 1 rank in-process and on 2 ranks under torchrun (gloo); train.py answers SIGTERM with a resume point and
status 143 and continues the run directory when started again; the resume policy refuses with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_golf
from resume_worker import SignalAtStep, TickClock, tiny_config

from golf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from golf.train.context import RunContext
from golf.train.resume import RESUME_NAME, Preempted, ResumeError, load_resume
from golf.train.run import resume_point_for, train
from golf.train.tracking import HISTORY_NAME, METRICS_NAME

pytestmark = pytest.mark.usefixtures("one_thread")
STOP_AT = 6


def history(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(train loss per step, val_bpb per step) from history.jsonl; a step logged twice fails the test."""
    losses, vals = {}, {}
    for line in (run_dir / HISTORY_NAME).read_text().splitlines():
        row = json.loads(line)
        for key, table in (("train/loss", losses), ("val/bpb", vals)):
            if key in row:
                assert row["step"] not in table, f"step {row['step']} logged twice in {run_dir}"
                table[row["step"]] = row[key]
    return losses, vals


def assert_same_run(full: Path, resumed: Path, label: str) -> None:
    """Identical per-step losses and validations, final weights and metrics; prints the losses side by side."""
    (la, va), (lb, vb) = history(full), history(resumed)
    print(f"\n{label}: step | uninterrupted train_loss | stopped at {STOP_AT} + resumed | |Δ|")
    for step in sorted(la):
        print(f"{step:4d} | {la[step]:.9f} | {lb.get(step, float('nan')):.9f} | {abs(la[step] - lb.get(step, 0)):.1e}")
    assert la == lb and va == vb
    ma, mb = json.loads((full / METRICS_NAME).read_text()), json.loads((resumed / METRICS_NAME).read_text())
    wa, wb = load_checkpoint(full / CHECKPOINT_NAME).model, load_checkpoint(resumed / CHECKPOINT_NAME).model
    max_dw = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    print(f"{label}: max |Δ weight| = {max_dw:.1e}  val_bpb {ma['val_bpb']!r} vs {mb['val_bpb']!r} "
          f"(|Δ| {abs(ma['val_bpb'] - mb['val_bpb']):.1e})  steps {ma['steps']} vs {mb['steps']}  "
          f"train_time_s {ma['train_time_s']} vs {mb['train_time_s']}")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ma == mb  # val_loss, val_bpb, steps, train_time_s (the carried training clock), ...
    assert not (resumed / RESUME_NAME).exists()


@pytest.mark.parametrize("cap", [False, True], ids=["no_cap", "wallclock_cap"])
def test_stopped_and_resumed_run_equals_the_uninterrupted_run(cap, data_root, tmp_path):
    cfg = tiny_config(data_root, cap=cap)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    expected = train(cfg, RunContext(full), clock=TickClock())
    assert expected["steps"] == (11 if cap else 14)  # the cap really stops early

    resumed.mkdir()
    with pytest.raises(Preempted) as stop:
        train(cfg, RunContext(resumed), clock=TickClock(), tracker=SignalAtStep(resumed, STOP_AT))
    assert (stop.value.step, stop.value.exit_code) == (STOP_AT, 128 + signal.SIGUSR1)
    assert not (resumed / METRICS_NAME).exists() and not (resumed / CHECKPOINT_NAME).exists()
    point = load_resume(resumed / RESUME_NAME)
    assert point.step == STOP_AT and point.trainer["train_ms"] > 0
    assert [sorted(h) for h in point.hooks] == [["enabled", "peak"], ["shadow", "updates"]]  # QAT, EMA
    assert any("momentum_buffer" in s for opt in point.optimizers for s in opt["state"].values())  # Muon

    train(cfg, RunContext(resumed), clock=TickClock())  # resume=auto
    assert_same_run(full, resumed, f"1 rank, {'wallclock cap' if cap else 'no cap'}")


def torchrun(run_dir: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "tests" / "resume_worker.py"), str(run_dir), str(data_root), *args],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("cap", [False, True], ids=["no_cap", "wallclock_cap"])
def test_two_ranks_stopped_and_resumed_equal_the_uninterrupted_run(cap, data_root, tmp_path):
    """torchrun --nproc_per_node=2 (gloo): rank 0 alone receives the signal; both ranks stop at the same step."""
    extra = ["--cap"] if cap else []
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    proc = torchrun(full, data_root, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = torchrun(resumed, data_root, "--stop-at", str(STOP_AT), *extra)
    assert proc.returncode != 0 and f"exitcode  : {128 + signal.SIGUSR1}" in proc.stderr, proc.stderr[-3000:]
    point = load_resume(resumed / RESUME_NAME)
    assert point.step == STOP_AT and len(point.ranks) == 2 and not (resumed / METRICS_NAME).exists()
    proc = torchrun(resumed, data_root, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(full, resumed, f"2 ranks, {'wallclock cap' if cap else 'no cap'}")


class Payload:
    """An object whose unpickling would run code."""

    ran = False

    def __reduce__(self):
        return (Payload.mark, ())

    @staticmethod
    def mark():
        Payload.ran = True


def test_resume_policy_refuses_with_one_line(data_root, tmp_path):
    cfg = tiny_config(data_root)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert resume_point_for(cfg, run_dir) is None  # empty directory: a fresh start
    with pytest.raises(Preempted):
        train(cfg, RunContext(run_dir), clock=TickClock(), tracker=SignalAtStep(run_dir, 2))
    assert resume_point_for(cfg, run_dir).step == 2
    never = tiny_config(data_root)
    never.resume = "never"
    with pytest.raises(ResumeError, match=r"already holds a run \(resume.pt, history.jsonl\) and resume=never"):
        resume_point_for(never, run_dir)
    other = tiny_config(data_root, model={"num_layers": 3})
    with pytest.raises(ResumeError, match=r"written with model.num_layers=2, this run has model.num_layers=3"):
        resume_point_for(other, run_dir)
    for junk in (b"not a checkpoint", None):
        if junk is None:  # a pickled object: torch.load(weights_only=True) refuses it, nothing runs
            torch.save({"format": "golf-resume-v1", "model": Payload()}, run_dir / RESUME_NAME)
        else:
            (run_dir / RESUME_NAME).write_bytes(junk)
        with pytest.raises(ResumeError, match="cannot load resume point") as err:
            resume_point_for(cfg, run_dir)
        assert "\n" not in str(err.value) and not Payload.ran
    (run_dir / METRICS_NAME).write_text("{}")
    with pytest.raises(ResumeError, match="holds a finished run"):
        resume_point_for(cfg, run_dir)


def test_periodic_resume_points_are_written_atomically(data_root, tmp_path):
    cfg = tiny_config(data_root, trainer={"checkpoint_every_steps": 4})
    run_dir = tmp_path / "run"
    seen = []

    class Watch(SignalAtStep):
        def log(self, metrics, step):
            super().log(metrics, step)
            if "train/loss" in metrics and (run_dir / RESUME_NAME).exists():
                seen.append((step, load_resume(run_dir / RESUME_NAME).step))

    train(cfg, RunContext(run_dir), clock=TickClock(), tracker=Watch(run_dir, at=-1))
    assert seen[0] == (5, 4) and (9, 8) in seen and (13, 12) in seen  # written at steps 4, 8, 12
    assert not list(run_dir.glob(".*tmp")) and not (run_dir / RESUME_NAME).exists()  # removed once finished


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2], ids=["one_process", "torchrun_2_ranks"])
def test_sigterm_to_train_py_writes_a_resume_point_and_the_next_start_continues(nproc, data_root, tmp_path):
    """SIGTERM to `train.py` (with dist.nproc_per_node=2: to the parent, which passes it on through torchrun)."""
    run_dir = tmp_path / "run"
    overrides = [f"dist.nproc_per_node={nproc}", "trainer.device=cpu", "experiment=smoke", "logger=none", "model.num_layers=2", "model.model_dim=64", "model.num_heads=4",
                 "model.num_kv_heads=2", "trainer.train_seq_len=64", "trainer.train_batch_tokens=1024",
                 "trainer.compile=off", "schedule.iterations=100", "schedule.train_log_every=1",
                 "eval.batch_tokens=4096", "eval.max_tokens=4096", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "GOLF_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "train.py", *overrides], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / HISTORY_NAME).exists():
        time.sleep(0.2)
    while time.monotonic() < deadline and len((run_dir / HISTORY_NAME).read_text().splitlines()) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert (run_dir / RESUME_NAME).exists() and not (run_dir / METRICS_NAME).exists()
    stopped = load_resume(run_dir / RESUME_NAME).step
    assert 3 <= stopped < 100
    assert nproc > 1 or "Traceback" not in err  # (torchrun itself prints its SignalException's traceback)

    again = run_golf("train.py", *overrides, data_root=data_root, env={"OMP_NUM_THREADS": "1"})
    assert f"resumed: step:{stopped}/100" in again.stderr + again.stdout
    losses, _ = history(run_dir)
    assert sorted(losses) == list(range(1, 101)) and json.loads((run_dir / METRICS_NAME).read_text())["steps"] == 100
    refused = run_golf("train.py", *overrides, "resume=never", data_root=data_root, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: {run_dir} already holds a run")
    assert (run_dir / METRICS_NAME).exists() and (run_dir / "train_rank0.log").exists()  # nothing lost


def test_a_crash_resumes_from_the_last_periodic_resume_point(data_root, tmp_path):
    """A process that dies (here: an exception at step 8) after the periodic resume point of step 5 loses steps 6-8
    only; the next start continues from step 5 and equals the uninterrupted run (validation at step 5 once)."""
    cfg = tiny_config(data_root, trainer={"checkpoint_every_steps": 5})
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    train(cfg, RunContext(full), clock=TickClock())

    class Crash(SignalAtStep):
        def log(self, metrics, step):
            super().log(metrics, step)
            if step == 8 and "train/loss" in metrics:
                raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):
        train(cfg, RunContext(crashed), clock=TickClock(), tracker=Crash(crashed, at=-1))
    assert load_resume(crashed / RESUME_NAME).step == 5
    train(cfg, RunContext(crashed), clock=TickClock())
    assert_same_run(full, crashed, "crash at step 8, resumed from step 5")
