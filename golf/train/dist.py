"""Process-group set-up for single-process and torchrun runs (NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from golf.device import pick_device


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


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (set by torchrun) and join the process group when WORLD_SIZE > 1."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return DistContext(rank, local_rank, world_size, device)


def teardown(barrier: bool = False) -> None:
    """Leave the process group (no-op outside one). `barrier=True` (success path only: a failed rank must not
    wait for peers) first keeps a fast rank from tearing down gloo while a peer still has collectives in
    flight, seen as 'terminate called without an active exception' under CPU load."""
    if dist.is_available() and dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def all_reduce_max(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (used for the wallclock stop decision)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor(int(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
