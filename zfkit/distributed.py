"""The few facts :func:`zfkit.train.fit` needs about a ``torchrun`` launch.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when they are present ``fit`` joins
the process group (gloo on CPU, nccl on CUDA) and trains with DistributedDataParallel. Without
them everything runs as a single process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "launched_by_torchrun", "current", "join", "all_reduce_sum"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, the metrics CSV and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def current() -> World:
    """The world of the initialised process group (a single process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def join(device: torch.device) -> World:
    """Initialise the default process group when launched by torchrun (if not done already)."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if world.distributed:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum ``values`` over all processes (in place; identity for a single process)."""
    if world.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
