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


def rope_tables(pos: Positions, head_dim: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of every rotated dim, computed once per set of positions.

    Returns:
        (cos, sin), each (N, R) or (B, 1, N, R) float32: ``R = head_dim`` when it is even (angle 0
        on the leftover dims), else ``3 * rope_chunk_dim(head_dim)`` (leftover dims not touched).
        ``sin`` is negated on even dims (the sign of the rotation, see ``apply_rope_tables``).
        Tokens with ``spatial`` False get angle 0 on the height/width chunks: cos 1, sin 0,
        i.e. they are left exactly unchanged there.
    """
    c = rope_chunk_dim(head_dim)
    if c == 0:
        raise ValueError(f"head dim {head_dim} too small for 3-D RoPE (needs >= 6)")
    half = c // 2
    device = pos.t.device
    omega = 1.0 / theta ** (torch.arange(half, dtype=torch.float32, device=device) / half)
    omega = torch.cat([omega, omega])  # (C,): half vector repeated
    angles = [p.float()[..., None] * omega for p in (pos.t, pos.h, pos.w)]  # each (..., N, C)
    if pos.spatial is not None:
        keep = pos.spatial[..., None].to(torch.float32)
        angles[1], angles[2] = angles[1] * keep, angles[2] * keep
    if head_dim % 2 == 0 and head_dim > 3 * c:  # angle 0 on the leftover dims: no concat later
        angles.append(angles[0].new_zeros(*angles[0].shape[:-1], head_dim - 3 * c))
    angle = torch.cat(angles, dim=-1)  # (..., N, 3C) or (..., N, Dh)
    if angle.ndim == 3:
        angle = angle[:, None]  # (B, 1, N, 3C) broadcasts over heads
    sin = angle.sin()
    sin[..., 0::2] *= -1  # rot(x) = [-x_1, x_0, ...] = swap(x) * [-1, 1, ...]: sign folded in
    return angle.cos(), sin


def apply_rope_tables(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rot(x) * sin`` on the first R dims of x (..., N, Dh); the rest unchanged.

    ``sin`` comes from :func:`rope_tables` with the rotation's signs folded in, so the rotation
    is a swap of adjacent dims."""
    r = cos.shape[-1]
    xf = x.float()
    head = xf[..., :r]
    swapped = head.unflatten(-1, (r // 2, 2)).flip(-1).flatten(-2)  # [x_1, x_0, x_3, x_2, ...]
    out = torch.addcmul(head * cos, swapped, sin)
    if r < x.shape[-1]:
        out = torch.cat([out, xf[..., r:]], dim=-1)
    return out.to(x.dtype)


def apply_rope(x: Tensor, pos: Positions, theta: float = 10000.0) -> Tensor:
    """Rotate queries or keys by their 3-D positions.

    Args:
        x: (B, heads, N, Dh) queries or keys.
        pos: per-token positions, each (N,) or (B, N).
        theta: frequency base.

    Returns:
        (B, heads, N, Dh) rotated tensor (leftover dims unchanged).
    """
    return apply_rope_tables(x, *rope_tables(pos, x.shape[-1], theta))


class RotaryEmbedding3D(torch.nn.Module):
    """Parameter-free module form of :func:`apply_rope` for use inside attention layers."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if rope_chunk_dim(head_dim) == 0:
            raise ValueError(f"head_dim must be >= 6 for 3-D RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta

    def forward(self, q: Tensor, k: Tensor, pos: Positions) -> tuple[Tensor, Tensor]:
        """Rotate q and k, each (B, heads, N, Dh) (one set of tables for both)."""
        cos, sin = rope_tables(pos, self.head_dim, self.theta)
        return apply_rope_tables(q, cos, sin), apply_rope_tables(k, cos, sin)
