"""`ResumableTrainer`: golf's own training run — the submission's `Trainer` plus resume points, stop signals, the
final checkpoint and the compliance block.

A record's train_gpt.py runs the plain `Trainer` (golf/train/trainer.py): one uninterrupted run under the wallclock
cap, no files but the artifact. golf's `train.py` (golf/train/run.py) runs this subclass, which adds:
- stop signals (SIGTERM/SIGUSR1/SIGUSR2, e.g. a preempted SLURM job): the resume point is written at the next step
  boundary and `Preempted` is raised (golf/train/resume.py);
- periodic resume points (`trainer.checkpoint_every_steps` / `checkpoint_every_seconds`), agreed by all ranks;
- resuming: `run(point)` loads a resume point after priming, so the run continues bit for bit (everything that
  changes across steps is in `resume_payload()`);
- `checkpoint.pt` on rank 0 after the final validation (`trainer.checkpoint`), and the rules' compliance block in
  the metrics (golf/train/compliance.py).
The training itself (every step, validation, the stop decision) is the parent's, so both give the same weights.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from golf.train.checkpoint import CHECKPOINT_NAME, save_checkpoint
from golf.train.compliance import compliance_block, hardware
from golf.train.resume import (
    RESUME_NAME,
    Preempted,
    ResumeError,
    ResumePoint,
    StopSignals,
    capture_rng,
    restore_rng,
    save_resume,
)
from golf.train.trainer import Trainer

log = logging.getLogger("golf.train")


def _to_cpu(obj):
    """Tensors anywhere in nested dicts/lists/tuples moved to the CPU (for a resume point)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class ResumableTrainer(Trainer):
    """A `Trainer` that can be stopped and resumed bit for bit (see the module docstring). Same arguments."""

    signals: StopSignals | None = None

    def run(self, resume: ResumePoint | None = None) -> dict:
        """build -> prime -> (resume) -> steps with validation -> finish. Returns the final metrics.

        Raises Preempted after writing the resume point when SIGTERM/SIGUSR1/SIGUSR2 arrived during training.
        """
        with StopSignals() as self.signals:
            self.build()
            self.prime()
            self.start(resume)
            try:
                self.train_loop()
            except Preempted as stop:
                stop.chain = self.signals.previous_handler(stop.signum)
                raise
        return self.finish()

    def start(self, resume: ResumePoint | None = None) -> None:
        """Hooks' on_train_start (after the resumed state is loaded, if any), then the training clock starts."""
        if resume is not None:
            self._load_weights(resume)
        for hook in self.hooks:
            hook.on_train_start(self.model, self.optimizers)
        if resume is not None:
            self._load_progress(resume)
        self.last_ckpt_wall = time.monotonic()
        self.restart_clock()

    def _boundary_flags(self) -> list[float]:
        t = self.cfg.trainer
        signum = self.signals.received if self.signals is not None else None
        due = t.checkpoint_every_seconds > 0 and time.monotonic() - self.last_ckpt_wall >= t.checkpoint_every_seconds
        return [*super()._boundary_flags(), float(signum or 0), float(due)]

    def _step_boundary(self) -> list[float]:
        """The stop decision, and the resume point (periodic or on a signal), agreed by all ranks."""
        flags = super()._step_boundary()
        finishing = self.step_count == self.cfg.schedule.iterations or self.stop_after is not None
        if flags[1] and not finishing:
            path = self.save_resume()
            raise Preempted(int(flags[1]), self.step_count, path)
        every = self.cfg.trainer.checkpoint_every_steps
        if not finishing and (flags[2] or (every > 0 and self.step_count % every == 0)):
            self.save_resume()
        return flags

    # -- state ----------------------------------------------------------------------------------------------
    def resume_payload(self) -> dict:
        """Everything that changes across steps, every rank's part gathered (collective under torchrun)."""
        opt_states = _to_cpu([opt.state_dict() for opt in self.optimizers])
        mine = {"loader": self.loader.stream.resume_state(), "rng": capture_rng(), "optimizers": opt_states}
        if self.ctx.distributed:
            import torch.distributed as dist

            ranks: list = [None] * self.ctx.world_size
            dist.all_gather_object(ranks, _to_cpu(mine))
        else:
            ranks = [mine]
        # Distributed Muon keeps each momentum buffer only on the rank that owns the matrix: the stored state is
        # the union over ranks, and every rank records which entries it held (restored as they were).
        merged = []
        for i, own in enumerate(opt_states):
            union: dict = {}
            for r in ranks:
                for key, value in r["optimizers"][i]["state"].items():
                    union.setdefault(key, value)
            merged.append({**own, "state": union})
        for r in ranks:
            r["opt_keys"] = [sorted(o["state"]) for o in r.pop("optimizers")]
        return _to_cpu({
            "model": self.model.state_dict(),
            "optimizers": merged,
            "trainer": {"step": self.step_count, "train_ms": self.train_ms,
                        "stop_after": -1 if self.stop_after is None else self.stop_after,
                        "world_size": self.ctx.world_size, "wandb_id": getattr(self.tracker, "run_id", "") or ""},
            "hooks": [hook.resume_state() for hook in self.hooks],
            "ranks": ranks,
        })

    def save_resume(self) -> Path:
        """Write <run_dir>/resume.pt (rank 0; every rank takes part in the gather). Excluded from the clock."""
        path = Path(self.run_ctx.run_dir) / RESUME_NAME
        payload = self.resume_payload()
        if self.ctx.is_main:
            save_resume(path, payload, self.cfg)
            log.info(f"resume point: step:{self.step_count} train_time:{self.train_ms:.0f}ms -> {path}")
        if self.ctx.distributed:
            import torch.distributed as dist

            dist.barrier()
        self.last_ckpt_wall = time.monotonic()
        self.restart_clock()
        return path

    def _load_weights(self, point: ResumePoint) -> None:
        tr = point.trainer
        if int(tr["world_size"]) != self.ctx.world_size:
            raise ResumeError(f"the resume point was written by world_size={tr['world_size']}, this run has "
                              f"world_size={self.ctx.world_size}; resume with the same number of processes")
        if len(point.hooks) != len(self.hooks) or len(point.optimizers) != len(self.optimizers):
            raise ResumeError("the resume point's hooks/optimizers do not match this config")
        self.model.load_state_dict(point.model, strict=True)
        keys = point.ranks[self.ctx.rank]["opt_keys"]
        for opt, state, mine in zip(self.optimizers, point.optimizers, keys, strict=True):
            opt.load_state_dict({**state, "state": {k: state["state"][k] for k in mine}})

    def _load_progress(self, point: ResumePoint) -> None:
        tr = point.trainer
        for hook, state in zip(self.hooks, point.hooks, strict=True):
            hook.restore(state, self.model)
        mine = point.ranks[self.ctx.rank]
        self.loader = self._new_loader()
        self.loader.stream.restore(mine["loader"])
        restore_rng(mine["rng"])
        self.step_count, self.train_ms = int(tr["step"]), float(tr["train_ms"])
        self.stop_after = None if int(tr["stop_after"]) < 0 else int(tr["stop_after"])
        log.info(f"resumed: step:{self.step_count}/{self.cfg.schedule.iterations} train_time:{self.train_ms:.0f}ms")

    def finish(self) -> dict:
        """The parent's metrics plus the compliance block; rank 0 writes checkpoint.pt (trainer.checkpoint)."""
        metrics = super().finish()
        calibration = metrics["calibration"]
        metrics["compliance"] = compliance_block(
            hardware(self.device, self.ctx.world_size), train_time_s=metrics["train_time_s"],
            calibration_time_s=calibration["seconds"] if calibration else None,
            calibration_where="in_training" if calibration else "none")
        if self.ctx.is_main and self.cfg.trainer.checkpoint:
            save_checkpoint(Path(self.run_ctx.run_dir) / CHECKPOINT_NAME, self.model, self.optimizers,
                            self.step_count, self.cfg)
        return metrics
