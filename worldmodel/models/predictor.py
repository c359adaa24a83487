"""Action-conditioned, block-causal transformer predictor in the V-JEPA 2-AC layout.

Per time step t the sequence holds ``[action_t, state_t, N frame tokens of z_t]`` (2 + N tokens).
Every token of step t attends to all tokens of steps <= t. The output at the frame tokens of
step t predicts z_{t+1}. Parameter names follow the published weights: ``predictor_embed``,
``action_encoder``, ``state_encoder``, ``extrinsics_encoder`` (present, unused),
``predictor_blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
``predictor_norm``, ``predictor_proj``.

Positions are 3-D rotary inside attention: the head dim is split into time / height / width
chunks of ``2 * ((head_dim // 3) // 2)`` dims (leftover dims unrotated); action and state tokens
get only the time rotation. The rotation is :mod:`worldmodel.models.rope` (the released weights'
convention, shared with the encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.data.actions import ACTION_HIGH
from worldmodel.models.encoder import MLP
from worldmodel.models.kv_cache import KVCache
from worldmodel.models.rope import Positions, apply_rope_tables, rope_tables

Rope = tuple[Tensor, Tensor]  # (cos, sin) from rope_tables

COND_TOKENS = 2  # action and state tokens per step


@dataclass(frozen=True)
class PredictorConfig:
    """Sizes of the AC predictor. ``input_grid`` is the frozen encoder's (h, w) token grid;
    ``pool_kernel`` > 1 average-pools it (k x k) before the predictor sees it."""

    encoder_dim: int = 1408
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    action_dim: int = 7
    state_dim: int = 7
    extrinsics_dim: int = 6
    input_grid: tuple[int, int] = (16, 16)
    pool_kernel: int = 1
    norm_eps: float = 1e-6
    init_std: float = 0.02
    # CPU-budget options (off in the published layout): ``action_scale`` multiplies each action
    # dim before the action encoder (e.g. 1 / per-step bound, so a 5 cm step reads as 1, not
    # 0.05: Adam then learns its weights at the pace of the others); ``predict_delta`` adds the
    # input frame latent to the output, so the blocks learn the change, not the whole frame.
    action_scale: tuple[float, ...] | None = None
    predict_delta: bool = False

    def __post_init__(self) -> None:
        if self.action_scale is not None:
            object.__setattr__(self, "action_scale", tuple(float(v) for v in self.action_scale))
            if len(self.action_scale) != self.action_dim:
                raise ValueError(
                    f"action_scale has {len(self.action_scale)} entries, action_dim is "
                    f"{self.action_dim}"
                )
        for name in ("encoder_dim", "width", "depth", "num_heads", "mlp_dim", "pool_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"PredictorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} not divisible by num_heads {self.num_heads}")
        if self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} too small for 3-D RoPE (need >= 6)")
        if len(self.input_grid) != 2 or any(g % self.pool_kernel for g in self.input_grid):
            raise ValueError(
                f"input_grid {self.input_grid} must be (h, w) divisible by "
                f"pool_kernel {self.pool_kernel}"
            )

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) token grid after pooling."""
        return (self.input_grid[0] // self.pool_kernel, self.input_grid[1] // self.pool_kernel)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]


# 1 / the per-step action bounds (5 cm, 0.25 rad, gripper 1): actions read as O(1).
CPU_ACTION_SCALE = tuple(1.0 / bound for bound in ACTION_HIGH)

PREDICTOR_PRESETS: dict[str, PredictorConfig] = {
    # Published V-JEPA 2-AC predictor on ViT-g features (1408-D, 16x16 grid at 256 px).
    "vjepa2_ac": PredictorConfig(),
    # CPU-sized: small encoder features pooled 8x8 -> 4x4; scaled actions, delta prediction.
    "tiny": PredictorConfig(
        encoder_dim=192,
        width=128,
        depth=4,
        num_heads=4,
        mlp_dim=512,
        input_grid=(8, 8),
        pool_kernel=2,
        action_scale=CPU_ACTION_SCALE,
        predict_delta=True,
    ),
    "small": PredictorConfig(
        encoder_dim=384,
        width=256,
        depth=6,
        num_heads=8,
        mlp_dim=1024,
        input_grid=(16, 16),
        pool_kernel=4,
        action_scale=CPU_ACTION_SCALE,
        predict_delta=True,
    ),
}


SMALL_ATTENTION_KEYS = 64


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax attention; q (B, h, L, d), k/v (B, h, L_k, d), mask bool (L, L_k) or None.

    On CPU with few keys (one planning step: 2 + N tokens) the fused SDPA kernel's per-call
    overhead dominates and two batched matmuls are faster; elsewhere SDPA.
    """
    if q.device.type != "cpu" or k.shape[-2] > SMALL_ATTENTION_KEYS:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    w = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        w = w.masked_fill(~mask, float("-inf"))
    return w.softmax(dim=-1, dtype=torch.float32).to(v.dtype) @ v  # float32 softmax for bf16


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv, 3-D RoPE and an optional KV cache."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width, bias=True)

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor | None, cache: KVCache | None, layer: int
    ) -> Tensor:
        """x: (B, L, W) new tokens; rope: (cos, sin) tables of their positions (see
        ``rope_tables``); mask: bool (L, L_past + L)."""
        B, L, W = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, -1)
        cos, sin = (t[:, None, None] for t in rope)  # (L, 1, 1, R): broadcast over q/k, heads
        qk = apply_rope_tables(qkv[:, :, :2], cos, sin)  # q and k in one pass, (B, L, 2, h, hd)
        q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, head_dim)
        v = qkv[:, :, 2].transpose(1, 2)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        out = attention(q, k, v, mask)  # (B, heads, L, hd)
        return self.proj(out.transpose(1, 2).reshape(B, L, W))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg.width, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim)

    def forward(
        self, x: Tensor, rope: Rope, mask: Tensor | None, cache: KVCache | None, layer: int
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, mask, cache, layer)
        return x + self.mlp(self.norm2(x))


class ACPredictor(nn.Module):
    """Block-causal action-conditioned predictor (see module docstring)."""

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor_embed = nn.Linear(cfg.encoder_dim, cfg.width)
        self.action_encoder = nn.Linear(cfg.action_dim, cfg.width)
        self.state_encoder = nn.Linear(cfg.state_dim, cfg.width)
        self.extrinsics_encoder = nn.Linear(cfg.extrinsics_dim, cfg.width)  # unused, as published
        self.predictor_blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.predictor_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.predictor_proj = nn.Linear(cfg.width, cfg.encoder_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=self.cfg.init_std)
                nn.init.zeros_(m.bias)
        with torch.no_grad():  # depth-scaled residual projections
            for i, blk in enumerate(self.predictor_blocks):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    @property
    def tokens_per_step(self) -> int:
        return COND_TOKENS + self.cfg.tokens_per_frame

    def pool(self, z: Tensor) -> Tensor:
        """Average-pool frozen features over the grid: (..., h*w, D) -> (..., N, D)."""
        k = self.cfg.pool_kernel
        h, w = self.cfg.input_grid
        if z.shape[-2] != h * w:
            raise ValueError(f"expected {h * w} tokens ({h}x{w} grid), got {z.shape[-2]}")
        if k == 1:
            return z
        lead, d = z.shape[:-2], z.shape[-1]
        g = z.reshape(-1, h, w, d).permute(0, 3, 1, 2)  # (M, D, h, w)
        g = F.avg_pool2d(g, kernel_size=k)  # (M, D, h/k, w/k)
        return g.flatten(2).transpose(1, 2).reshape(*lead, -1, d)

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.depth, self.tokens_per_step)

    def positions(self, t0: int, steps: int, device: torch.device | str) -> Positions:
        """Rotary positions of ``steps`` time steps starting at step ``t0``, each (L,), L =
        steps * (2 + N). Frame tokens get (t, row, col) with rows/cols in units of the unpooled
        grid (as the released model snaps to 16x16); action/state tokens only t."""
        gh, gw = self.cfg.grid
        n = torch.arange(gh * gw, device=device)
        cond = torch.zeros(COND_TOKENS, device=device)
        row = torch.cat([cond, (n // gw).float() * (self.cfg.input_grid[0] / gh)])  # (2+N,)
        col = torch.cat([cond, (n % gw).float() * (self.cfg.input_grid[1] / gw)])  # (2+N,)
        spatial = torch.cat([cond.bool(), torch.ones(gh * gw, dtype=torch.bool, device=device)])
        t = torch.arange(t0, t0 + steps, device=device).float()
        return Positions(
            t.repeat_interleave(self.tokens_per_step),
            row.repeat(steps),
            col.repeat(steps),
            spatial.repeat(steps),
        )

    def _mask(self, past_steps: int, steps: int, device) -> Tensor | None:
        """Boolean (L_new, L_past + L_new) block-causal mask; None when one step (no mask)."""
        if steps == 1:
            return None
        q_step = torch.arange(steps, device=device).repeat_interleave(self.tokens_per_step)
        k_step = torch.arange(-past_steps, steps, device=device)
        k_step = k_step.repeat_interleave(self.tokens_per_step)
        return k_step[None, :] <= q_step[:, None]

    def forward(
        self, z: Tensor, actions: Tensor, states: Tensor, cache: KVCache | None = None
    ) -> Tensor:
        """Predict the next latent after each step.

        Args:
            z: (B, T, N, D_enc) frame tokens (pooled, as the model expects), steps
                ``cache.num_steps .. cache.num_steps + T - 1``.
            actions: (B, T, 7) action at each step.
            states: (B, T, 7) state at each step.
            cache: optional KV cache with the earlier steps; extended in place with these T.

        Returns:
            (B, T, N, D_enc); entry t predicts z_{t+1}.
        """
        B, T, N, _ = z.shape
        if (
            self.cfg.tokens_per_frame != N
            or actions.shape[:2] != (B, T)
            or states.shape[:2] != (B, T)
        ):
            raise ValueError(
                f"expected z (B,T,{self.cfg.tokens_per_frame},D), actions/states (B,T,7); got "
                f"{tuple(z.shape)}, {tuple(actions.shape)}, {tuple(states.shape)}"
            )
        if self.cfg.action_scale is not None:
            actions = actions * actions.new_tensor(self.cfg.action_scale)
        x = torch.cat(
            [
                self.action_encoder(actions)[:, :, None],  # (B, T, 1, W)
                self.state_encoder(states)[:, :, None],  # (B, T, 1, W)
                self.predictor_embed(z),  # (B, T, N, W)
            ],
            dim=2,
        ).flatten(1, 2)  # (B, T*(2+N), W)
        past = 0 if cache is None else cache.num_steps
        rope = rope_tables(self.positions(past, T, x.device), self.cfg.head_dim)  # all layers
        mask = self._mask(past, T, x.device)
        for i, blk in enumerate(self.predictor_blocks):
            x = blk(x, rope, mask, cache, i)
        if cache is not None:
            cache.advance(T)
        x = x.view(B, T, self.tokens_per_step, -1)[:, :, COND_TOKENS:]  # (B, T, N, W)
        out = self.predictor_proj(self.predictor_norm(x))
        return z + out if self.cfg.predict_delta else out
