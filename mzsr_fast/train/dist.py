"""Data-parallel meta-training with ``torch.distributed`` (launched by ``torchrun``).

The meta-batch is split over ranks: task ``i`` of step ``t`` is built from
``step_rng(seed, t, i)`` on rank ``i % world``, so every task exists exactly once and is
the same task a 1-process run would build.  Each rank sums the meta-gradients of its
tasks (each already divided by the full meta-batch size) and one flat ``all_reduce(SUM)``
makes the average over the whole meta-batch on every rank; the Adam step then runs
identically everywhere.  Backend: ``gloo`` on CPU, ``nccl`` on CUDA.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init", "shard", "allreduce_sum_", "broadcast_", "any_flag", "barrier", "finish"]


class DistInfo:
    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str | torch.device = "cpu") -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by torchrun (``WORLD_SIZE`` > 1); returns the
    rank info and the device this rank should use (``cuda:LOCAL_RANK`` on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world <= 1:
        return DistInfo(), dev
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local), dev


def shard(n: int, info: DistInfo) -> list[int]:
    """Indices ``0..n-1`` handled by this rank (round-robin)."""
    return list(range(info.rank, n, info.world))


def allreduce_sum_(tensors: Sequence[torch.Tensor], info: DistInfo) -> None:
    """In-place sum over ranks of ``tensors`` (one flat buffer, one collective)."""
    if not info.enabled:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[off : off + n].view_as(t))
        off += n


def broadcast_(tensors: Sequence[torch.Tensor], info: DistInfo, src: int = 0) -> None:
    if not info.enabled:
        return
    for t in tensors:
        dist.broadcast(t, src)


def any_flag(flag: bool, info: DistInfo, device) -> bool:
    """True on every rank if ``flag`` is True on any rank (stop decisions stay in step)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def finish(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
