"""3-D rotary position embedding (time, height, width) with the released V-JEPA 2 convention.

The head dim ``Dh`` is split into three chunks of ``C = 2 * ((Dh // 3) // 2)`` dims each, rotated
by the token's time, row and column index respectively; the ``Dh - 3C`` leftover dims are left
unrotated. Within a chunk, with ``k = C / 2`` and frequencies ``f_i = 1 / 10000^(i / k)``:

    angle = pos * [f_0 .. f_{k-1}, f_0 .. f_{k-1}]          (half vector repeated, length C)
    rot(x) = [-x_1, x_0, -x_3, x_2, ...]                     (adjacent dims paired)
    x' = x * cos(angle) + rot(x) * sin(angle)

This is what the released weights (and Hugging Face ``VJEPA2Model``) compute: the sin/cos half
vector is *repeated*, not interleaved, while the rotation pairs *adjacent* dims. It is not a true
2-D rotation per pair, but matching the released features requires exactly this.

Tokens without a spatial position (the action/state tokens of the AC predictor) get the temporal
rotation only: pass ``spatial`` False for them and their height/width chunks stay unrotated.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Positions(NamedTuple):
    """Per-token positions, each (N,) or (B, N), float or integer.

    ``spatial`` (same shape, bool) marks tokens that get the height/width rotation; None means
    all of them do.
    """

    t: Tensor
    h: Tensor
    w: Tensor
    spatial: Tensor | None = None


def rope_chunk_dim(head_dim: int) -> int:
    """Dims rotated per axis: ``2 * ((head_dim // 3) // 2)``."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(t: int, h: int, w: int, device: torch.device | None = None) -> Positions:
    """Positions of a dense (t, h, w) token grid flattened time-major, then rows, then columns.

    Returns:
        Positions with t, h, w each (t*h*w,) float32.
    """
    ids = torch.arange(t * h * w, device=device)
    t_ids = ids // (h * w)
    rem = ids - t_ids * (h * w)
    h_ids = rem // w
    w_ids = rem - h_ids * w
    return Positions(t_ids.float(), h_ids.float(), w_ids.float())


def positions_from_indices(indices: Tensor, h: int, w: int) -> Positions:
    """Positions of selected tokens of a dense grid given their flat indices (any shape)."""
    t_ids = torch.div(indices, h * w, rounding_mode="floor")
    rem = indices - t_ids * (h * w)
    h_ids = torch.div(rem, w, rounding_mode="floor")
    w_ids = rem - h_ids * w
    return Positions(t_ids.float(), h_ids.float(), w_ids.float())


def _rotate_chunk(x: Tensor, pos: Tensor, theta: float) -> Tensor:
    """Rotate one chunk. x: (B, heads, N, C); pos: (N,) or (B, N). Returns (B, heads, N, C)."""
    c = x.shape[-1]
    half = c // 2
    omega = torch.arange(half, dtype=torch.float32, device=x.device) / half
    omega = 1.0 / theta**omega  # (C/2,)
    if pos.ndim == 2:
        pos = pos[:, None]  # (B, 1, N) broadcasts over heads
    angle = pos.float()[..., None] * omega  # (..., N, C/2)
    angle = torch.cat([angle, angle], dim=-1)  # (..., N, C): half vector repeated
    sin, cos = angle.sin(), angle.cos()
    pairs = x.float().unflatten(-1, (half, 2))  # (B, heads, N, C/2, 2) adjacent pairs
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x.float() * cos + rotated * sin).to(x.dtype)


def apply_rope(x: Tensor, pos: Positions, theta: float = 10000.0) -> Tensor:
    """Rotate queries or keys by their 3-D positions.

    Args:
        x: (B, heads, N, Dh) queries or keys.
        pos: per-token positions, each (N,) or (B, N).
        theta: frequency base.

    Returns:
        (B, heads, N, Dh) rotated tensor (leftover dims unchanged).
    """
    c = rope_chunk_dim(x.shape[-1])
    if c == 0:
        raise ValueError(f"head dim {x.shape[-1]} too small for 3-D RoPE (needs >= 6)")
    x_t = _rotate_chunk(x[..., :c], pos.t, theta)
    x_h = _rotate_chunk(x[..., c : 2 * c], pos.h, theta)
    x_w = _rotate_chunk(x[..., 2 * c : 3 * c], pos.w, theta)
    if pos.spatial is not None:
        keep = pos.spatial[..., None]  # (N, 1) or (B, N, 1)
        if keep.ndim == 3:
            keep = keep[:, None]  # (B, 1, N, 1)
        x_h = torch.where(keep, x_h, x[..., c : 2 * c])
        x_w = torch.where(keep, x_w, x[..., 2 * c : 3 * c])
    return torch.cat([x_t, x_h, x_w, x[..., 3 * c :]], dim=-1)


class RotaryEmbedding3D(torch.nn.Module):
    """Parameter-free module form of :func:`apply_rope` for use inside attention layers."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if rope_chunk_dim(head_dim) == 0:
            raise ValueError(f"head_dim must be >= 6 for 3-D RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta

    def forward(self, q: Tensor, k: Tensor, pos: Positions) -> tuple[Tensor, Tensor]:
        """Rotate q and k, each (B, heads, N, Dh)."""
        return apply_rope(q, pos, self.theta), apply_rope(k, pos, self.theta)
