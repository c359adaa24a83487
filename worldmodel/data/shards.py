"""Episode sharding for jobs that write one file per episode (wm-import, wm-cache) under
``torchrun``: rank r of a world of W takes the episodes with ``index % W == r``; rank 0 alone
writes the shared files (``meta.json``, the summary) before and after everyone's episodes.

One process (no ``WORLD_SIZE`` in the environment) is a world of 1 and needs no process group.
Under ``torchrun`` the ranks join a gloo group (CPU collectives only: barriers and small
summaries), across machines too (``--nnodes``, ``--rdzv-endpoint``); a rank that fails leaves the
others waiting at the next barrier until gloo's timeout.
"""

from __future__ import annotations

import os
from typing import Any


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def mine(index: int, rank: int, world: int) -> bool:
    """Whether episode ``index`` is this rank's."""
    return index % world == rank


def barrier(world: int) -> None:
    """Wait for every rank (no-op in a world of 1)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a world of 1)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def on_rank0(fn, rank: int, world: int):
    """Run ``fn()`` on rank 0 alone and wait for it on every rank (a barrier); when it raises,
    every rank raises too (the others with a DatasetError quoting rank 0's error), instead of
    waiting at the next barrier until gloo's timeout. Returns ``fn()``'s result on rank 0."""
    from worldmodel.errors import DatasetError

    result, error = None, None
    if rank == 0:
        try:
            result = fn()
        except Exception as exc:  # shared below, then re-raised as it was on rank 0
            error = exc
    message = gather(None if error is None else f"{type(error).__name__}: {error}", world)[0]
    if error is not None:
        raise error
    if message is not None:
        raise DatasetError(f"rank 0 failed, so this rank stops too: {message}")
    return result
