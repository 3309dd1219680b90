"""Resume points: what a training run needs to continue bit for bit, saved atomically to `<run_dir>/resume.pt`.

A resume point holds the model, every optimizer's state (Muon momentum buffers included), the trainer's counters
(optimizer steps done, training time in ms, the wallclock stop step), every hook's state (EMA/SWA/LAWA averages,
QAT and looping switches), and per rank the data-loader position and the RNG states (python, numpy, torch CPU,
CUDA), plus the W&B run id. Written by rank 0 with `torch.save` of plain containers and tensors only, through a
temp file + fsync + rename (the previous resume point stays until the new one is complete); read with
`torch.load(weights_only=True)`, so a resume file can never run code.

`resume.pt` is separate from the final `checkpoint.pt` (golf/train/checkpoint.py): export and eval only ever see
weights of a finished run (averaged, QAT removed). A run directory holding `resume.pt` and no `metrics.json` is an
interrupted run; `train.py resume=auto` continues it (golf/train/run.py).

Signals (`StopSignals`): SIGTERM (SLURM before preemption, `scancel`), SIGUSR1 and SIGUSR2 (submitit's requeue
signal, `SUBMITIT_PREEMPT_SIGNAL`) only set a flag; the trainer checkpoints at the next step boundary, where all
ranks agree through one all-reduce, then raises `Preempted`. The entry point exits with `128 + signal`, the
status of a process ended by that signal; a handler that was installed before golf's (submitit's requeue) is
called after the checkpoint is on disk.
"""

from __future__ import annotations

import json
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golf.errors import ConfigError, GolfError
from golf.train.checkpoint import atomic_torch_save, load_failure_reason
from golf.train.config import RESUME_POLICIES, TrainRunConfig  # noqa: F401 - re-exported

RESUME_NAME = "resume.pt"
FORMAT = "golf-resume-v1"
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGUSR1", "SIGUSR2")) if s)

# Keys that may differ between the interrupted run and its resumption (where and how it is logged or saved).
RESUMABLE_CHANGES = ("resume", "logger", "trainer.checkpoint_every_steps", "trainer.checkpoint_every_seconds",
                     "export_after", "dist")


class ResumeError(GolfError):
    """A resume point is missing, corrupt, foreign, or does not match the run that tries to continue it."""


class Preempted(BaseException):  # noqa: N818 - not an error: the run stopped on request and can be resumed
    """Training stopped on a signal after writing its resume point. `exit_code` = 128 + signal number."""

    def __init__(self, signum: int, step: int, path: Path):
        self.signum, self.step, self.path = signum, step, path
        self.chain = None
        """Set by the trainer: call after cleaning up to hand the signal to the previous handler (or None)."""
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; resume point {path}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class ResumePoint:
    """What `load_resume` returns (CPU tensors)."""

    model: dict[str, torch.Tensor]
    optimizers: list[dict]
    trainer: dict
    """step, train_ms, stop_after (-1 = none), world_size, wandb_id."""
    hooks: list[dict]
    """One state dict per hook, in build order."""
    ranks: list[dict]
    """Per rank: {"loader": TokenStream.resume_state(), "rng": capture_rng()}."""
    config: TrainRunConfig

    @property
    def step(self) -> int:
        return int(self.trainer["step"])


def capture_rng() -> dict:
    """This process's RNG states as plain containers and tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: str | Path, payload: dict, config: TrainRunConfig) -> Path:
    """Write a resume point (payload from `Trainer.resume_payload`) atomically; returns the path."""
    return atomic_torch_save({"format": FORMAT, "config_json": json.dumps(config.to_dict(), sort_keys=True),
                              **payload}, Path(path))


def load_resume(path: str | Path) -> ResumePoint:
    """Read `path`. Raises ResumeError (one line naming the file) for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"{path}: resume point not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, unsafe pickle, ... (torch's weights_only advice never shown)
        raise ResumeError(f"{path}: cannot load resume point: {load_failure_reason(exc)}") from None
    keys = ("model", "optimizers", "trainer", "hooks", "ranks", "config_json")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or any(k not in raw for k in keys):
        raise ResumeError(f"{path}: not a golf resume point (expected format {FORMAT})")
    try:
        config = TrainRunConfig.from_dict(json.loads(raw["config_json"]))
    except (ConfigError, ValueError, TypeError) as exc:
        raise ResumeError(f"{path}: stored run config is invalid ({str(exc).splitlines()[0]})") from None
    return ResumePoint(raw["model"], raw["optimizers"], raw["trainer"], raw["hooks"], raw["ranks"], config)


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_same_run(stored: TrainRunConfig, current: TrainRunConfig, path: Path) -> None:
    """Raise ResumeError naming the first key (outside RESUMABLE_CHANGES) whose value differs."""
    a, b = _flat(stored.to_dict()), _flat(current.to_dict())
    for key in sorted(set(a) | set(b)):
        if key.startswith(RESUMABLE_CHANGES):
            continue
        if a.get(key) != b.get(key):
            raise ResumeError(f"{path} was written with {key}={a.get(key)!r}, this run has {key}={b.get(key)!r}; "
                              "resume with the same config or use a new run directory")


class StopSignals:
    """Context manager: SIGTERM/SIGUSR1/SIGUSR2 set `self.received` instead of killing the process.

    `previous_handler(signum)` gives the handler that was installed before (e.g. submitit's checkpoint-and-requeue) once
    golf has written its resume point. Outside the main thread (signals cannot be installed there) it does nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.received = self.received or signum

    def __enter__(self) -> StopSignals:
        try:
            for s in STOP_SIGNALS:
                self.previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread
            self.previous.clear()
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)

    def previous_handler(self, signum: int):
        """A callable that hands `signum` to the Python handler installed before golf's (e.g. submitit's
        checkpoint-and-requeue), or None when there was none."""
        previous = self.previous.get(signum)
        if not callable(previous):
            return None
        return lambda: previous(signum, None)
