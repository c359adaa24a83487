"""V-JEPA 2 video encoder: tubelet patch embedding + pre-norm ViT blocks with 3-D RoPE.

Module names follow the released checkpoints (``patch_embed.proj``, ``blocks.{i}.norm1``,
``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``,
``blocks.{i}.mlp.fc2``, ``norm``) so that loading published weights is a prefix strip.

Tensor letters: B batch, T frames, S image side, N tokens, D width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.models.rope import (
    Positions,
    RotaryEmbedding3D,
    grid_positions,
    positions_from_indices,
)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a :class:`VisionTransformer`.

    ``mlp_dim`` is the hidden width of the MLP (published g uses 6144 = 1408 * 48 / 11).
    """

    image_size: int = 64
    patch_size: int = 8
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_dim: int = 768
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "tubelet_size", "in_chans", "embed_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EncoderConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("depth", "num_heads", "mlp_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EncoderConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"EncoderConfig.image_size {self.image_size} not divisible by "
                f"patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"EncoderConfig.embed_dim {self.embed_dim} not divisible by "
                f"num_heads {self.num_heads}"
            )
        if self.embed_dim // self.num_heads < 6:
            raise ValueError(f"EncoderConfig head dim {self.embed_dim // self.num_heads} < 6")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) patches per frame at ``image_size``."""
        side = self.image_size // self.patch_size
        return side, side


ENCODER_PRESETS: dict[str, EncoderConfig] = {
    # CPU presets: 64 px, patch 8 -> 8x8 = 64 tokens per tubelet.
    "vit_tiny_cpu": EncoderConfig(64, 8, 2, 3, 192, 6, 3, 768),
    "vit_nano_cpu": EncoderConfig(64, 8, 2, 3, 96, 4, 2, 384),
    # Published V-JEPA 2 sizes (256 px, patch 16, tubelet 2).
    "vit_l": EncoderConfig(256, 16, 2, 3, 1024, 24, 16, 4096),
    "vit_h": EncoderConfig(256, 16, 2, 3, 1280, 32, 16, 5120),
    "vit_g": EncoderConfig(256, 16, 2, 3, 1408, 40, 22, 6144),
    "vit_g_384": EncoderConfig(384, 16, 2, 3, 1408, 40, 22, 6144),
}


class PatchEmbed3D(nn.Module):
    """Conv3d tubelet embedding: (B, C, T, S, S) -> (B, T/t * S/p * S/p, D), time-major."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        x = self.proj(x)  # (B, D, T', h, w)
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid  # (B, T'*h*w, D)


class RoPEAttention(nn.Module):
    """Multi-head self-attention with fused qkv and 3-D RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, rope_theta: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = RotaryEmbedding3D(dim // num_heads, rope_theta)

    def forward(self, x: Tensor, pos: Positions, attn_mask: Tensor | None = None) -> Tensor:
        """x: (B, N, D); attn_mask: bool (N, N) or (B, 1, N, N), True = may attend."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, Dh)
        q, k = self.rope(q, k, pos)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, N, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class MLP(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = RoPEAttention(dim, num_heads, qkv_bias, rope_theta)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: Tensor, pos: Positions, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), pos, attn_mask)
        return x + self.mlp(self.norm2(x))


def init_transformer_weights(module: nn.Module, blocks: nn.ModuleList) -> None:
    """Truncated-normal(0.02) linears/convs, unit LayerNorms, residual projections / sqrt(2 l)."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv3d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for layer_id, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


class VisionTransformer(nn.Module):
    """The V-JEPA 2 encoder. forward((B, 3, T, S, S)) -> (B, T/2 * h * w, D) final-norm tokens."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed3D(cfg)
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_dim, cfg.qkv_bias, cfg.norm_eps,
                  cfg.rope_theta)
            for _ in range(cfg.depth)
        )  # fmt: skip
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        init_transformer_weights(self, self.blocks)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def forward(self, x: Tensor, keep_idx: Tensor | None = None) -> Tensor:
        """Encode normalized video.

        Args:
            x: (B, C, T, S, S) normalized float video, T a multiple of the tubelet size.
            keep_idx: optional (B, K) flat token indices to keep (masked context encoding);
                positions stay those of the full grid.

        Returns:
            (B, N, D) with N = T/tubelet * h * w, or (B, K, D) when keep_idx is given.
        """
        if x.ndim != 5 or x.shape[1] != self.cfg.in_chans:
            raise ValueError(f"expected (B, {self.cfg.in_chans}, T, S, S), got {tuple(x.shape)}")
        if x.shape[2] % self.cfg.tubelet_size:
            raise ValueError(f"T={x.shape[2]} not a multiple of {self.cfg.tubelet_size}")
        tokens, (t, h, w) = self.patch_embed(x)  # (B, N, D)
        if keep_idx is None:
            pos = grid_positions(t, h, w, device=x.device)
        else:
            index = keep_idx[..., None].expand(-1, -1, tokens.shape[-1])  # (B, K, D)
            tokens = torch.gather(tokens, 1, index)
            pos = positions_from_indices(keep_idx, h, w)
        for blk in self.blocks:
            tokens = blk(tokens, pos)
        return self.norm(tokens)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())
