"""Analytic FLOP count of the AC predictor (checked against torch's FlopCounterMode in tests)."""

from __future__ import annotations

from worldmodel.models.predictor import COND_TOKENS, PredictorConfig


def predictor_flops(cfg: PredictorConfig, samples: int, iterations: int, horizon: int) -> float:
    """Multiply-adds x 2 of the predictor's blocks for one plan (H = 1: one step per sample;
    larger H counts each step against its growing keys). Embeddings and the head are included
    as linear layers; norms, RoPE and softmax are not."""
    tokens = cfg.tokens_per_frame + COND_TOKENS
    w, m = cfg.width, cfg.mlp_dim
    per_token_linear = 2 * (w * 3 * w + w * w + 2 * w * m)  # qkv, proj, MLP in and out
    total = 0.0
    for h in range(horizon):
        keys = tokens * (h + 1)
        attn = 2 * 2 * tokens * keys * w  # q k^T and attn v
        total += cfg.depth * (tokens * per_token_linear + attn)
        total += 2 * tokens * (cfg.encoder_dim * w + w * cfg.encoder_dim)  # in and out
    return total * samples * iterations
