"""Process-group setup shared by wm-pretrain and wm-train (one process, or under ``torchrun``)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) for ``device_name`` ("auto", "cpu", "cuda", "cuda:1", ...).

    "auto" is CUDA when available, else CPU; a bare "cuda" is this rank's ``cuda:LOCAL_RANK``.
    Under ``torchrun`` (WORLD_SIZE > 1) joins the process group: NCCL on CUDA, gloo on CPU.
    """
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device
