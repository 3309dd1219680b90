"""Device choice and precision: the one place that decides cpu vs cuda and bf16 autocast.

Lowest layer of the core (imports only torch): the model loaders, evaluation modes and the trainer all use it.
"""

from __future__ import annotations

import contextlib

import torch

from golf.errors import GolfError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(GolfError):
    """A device was asked for that this machine does not have (e.g. cuda without a GPU)."""


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda:<local_rank> when CUDA is available, else cpu.

    Raises DeviceError (one line) for `cuda` on a machine without CUDA, or an unknown preference.
    """
    if preference not in DEVICES:
        raise DeviceError(f"device={preference!r}; allowed: {', '.join(DEVICES)}")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DeviceError("trainer.device=cuda but CUDA is not available on this machine; use cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def device_choice(preference: str, local_rank: int = 0) -> tuple[torch.device, str]:
    """(device, why): what `preference` resolves to here and the reason, for the first line of a run, e.g.
    "auto: CUDA available, 8 GPU(s), NVIDIA H100 80GB HBM3" or "auto: torch is a CPU-only build (2.13.0+cpu)".
    Raises DeviceError as pick_device."""
    device = pick_device(preference, local_rank)
    if device.type == "cuda":
        return device, (f"{preference}: CUDA available, {torch.cuda.device_count()} GPU(s), "
                        f"{torch.cuda.get_device_name(device)}")
    if preference == "cpu":
        return device, "cpu: requested"
    build = "torch is a CPU-only build" if torch.version.cuda is None else "CUDA build but no GPU visible"
    return device, f"auto: {build} ({torch.__version__})"


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing on CPU (bf16 on CPU is ~35x slower than fp32 here)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (timing boundaries); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


class _NoBar:
    """What `progress_bar` returns when disabled: iterates the iterable, ignores update/close."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """A tqdm progress bar, or (disable=True) a silent stand-in with the same iterate/update/close/with use.

    tqdm is imported only for an enabled bar, so a submission (no bars) does not need it.
    """
    if disable:
        return _NoBar(iterable)
    from tqdm import tqdm  # third-party, only for interactive bars

    return tqdm(iterable, **kwargs)
