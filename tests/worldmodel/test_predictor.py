"""ACPredictor: shapes, block causality, KV-cache equivalence, pooling, published layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import worldmodel.models.predictor as predictor_module
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor, PredictorConfig, attention
from worldmodel.models.rope import apply_rope

CFG = PredictorConfig(
    encoder_dim=24, width=48, depth=2, num_heads=2, mlp_dim=64, input_grid=(4, 4), pool_kernel=2
)


def _inputs(batch: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = CFG.tokens_per_frame
    z = torch.randn(batch, steps, n, CFG.encoder_dim, generator=g)
    a = torch.randn(batch, steps, 7, generator=g) * 0.1
    s = torch.randn(batch, steps, 7, generator=g)
    return z, a, s


@pytest.fixture(scope="module")
def model() -> ACPredictor:
    torch.manual_seed(0)
    return ACPredictor(CFG).eval()


@pytest.mark.parametrize("batch", [1, 4])
def test_shapes(model, batch):
    z, a, s = _inputs(batch, 3)
    out = model(z, a, s)
    assert out.shape == (batch, 3, CFG.tokens_per_frame, CFG.encoder_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("what", ["action", "state", "frame"])
def test_block_causal(model, what):
    z, a, s = _inputs(2, 4)
    base = model(z, a, s)
    z2, a2, s2 = z.clone(), a.clone(), s.clone()
    {"action": a2, "state": s2, "frame": z2}[what][:, 2] += 1.0
    out = model(z2, a2, s2)
    torch.testing.assert_close(out[:, :2], base[:, :2], atol=1e-6, rtol=0)
    assert (out[:, 2] - base[:, 2]).abs().max() > 1e-4  # step 2 itself sees the change


def test_same_step_tokens_see_each_other(model):
    # Frame tokens of step t attend to action_t: the prediction must depend on it.
    z, a, s = _inputs(1, 1)
    a2 = a.clone()
    a2[:, 0, 0] += 0.5
    assert (model(z, a2, s) - model(z, a, s)).abs().max() > 1e-4


@pytest.mark.parametrize("keys", [6, 12, 64])  # the small-key matmul path, up to its limit
def test_attention_matches_sdpa_with_and_without_mask(keys):
    g = torch.Generator().manual_seed(5)
    q = torch.randn(3, 2, 6, 8, generator=g)
    k, v = torch.randn(2, 3, 2, keys, 8, generator=g).unbind(0)
    mask = torch.rand(6, keys, generator=g) > 0.3
    mask[:, 0] = True  # every query sees at least one key
    for m in (None, mask):
        torch.testing.assert_close(
            attention(q, k, v, m), F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        )


def test_forward_same_on_either_attention_path(model, monkeypatch):
    z, a, s = _inputs(2, 3)
    fast = model(z, a, s)
    monkeypatch.setattr(predictor_module, "SMALL_ATTENTION_KEYS", 0)  # SDPA everywhere
    torch.testing.assert_close(model(z, a, s), fast, atol=1e-5, rtol=1e-5)


def test_incremental_cache_equals_full(model):
    z, a, s = _inputs(3, 5)
    full = model(z, a, s)
    cache = model.new_cache()
    outs = [model(z[:, :2], a[:, :2], s[:, :2], cache=cache)]  # prefill two steps at once
    for t in range(2, 5):
        outs.append(model(z[:, t : t + 1], a[:, t : t + 1], s[:, t : t + 1], cache=cache))
    assert cache.num_steps == 5
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_cache_expand_over_samples(model):
    b, samples = 2, 3
    z, a, s = _inputs(b, 3)
    cache = model.new_cache()
    model(z[:, :2], a[:, :2], s[:, :2], cache=cache)  # context once per B
    big = cache.expand(samples)
    # Per-sample different last step, computed for B*S rows at once.
    zs, as_, ss = _inputs(b * samples, 1, seed=1)
    out = model(zs, as_, ss, cache=big)[:, 0]
    for i in range(b):
        for j in range(samples):
            r = i * samples + j
            zz = torch.cat([z[i : i + 1, :2], zs[r : r + 1]], dim=1)
            aa = torch.cat([a[i : i + 1, :2], as_[r : r + 1]], dim=1)
            st = torch.cat([s[i : i + 1, :2], ss[r : r + 1]], dim=1)
            ref = model(zz, aa, st)[0, -1]
            torch.testing.assert_close(out[r], ref, atol=1e-5, rtol=0)


def test_truncated_cache_branches_independently(model):
    z, a, s = _inputs(1, 3)
    cache = model.new_cache()
    model(z, a, s, cache=cache)
    short = cache.truncated(1)
    out = model(z[:, 1:2], a[:, 1:2], s[:, 1:2], cache=short)
    torch.testing.assert_close(out, model(z[:, :2], a[:, :2], s[:, :2])[:, 1:], atol=1e-5, rtol=0)
    assert cache.num_steps == 3 and cache.keys[0].shape[2] == 3 * model.tokens_per_step


def test_read_only_cache_attends_to_the_past_and_keeps_nothing(model):
    z, a, s = _inputs(2, 3)
    cache = model.new_cache()
    model(z[:, :2], a[:, :2], s[:, :2], cache=cache)
    keys, values = list(cache.keys), list(cache.values)
    view = cache.read_only()
    out = model(z[:, 2:], a[:, 2:], s[:, 2:], cache=view)
    torch.testing.assert_close(out, model(z, a, s)[:, 2:], atol=1e-5, rtol=0)
    for c in (cache, view):  # neither the cache nor the view kept the new step
        assert c.num_steps == 2
        assert all(k is k0 for k, k0 in zip(c.keys, keys, strict=True))
        assert all(v is v0 for v, v0 in zip(c.values, values, strict=True))
    assert not view.copy().store and cache.store
    empty = model.new_cache().read_only()  # no past: the step attends to itself only
    out0 = model(z[:, :1], a[:, :1], s[:, :1], cache=empty)
    torch.testing.assert_close(out0, model(z[:, :1], a[:, :1], s[:, :1]), atol=1e-5, rtol=0)
    assert empty.keys == [None] * model.cfg.depth and empty.num_steps == 0


def test_pool_averages_blocks(model):
    z = torch.arange(16.0).view(1, 16, 1).expand(1, 16, CFG.encoder_dim)  # 4x4 grid, value=index
    pooled = model.pool(z)
    assert pooled.shape == (1, 4, CFG.encoder_dim)
    # top-left 2x2 block holds indices 0, 1, 4, 5
    assert pooled[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert pooled[0, 3, 0].item() == pytest.approx((10 + 11 + 14 + 15) / 4)
    with pytest.raises(ValueError, match="tokens"):
        model.pool(torch.zeros(1, 5, CFG.encoder_dim))


def test_positions_layout(model):
    # CFG: 4x4 input grid pooled 2x2 -> 2x2 frame tokens; 2 + 4 = 6 tokens per step.
    pos = model.positions(3, 2, "cpu")
    assert pos.t.tolist() == [3.0] * 6 + [4.0] * 6  # time = step index, shared by all tokens
    assert pos.spatial.tolist() == [False, False, True, True, True, True] * 2
    # pooled cells sit on the unpooled grid (stride 2), action/state tokens at 0
    assert pos.h.tolist() == [0.0, 0.0, 0.0, 0.0, 2.0, 2.0] * 2
    assert pos.w.tolist() == [0.0, 0.0, 0.0, 2.0, 0.0, 2.0] * 2


def test_action_state_tokens_get_temporal_rotation_only(model):
    # With the shared rope: rotating a vector at an action token's position only changes the
    # time chunk; a frame token at a nonzero row changes its height chunk as well.
    pos = model.positions(2, 1, "cpu")
    x = torch.randn(1, 1, model.tokens_per_step, CFG.head_dim)
    y = apply_rope(x, pos)
    c = 2 * ((CFG.head_dim // 3) // 2)
    assert (y[..., 0, :c] - x[..., 0, :c]).abs().max() > 1e-3
    torch.testing.assert_close(y[..., 0, c:], x[..., 0, c:], atol=0, rtol=0)
    assert (y[..., -1, c : 2 * c] - x[..., -1, c : 2 * c]).abs().max() > 1e-3


def test_published_preset_is_exact():
    cfg = PREDICTOR_PRESETS["vjepa2_ac"]
    assert (cfg.depth, cfg.width, cfg.num_heads, cfg.mlp_dim, cfg.encoder_dim) == (
        24,
        1024,
        16,
        4096,
        1408,
    )
    assert cfg.pool_kernel == 1 and cfg.tokens_per_frame == 256
    with torch.device("meta"):
        model = ACPredictor(cfg)
    names = dict(model.named_parameters())
    shapes = {k: tuple(v.shape) for k, v in names.items()}
    assert shapes["predictor_embed.weight"] == (1024, 1408)
    assert shapes["action_encoder.weight"] == (1024, 7)
    assert shapes["state_encoder.weight"] == (1024, 7)
    assert shapes["extrinsics_encoder.weight"] == (1024, 6)
    assert shapes["predictor_blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert shapes["predictor_blocks.0.mlp.fc1.weight"] == (4096, 1024)
    assert shapes["predictor_proj.weight"] == (1408, 1024)
    n = sum(v.numel() for v in names.values())
    assert 290e6 < n < 320e6


def test_config_validation():
    with pytest.raises(ValueError, match="num_heads"):
        PredictorConfig(width=30, num_heads=4)
    with pytest.raises(ValueError, match="pool_kernel"):
        PredictorConfig(input_grid=(6, 6), pool_kernel=4)


def test_predict_delta_and_action_scale():
    base = PredictorConfig(
        encoder_dim=12, width=24, depth=2, num_heads=2, mlp_dim=48, input_grid=(2, 2)
    )
    torch.manual_seed(0)
    z, states = torch.randn(2, 3, 4, 12), torch.randn(2, 3, 7)
    actions = torch.randn(2, 3, 7) * 0.05
    delta = ACPredictor(replace(base, predict_delta=True)).eval()
    with torch.no_grad():
        delta.predictor_proj.weight.zero_()
        torch.testing.assert_close(delta(z, actions, states), z)  # zero change: copy the input
    plain = ACPredictor(base).eval()
    scale = (20.0, 20.0, 20.0, 4.0, 4.0, 4.0, 1.0)
    scaled = ACPredictor(replace(base, action_scale=scale)).eval()
    scaled.load_state_dict(plain.state_dict())
    with torch.no_grad():  # scaling the input == scaling the encoder's weight columns
        plain.action_encoder.weight.mul_(torch.tensor(scale))
    torch.testing.assert_close(scaled(z, actions, states), plain(z, actions, states))
    with pytest.raises(ValueError, match="action_scale"):
        PredictorConfig(action_scale=(1.0, 2.0))
