"""How frames of any size and aspect become the square frames a model sees: one function, used
when importing a dataset and again, with the policy recorded in the model, when planning.

Policies (``IMAGE_POLICIES``):
- ``crop``: center-crop the longer side to a square, then resize (drops the image's sides);
- ``pad``: pad the shorter side with black to a square, then resize (keeps the whole view);
- ``resize``: resize to a square directly (keeps the whole view, distorts the aspect).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_POLICIES = ("crop", "pad", "resize")


def check_policy(policy: str, where: str = "image_policy") -> str:
    if policy not in IMAGE_POLICIES:
        raise ValueError(f"{where} must be one of {list(IMAGE_POLICIES)}, got {policy!r}")
    return policy


def fit_frames(frames: np.ndarray, size: int, policy: str = "crop") -> np.ndarray:
    """(T, H, W, 3) or (H, W, 3) uint8 -> the same with H = W = ``size``, by ``policy``.

    Frames already ``size`` x ``size`` come back unchanged (no resampling)."""
    check_policy(policy)
    arr = np.asarray(frames)
    single = arr.ndim == 3
    batch = arr[None] if single else arr
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T,H,W,3) or (H,W,3), got {arr.dtype} {arr.shape}")
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    _, h, w, _ = batch.shape
    if (h, w) == (size, size):
        return arr
    if policy == "crop" and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        batch = batch[:, top : top + side, left : left + side]
    elif policy == "pad" and h != w:
        side = max(h, w)
        padded = np.zeros((batch.shape[0], side, side, 3), np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        padded[:, top : top + h, left : left + w] = batch
        batch = padded
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out[0] if single else out
