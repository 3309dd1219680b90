"""Process-group set-up for single-process and torchrun runs (NCCL on CUDA, gloo on CPU).

The group gets a timeout (`dist.timeout_s`, default 120 s instead of the backends' 30 minutes): a collective
that waits longer raises, and `collective_errors` turns that into one `DistTimeoutError` line naming the rank;
torchrun then stops the other ranks. Single-process runs never create a group.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from golf.device import pick_device
from golf.errors import GolfError

DEFAULT_TIMEOUT_S = 120.0
_DIST_FAILURES = ("timed out", "connection closed by peer", "connection reset by peer", "nccl", "watchdog",
                  "broken pipe")


class DistTimeoutError(GolfError):
    """A collective failed: a peer rank stalled past `dist.timeout_s` or exited. One line naming the rank."""


@dataclass
class DistContext:
    """Where this process sits in the launch."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (set by torchrun) and join the process group when WORLD_SIZE > 1.

    timeout_s: process-group timeout in seconds (every collective, NCCL's watchdog included).
    """
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(timeout_s))
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device, timeout=timeout)
        else:
            dist.init_process_group(backend="gloo", timeout=timeout)
    return DistContext(rank, local_rank, world_size, device)


def is_dist_failure(exc: BaseException) -> bool:
    """True for the errors a stalled or dead peer causes (timeouts, closed connections, NCCL aborts)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(k in str(exc).lower() for k in _DIST_FAILURES)


@contextlib.contextmanager
def collective_errors(rank: int, world_size: int, timeout_s: float) -> Iterator[None]:
    """Turn a failed collective into DistTimeoutError: 'rank R of W: ...' (one line, no traceback).

    No-op without a process group; other exceptions pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if world_size > 1 and is_dist_failure(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistTimeoutError(
                f"rank {rank} of {world_size}: a collective failed after waiting up to dist.timeout_s={timeout_s:g}s"
                f" (a peer rank stalled or exited): {first[-200:]}") from exc
        raise


_FINAL_BARRIERS: list = []
"""The work handles of teardown's barriers, kept for the life of the process (see teardown)."""


def teardown(barrier: bool = False) -> None:
    """Leave the process group (no-op outside one). `barrier=True` (success path only: a failed rank must not
    wait for peers) first keeps a fast rank from tearing down gloo while a peer still has collectives in
    flight, seen as 'terminate called without an active exception' under CPU load.

    The barrier's work handle is kept alive until the process exits: otherwise gloo's worker thread may free it,
    and freeing its tensors needs the GIL, while the main thread holds the GIL and waits for that worker's lock
    when the last reference to the process group (DDP's reducer) goes — a deadlock seen under load in a 2-rank
    CPU run (py-spy: ~ProcessGroupGloo in the main thread, ~AsyncBarrierWork in ProcessGroupGloo::runLoop)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if barrier:
                work = dist.barrier(async_op=True)
                _FINAL_BARRIERS.append(work)
                work.wait()
        finally:
            dist.destroy_process_group()


def all_reduce_max(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (used for the wallclock stop decision)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor(int(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest `value` over ranks (a job's wall time is its slowest rank's); `value` alone without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
