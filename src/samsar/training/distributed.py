"""Process-group setup for ``torchrun`` (multi-GPU / multi-node) and single-process runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, its device, and whether it writes files."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _device_for(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@contextlib.contextmanager
def distributed_context() -> Iterator[DistContext]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), else run alone.

    NCCL on GPUs, gloo on CPU. A group the caller already initialised is used and left open.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        yield DistContext(0, 1, 0, _device_for(0))
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device_for(local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    finally:
        if owns_group:
            dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (identity when running alone)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(value: bool, ctx: DistContext) -> bool:
    """Rank 0's decision, shared with every rank (e.g. stop on the time budget together)."""
    if not ctx.distributed:
        return value
    flag = torch.tensor([int(value)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(flag, src=0)
    return bool(flag.item())
