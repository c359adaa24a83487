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


def stop_on_non_finite(loss: torch.Tensor, step: int, job: str) -> None:
    """Raise FloatingPointError (on every rank together) when ``loss`` is NaN or inf, before
    the update: the weights and the last checkpoint stay good and a rerun resumes from it."""
    finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # one rank's NaN stops them all
    if finite.item() < 1:
        raise FloatingPointError(
            f"{job}: the loss is {float(loss)} at step {step} (on this or another rank): "
            "non-finite inputs, or a learning rate too high. The last checkpoint is untouched; "
            "fix the cause and rerun to resume from it."
        )
