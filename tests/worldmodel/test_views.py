"""Several cameras side by side: the multi-view encoder's token layout, the cache, wm-train and
the saved world model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.models.views import (
    MultiViewEncoder,
    mosaic,
    parse_views,
    view_token_mask,
    with_views,
)
from worldmodel.training.cache import CacheConfig, build_cache
from worldmodel.training.feature_cache import FeatureCache
from worldmodel.training.train import train
from worldmodel.world_model import WorldModel

MICRO = EncoderConfig(image_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_dim=96)
VIEWS = ("exterior", "wrist")


def _encoder(seed: int = 0) -> FrozenEncoder:
    torch.manual_seed(seed)
    return FrozenEncoder(VisionTransformer(MICRO), PreprocessConfig(32), batch_size=3)


def test_parse_views():
    assert parse_views("exterior+wrist") == VIEWS
    assert parse_views(["exterior"]) == ("exterior",)
    for bad in ("", "exterior+", "wrist+wrist", []):
        with pytest.raises(ValueError, match="views"):
            parse_views(bad)


def test_views_are_encoded_separately_and_laid_side_by_side():
    base = _encoder()
    enc = MultiViewEncoder(base, VIEWS)
    rng = np.random.default_rng(0)
    ext, wrist = (rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    z = enc.encode_frames(mosaic([ext, wrist]))
    assert enc.grid == (4, 8) and z.shape == (5, 32, 48) == (5, enc.tokens_per_frame, 48)
    grid = z.view(5, 4, 2, 4, 48)  # (B, rows, view, cols, D)
    torch.testing.assert_close(grid[:, :, 0].reshape(5, 16, 48), base.encode_frames(ext))
    torch.testing.assert_close(grid[:, :, 1].reshape(5, 16, 48), base.encode_frames(wrist))
    # identity names the views and their order; one view is the encoder itself
    ids = {enc.identity(), base.identity(), MultiViewEncoder(base, VIEWS[::-1]).identity()}
    assert len(ids) == 3
    assert with_views(base, "exterior") is base
    with pytest.raises(ValueError, match="side by side"):
        enc.encode_frames(ext)  # one view where two are expected


def test_cache_train_and_world_model_with_two_views(tmp_path, small_train_cfg):
    write_synthetic_dataset(tmp_path / "ds", 4, lengths=8, image_size=32, seed=1, cameras=VIEWS)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "enc")
    cache_cfg = dict(data_root=str(tmp_path / "ds"), encoder_dir=str(tmp_path / "enc"),
                     batch_size=16, device="cpu")  # fmt: skip
    build_cache(CacheConfig(cache_dir=str(tmp_path / "both"), views="exterior+wrist", **cache_cfg))
    build_cache(CacheConfig(cache_dir=str(tmp_path / "ext"), **cache_cfg))
    base = FrozenEncoder.load(tmp_path / "enc")
    both = FeatureCache(tmp_path / "both", MultiViewEncoder(base, VIEWS).identity())
    ext = FeatureCache(tmp_path / "ext", base.identity())
    assert both.tokens_per_frame == 2 * ext.tokens_per_frame
    h, w = base.grid
    left = np.asarray(both.features(2), np.float32).reshape(8, h, 2, w, -1)[:, :, 0]
    np.testing.assert_array_equal(left.reshape(8, h * w, -1), ext.features(2))
    with pytest.raises(StaleCacheError):  # a one-view cache is not taken for a two-view one
        FeatureCache(tmp_path / "ext", MultiViewEncoder(base, VIEWS).identity())

    cfg = small_train_cfg(
        tmp_path / "run", data_root=str(tmp_path / "ds"), encoder_dir=str(tmp_path / "enc"),
        cache_dir=str(tmp_path / "both"), views="exterior+wrist", max_steps=10,
    )  # fmt: skip
    train(cfg)
    folder = tmp_path / "run" / "world_model"
    assert json.loads((folder / "world_model.json").read_text())["views"] == list(VIEWS)
    wm = WorldModel.load(folder)
    assert wm.views == VIEWS and wm.predictor.cfg.input_grid == (h, 2 * w)
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    z = wm.encode(frames, np.zeros((2, 7), np.float32))
    assert z.shape == (2, wm.predictor.cfg.tokens_per_frame, base.embed_dim)
    with pytest.raises(ValueError, match="side by side"):
        wm.encode(frames[:, :, :32], np.zeros((2, 7), np.float32))
    rows, cols = wm.predictor.cfg.grid  # pooled: a view's tokens stay on its own side
    wrist = wm.view_tokens("wrist").view(rows, cols)
    assert wrist[:, cols // 2 :].all() and not wrist[:, : cols // 2].any()
    with pytest.raises(ValueError, match="views"):  # a wrapped encoder must name the same views
        WorldModel(wm.encoder, wm.predictor)


def test_train_refuses_a_camera_the_data_lacks(tmp_path, small_train_cfg):
    write_synthetic_dataset(tmp_path / "ds", 3, lengths=6, image_size=32, seed=0)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "enc")
    cfg = small_train_cfg(
        tmp_path / "run", data_root=str(tmp_path / "ds"), encoder_dir=str(tmp_path / "enc"),
        mode="on_the_fly", views="exterior+wrist",
    )  # fmt: skip
    with pytest.raises(KeyError, match="no camera 'wrist'"):
        train(cfg)


def test_view_token_mask_picks_each_views_columns():
    mask = view_token_mask(VIEWS, (2, 4), "wrist")  # 2 rows, 2 columns per view
    assert mask.tolist() == [False, False, True, True] * 2
    assert view_token_mask(VIEWS, (2, 4), ["exterior"]).tolist() == [True, True, False, False] * 2
    assert view_token_mask(VIEWS, (2, 4), "wrist+exterior").all()
    assert view_token_mask(("exterior",), (3, 3), "exterior").all()
    with pytest.raises(ValueError, match="not all in"):
        view_token_mask(VIEWS, (2, 4), "top")
    with pytest.raises(ValueError, match="side by side"):
        view_token_mask(VIEWS, (2, 3), "wrist")


def test_the_default_view_on_a_one_camera_dataset_is_that_camera():
    """#23: a robot whose only camera is called `front` needs no views= override."""
    from worldmodel.models.views import resolve_views

    assert resolve_views("exterior", ("front",)) == ("front",)
    assert resolve_views("exterior", ("exterior", "wrist")) == ("exterior",)
    assert resolve_views("wrist", ("front",)) == ("wrist",)  # asked for: kept (and refused later)
    assert resolve_views("exterior", ("front", "side")) == ("exterior",)  # ambiguous: no guess
