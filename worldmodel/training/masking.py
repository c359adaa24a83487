"""Spatio-temporal multi-block masking and the narrow mask-token predictor of V-JEPA pretraining.

A mask spec draws ``num_blocks`` rectangular blocks on the (h, w) token grid, each spanning a
run of time steps (all of them when ``temporal_scale`` is (1, 1), so the same pixels are hidden in
every frame). The union of the blocks is the prediction target, its complement the context.

Tensor letters: B batch, K kept tokens, D width; grid (t, h, w) tokens, flat index time-major.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldmodel.models.encoder import Block, init_transformer_weights
from worldmodel.models.rope import positions_from_indices


@dataclass(frozen=True)
class MaskSpec:
    """One multi-block mask: block count, area fraction, aspect ratio h/w, time fraction."""

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.num_blocks <= 0:
            raise ValueError(f"MaskSpec.num_blocks must be > 0, got {self.num_blocks}")
        for name in ("spatial_scale", "aspect_ratio", "temporal_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"MaskSpec.{name} needs 0 < lo <= hi, got {(lo, hi)}")
        if self.spatial_scale[1] > 1 or self.temporal_scale[1] > 1:
            raise ValueError(f"MaskSpec scales must be <= 1: {self}")


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def sample_block_mask(
    spec: MaskSpec,
    grid: tuple[int, int, int],
    batch: int,
    gen: torch.Generator,
    min_context_fraction: float = 0.1,
    max_tries: int = 50,
) -> Tensor:
    """Boolean target masks (B, t, h, w); block size drawn once per batch, positions per sample.

    Positions are redrawn until at least ``min_context_fraction`` of the tokens stay visible.
    """
    t, h, w = grid
    area = _uniform(*spec.spatial_scale, gen) * h * w
    ratio = _uniform(*spec.aspect_ratio, gen)
    bh = min(h, max(1, round(math.sqrt(area * ratio))))
    bw = min(w, max(1, round(math.sqrt(area / ratio))))
    bt = min(t, max(1, round(_uniform(*spec.temporal_scale, gen) * t)))
    min_context = max(1, math.ceil(min_context_fraction * t * h * w))
    mask = torch.zeros(batch, t, h, w, dtype=torch.bool)
    for b in range(batch):
        for _ in range(max_tries):  # redraw positions while too little context is left
            mask[b] = False
            for _ in range(spec.num_blocks):
                t0 = torch.randint(0, t - bt + 1, (), generator=gen).item()
                h0 = torch.randint(0, h - bh + 1, (), generator=gen).item()
                w0 = torch.randint(0, w - bw + 1, (), generator=gen).item()
                mask[b, t0 : t0 + bt, h0 : h0 + bh, w0 : w0 + bw] = True
            if (~mask[b]).sum() >= min_context:
                break
        else:
            raise ValueError(f"{spec} leaves < {min_context} context tokens on grid {grid}")
    return mask


def masks_to_indices(target: Tensor) -> tuple[Tensor, Tensor]:
    """(B, t, h, w) bool targets -> (context idx (B, Kc), target idx (B, Kt)), sorted.

    Counts are equalized across the batch by keeping the first min-count indices of each sample
    (as the published collator does), so context and target stay disjoint.
    """
    flat = target.flatten(1)  # (B, N)
    k_tgt = int(flat.sum(1).min())
    k_ctx = int((~flat).sum(1).min())
    if k_ctx == 0 or k_tgt == 0:
        raise ValueError("mask left no context or no target tokens; lower the mask scales")
    order = torch.arange(flat.shape[1])
    tgt = torch.stack([order[row][:k_tgt] for row in flat])
    ctx = torch.stack([order[~row][:k_ctx] for row in flat])
    return ctx, tgt


class MultiBlockMasker:
    """Draws (context, target) index pairs, one per spec, for a (t, h, w) token grid."""

    def __init__(self, grid: tuple[int, int, int], specs: tuple[MaskSpec, ...]) -> None:
        if not specs:
            raise ValueError("MultiBlockMasker needs at least one MaskSpec")
        self.grid = grid
        self.specs = specs

    def __call__(self, batch: int, gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        return [masks_to_indices(sample_block_mask(s, self.grid, batch, gen)) for s in self.specs]


@dataclass(frozen=True)
class MaskPredictorConfig:
    """Narrow transformer predicting target tokens from context tokens + mask tokens."""

    embed_dim: int = 192
    pred_dim: int = 96
    depth: int = 2
    num_heads: int = 2
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "pred_dim", "depth", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MaskPredictorConfig.{name} must be > 0")
        if self.pred_dim % self.num_heads or self.pred_dim // self.num_heads < 6:
            raise ValueError(f"MaskPredictorConfig: bad pred_dim/num_heads {self}")


class MaskPredictor(nn.Module):
    """predictor_embed -> [context; mask tokens] with RoPE positions -> blocks -> norm -> proj."""

    def __init__(self, cfg: MaskPredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor_embed = nn.Linear(cfg.embed_dim, cfg.pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.pred_dim))
        mlp = int(cfg.pred_dim * cfg.mlp_ratio)
        self.predictor_blocks = nn.ModuleList(
            Block(cfg.pred_dim, cfg.num_heads, mlp) for _ in range(cfg.depth)
        )
        self.predictor_norm = nn.LayerNorm(cfg.pred_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(cfg.pred_dim, cfg.embed_dim)
        init_transformer_weights(self, self.predictor_blocks)
        # Random (not zero) mask token: with a zero token and zero qkv bias every mask query is 0
        # at init and RoPE cannot tell the targets apart.
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, z_ctx: Tensor, ctx_idx: Tensor, tgt_idx: Tensor, grid: tuple[int, int, int]
    ) -> Tensor:
        """z_ctx (B, Kc, D) at ctx_idx (B, Kc); returns predictions (B, Kt, D) at tgt_idx."""
        B, k_tgt = tgt_idx.shape
        x = torch.cat(
            [self.predictor_embed(z_ctx), self.mask_token.expand(B, k_tgt, -1)], dim=1
        )  # (B, Kc + Kt, Dp)
        pos = positions_from_indices(torch.cat([ctx_idx, tgt_idx], dim=1), grid[1], grid[2])
        for blk in self.predictor_blocks:
            x = blk(x, pos)
        return self.predictor_proj(self.predictor_norm(x[:, -k_tgt:]))  # (B, Kt, D)
