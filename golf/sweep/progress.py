"""Sweep progress: `job k/N` with elapsed time and ETA, logged by the golf_sweep callback."""

from __future__ import annotations

import math
import time

from omegaconf import DictConfig


def _count(value: str) -> int | None:
    """Number of values of one sweep parameter: 'a,b,c' -> 3; range()/choice()/interval() -> None (unknown)."""
    text = str(value).strip()
    if text.startswith(("[", "{")):  # a list/dict value, not a sweep
        return 1
    if text.startswith(("range(", "choice(", "interval(", "tag(", "glob(")):
        if text.startswith("choice("):
            return len([v for v in text[len("choice("):-1].split(",") if v.strip()])
        return None
    return len(text.split(",")) if text else 1


def expected_jobs(config: DictConfig) -> int | None:
    """Jobs a multirun will launch: Optuna's n_trials, else the product of the value counts of the sweeper's
    params and of the command-line overrides with commas (a command-line key replaces the preset's). None when
    unknown."""
    hydra = config.hydra
    n_trials = hydra.sweeper.get("n_trials") if "sweeper" in hydra else None
    if n_trials:
        return int(n_trials)
    params: dict[str, str] = {}
    for k, v in (hydra.sweeper.get("params") or {}).items():
        params[str(k)] = str(v)
    for o in hydra.overrides.task:
        if "=" not in o:
            continue
        k, v = o.split("=", 1)
        k = k.lstrip("+~")
        if k in params or "," in v:  # a command-line value replaces the preset's parameter
            params[k] = v
    total = 1
    for v in params.values():
        n = _count(v)
        if n is None:
            return None
        total *= n
    return total


class SweepProgress:
    """Counts jobs of one sweep process and formats `sweep: job k/N ...` lines."""

    def __init__(self, total: int | None = None, clock=time.monotonic) -> None:
        self.total, self.clock = total, clock
        self.t0 = clock()
        self.started = self.finished = 0

    def _of(self, k: int) -> str:
        return f"{k}/{self.total}" if self.total else f"{k}"

    def start(self) -> str:
        self.started += 1
        return f"sweep: job {self._of(self.started)} starting; {self._times()}"

    def end(self, status: str) -> str:
        self.finished += 1
        return f"sweep: job {self._of(self.finished)} {status}; {self._times()}"

    def _times(self) -> str:
        elapsed = self.clock() - self.t0
        text = f"elapsed {_hms(elapsed)}"
        if self.total and self.finished:
            left = max(0, self.total - self.finished)
            text += f", ETA {_hms(elapsed / self.finished * left)} for {left} more job(s)"
        return text


def _hms(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
