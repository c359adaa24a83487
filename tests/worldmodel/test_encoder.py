"""VisionTransformer, preprocessing and FrozenEncoder behaviour."""

import numpy as np
import pytest
import torch

from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import (
    ENCODER_PRESETS,
    EncoderConfig,
    VisionTransformer,
    count_parameters,
)
from worldmodel.models.preprocess import PreprocessConfig, Preprocessor

SMALL = EncoderConfig(image_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_dim=96)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VisionTransformer(SMALL).eval()


@pytest.mark.parametrize(("name", "millions"), [("vit_l", 304), ("vit_h", 632), ("vit_g", 1012)])
def test_published_sizes(name, millions):
    with torch.device("meta"):
        m = VisionTransformer(ENCODER_PRESETS[name])
    assert abs(count_parameters(m) / 1e6 - millions) < 1.0
    assert m.blocks[0].mlp.fc1.out_features == ENCODER_PRESETS[name].mlp_dim


def test_output_shape_and_module_names(model):
    x = torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        z = model(x)
    assert z.shape == (3, 2 * 4 * 4, 48)
    names = set(model.state_dict())
    for key in ("patch_embed.proj.weight", "blocks.1.norm1.bias", "blocks.0.attn.qkv.bias",
                "blocks.0.attn.proj.weight", "blocks.1.norm2.weight", "blocks.0.mlp.fc1.weight",
                "blocks.0.mlp.fc2.bias", "norm.weight"):  # fmt: skip
        assert key in names


def test_positions_travel_with_kept_tokens(model):
    """Encoding a permutation of all tokens returns the same features, permuted."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 32, 32)
    perm = torch.stack([torch.randperm(32) for _ in range(2)])  # (B, N)
    with torch.no_grad():
        full = model(x)
        permuted = model(x, keep_idx=perm)
    torch.testing.assert_close(permuted, torch.gather(full, 1, perm[..., None].expand(-1, -1, 48)))


def test_rope_makes_features_position_dependent(model):
    """Two patches with equal content; without positions their tokens would be identical."""
    torch.manual_seed(2)
    x = torch.randn(1, 3, 2, 32, 32)
    x[..., 8:16, 8:16] = x[..., 0:8, 0:8]  # token 5 (row 1, col 1) copies token 0
    with torch.no_grad():
        z = model(x)[0]
    assert (z[0] - z[5]).abs().max() > 2e-5  # small at init (near-uniform attention)


def test_rejects_bad_input(model):
    with pytest.raises(ValueError, match="multiple"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(image_size=30, patch_size=8)


def test_preprocess_normalizes_and_crops():
    cfg = PreprocessConfig(image_size=16)
    pre = Preprocessor(cfg)
    frames = np.full((2, 3, 20, 30, 3), 128, dtype=np.uint8)
    frames[..., :5, :] = 0  # left columns cropped away by the center crop (30 -> 20 wide)
    x = pre(frames)
    assert x.shape == (2, 3, 3, 16, 16)
    expected = (128 / 255 - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(x[0, :, 0, 8, 8].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(x[0, :, 0, :, 0].mean(-1).numpy(), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        pre(frames.astype(np.float32))


def test_frozen_single_image_is_repeated_tubelet(model):
    enc = FrozenEncoder(model, PreprocessConfig(32), batch_size=2)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    z = enc.encode_frames(frames)
    assert z.shape == (5, 16, 48) and z.dtype == torch.float32
    assert enc.grid == (4, 4) and enc.embed_dim == 48
    clip = np.repeat(frames[:, None], 2, axis=1)  # (B, 2, H, W, 3)
    with torch.no_grad():
        direct = model(Preprocessor(PreprocessConfig(32))(clip))
    torch.testing.assert_close(z, direct, atol=1e-5, rtol=1e-5)
    big_batch = FrozenEncoder(model, PreprocessConfig(32), batch_size=64)
    torch.testing.assert_close(big_batch.encode_frames(torch.from_numpy(frames)), z)
    assert not z.requires_grad


def test_identity_tracks_weights_and_preprocessing(tmp_path, model):
    enc = FrozenEncoder(model, PreprocessConfig(32))
    ident = enc.identity()
    assert FrozenEncoder(model, PreprocessConfig(32, std=(0.2, 0.2, 0.2))).identity() != ident
    enc.save(tmp_path / "enc")
    loaded = FrozenEncoder.load(tmp_path / "enc")
    assert loaded.identity() == ident
    assert FrozenEncoder.from_checkpoint(tmp_path / "enc").identity() == ident
    other = VisionTransformer(SMALL)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.norm.bias[0] += 1e-3
    assert FrozenEncoder(other, PreprocessConfig(32)).identity() != ident
