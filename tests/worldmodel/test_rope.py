"""3-D RoPE: the released convention checked against a per-element reference."""

import math

import pytest
import torch

from worldmodel.models.rope import (
    Positions,
    RotaryEmbedding3D,
    apply_rope,
    apply_rope_tables,
    grid_positions,
    positions_from_indices,
    rope_chunk_dim,
    rope_tables,
)


def reference_rope(x: torch.Tensor, pos: Positions) -> torch.Tensor:
    """Element-by-element: x'[d] = x[d] cos(p f[d mod k]) + r[d] sin(p f[d mod k])."""
    N, D = x.shape[2:]
    c = rope_chunk_dim(D)
    k = c // 2
    out = x.clone()
    for n in range(N):
        for axis, p in enumerate((pos.t[n], pos.h[n], pos.w[n])):
            for j in range(c):
                d = axis * c + j
                partner = d + 1 if j % 2 == 0 else d - 1
                sign = -1.0 if j % 2 == 0 else 1.0
                angle = float(p) / 10000 ** ((j % k) / k)
                out[:, :, n, d] = x[:, :, n, d] * math.cos(angle) + sign * x[
                    :, :, n, partner
                ] * math.sin(angle)
    return out


def test_chunk_dim_formula():
    assert rope_chunk_dim(64) == 20  # 3*20 = 60 rotated, 4 left over
    assert rope_chunk_dim(88) == 28  # ViT-g head dim 1408/22 = 64; 88 -> 28
    assert rope_chunk_dim(48) == 16
    assert rope_chunk_dim(7) == 2


def test_matches_elementwise_reference_and_leaves_leftover_dims():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 40)  # head dim 40: chunk 12, 4 leftover dims
    pos = grid_positions(3, 2, 2)
    y = apply_rope(x, pos)
    torch.testing.assert_close(y, reference_rope(x, pos), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[..., 36:], x[..., 36:])
    assert not torch.allclose(y[..., :36], x[..., :36])


def test_zero_position_is_identity():
    x = torch.randn(1, 2, 5, 24)
    zeros = torch.zeros(5)
    torch.testing.assert_close(apply_rope(x, Positions(zeros, zeros, zeros)), x)


def test_temporal_only_tokens_keep_spatial_chunks():
    torch.manual_seed(1)
    x = torch.randn(2, 2, 6, 30)
    t = torch.arange(6.0)
    hw = torch.randn(6).abs() * 3
    spatial = torch.tensor([False, True, False, True, True, False])
    y = apply_rope(x, Positions(t, hw, hw, spatial))
    temporal_only = apply_rope(x, Positions(t, torch.zeros(6), torch.zeros(6)))
    full = apply_rope(x, Positions(t, hw, hw))
    torch.testing.assert_close(y[:, :, ~spatial], temporal_only[:, :, ~spatial])
    torch.testing.assert_close(y[:, :, spatial], full[:, :, spatial])


def test_batched_positions_equal_per_sample_positions():
    torch.manual_seed(2)
    x = torch.randn(3, 2, 7, 18)
    idx = torch.stack([torch.randperm(20)[:7] for _ in range(3)])  # (B, K)
    pos = positions_from_indices(idx, 2, 5)
    y = apply_rope(x, pos)
    for b in range(3):
        pos_b = Positions(pos.t[b], pos.h[b], pos.w[b])
        torch.testing.assert_close(y[b : b + 1], apply_rope(x[b : b + 1], pos_b))


def test_grid_positions_order_is_time_row_column():
    pos = grid_positions(2, 3, 4)
    assert pos.t.tolist()[:13] == [0.0] * 12 + [1.0]
    assert pos.h.tolist()[:5] == [0, 0, 0, 0, 1]
    assert pos.w.tolist()[:5] == [0, 1, 2, 3, 0]
    again = positions_from_indices(torch.arange(24), 3, 4)
    for a, b in zip(pos[:3], again[:3], strict=True):
        torch.testing.assert_close(a, b)


def test_module_rejects_tiny_head_dim():
    with pytest.raises(ValueError, match="head_dim"):
        RotaryEmbedding3D(4)


@pytest.mark.parametrize("head_dim", [31, 32, 30])  # odd, even with leftover, none left over
def test_tables_match_reference_for_any_head_dim(head_dim):
    torch.manual_seed(3)
    x = torch.randn(1, 2, 12, head_dim)
    pos = grid_positions(2, 2, 3)  # every axis moves
    cos, sin = rope_tables(pos, head_dim)
    assert cos.shape == sin.shape
    torch.testing.assert_close(
        apply_rope_tables(x, cos, sin), reference_rope(x, pos), atol=1e-5, rtol=1e-5
    )


def test_tables_broadcast_over_any_leading_layout():
    # the predictor applies one (L, 1, 1, R) table to q and k laid out as (B, L, 2, heads, Dh)
    torch.manual_seed(4)
    q, k = torch.randn(2, 3, 5, 24), torch.randn(2, 3, 5, 24)  # (B, heads, L, Dh)
    pos = grid_positions(1, 1, 5)
    cos, sin = rope_tables(pos, 24)
    packed = torch.stack([q, k], dim=2).permute(0, 3, 2, 1, 4)  # (B, L, 2, heads, Dh)
    out = apply_rope_tables(packed, cos[:, None, None], sin[:, None, None])
    torch.testing.assert_close(out[:, :, 0].transpose(1, 2), apply_rope(q, pos))
    torch.testing.assert_close(out[:, :, 1].transpose(1, 2), apply_rope(k, pos))
