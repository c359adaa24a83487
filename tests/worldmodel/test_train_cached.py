"""wm-train in cached mode end to end: wm-cache's real FeatureCache -> train(cfg) -> WorldModel."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.training.cache import CacheConfig, build_cache
from worldmodel.training.train import train
from worldmodel.training.train_config import TrainConfig, build_predictor
from worldmodel.training.train_data import build_source
from worldmodel.world_model import WorldModel


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """Synthetic episodes, a tiny random encoder folder and the cache wm-cache makes of them."""
    root = tmp_path_factory.mktemp("cached")
    write_synthetic_dataset(root / "ds", num_episodes=5, lengths=10, image_size=32, seed=2)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(root / "encoder")
    cache_cfg = CacheConfig(
        data_root=str(root / "ds"),
        encoder_dir=str(root / "encoder"),
        cache_dir=str(root / "features"),
        batch_size=16,
        device="cpu",
    )
    build_cache(cache_cfg)
    return root


@pytest.fixture
def cfg_for(small_train_cfg):
    """``make(cached_root, out_dir, **overrides)``: the small config in cached mode on ``cached``."""

    def make(root, out, **kw) -> TrainConfig:
        paths = dict(
            data_root=str(root / "ds"),
            encoder_dir=str(root / "encoder"),
            cache_dir=str(root / "features"),
        )
        return small_train_cfg(
            out, mode="cached", ckpt_every=20, val_fraction=0.2, **{**paths, **kw}
        )

    return make


def test_cached_batches_match_on_the_fly_encoding(cached, tmp_path, cfg_for):
    cfg = cfg_for(cached, tmp_path)
    from_cache = build_source(cfg)
    live = build_source(dataclasses.replace(cfg, mode="on_the_fly"))
    predictor = build_predictor(cfg, from_cache.feature_dim, from_cache.grid)
    refs = np.array([[0, 0], [3, 5]])
    z_c, a_c, s_c = from_cache.batch(refs, 4, predictor, "cpu")
    z_l, a_l, s_l = live.batch(refs, 4, predictor, "cpu")
    assert z_c.shape == (2, 4, 16, 96)
    torch.testing.assert_close(z_c, z_l, atol=2e-2, rtol=0)  # fp16 storage
    assert (z_c[0, 1] - z_c[0, 0]).abs().mean() > 1e-3  # frames really differ
    torch.testing.assert_close(a_c, a_l, atol=0, rtol=0)
    torch.testing.assert_close(s_c, s_l, atol=0, rtol=0)


def test_train_cached_learns_and_writes_world_model(cached, tmp_path, cfg_for):
    report = train(cfg_for(cached, tmp_path / "run"))
    rows = np.genfromtxt(tmp_path / "run" / "train_log.csv", delimiter=",", names=True)
    assert len(rows) == 40
    assert rows["loss"][-5:].mean() < 0.8 * rows["loss"][:5].mean()  # it learns
    assert report["tf_ratio"] > 0 and np.isfinite(report["val_tf"])
    wm = WorldModel.load(tmp_path / "run" / "world_model")
    reference = FrozenEncoder.load(cached / "encoder")
    assert wm.encoder.identity() == reference.identity()  # the encoder that made the cache
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    z = wm.encode(frames, np.zeros((2, 7), np.float32))
    assert z.shape == (2, 16, 96)
    out = wm.rollout(z, torch.zeros(2, 7), torch.zeros(2, 3, 2, 7))
    assert out.shape == (2, 3, 2, 16, 96) and torch.isfinite(out).all()


def test_cache_of_another_encoder_is_rejected(cached, tmp_path, cfg_for):
    torch.manual_seed(1)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "other")
    with pytest.raises(StaleCacheError, match="features"):
        build_source(cfg_for(cached, tmp_path, encoder_dir=str(tmp_path / "other")))


def test_cache_of_another_dataset_is_rejected(cached, tmp_path, cfg_for):
    write_synthetic_dataset(tmp_path / "ds", num_episodes=5, lengths=9, image_size=32, seed=3)
    with pytest.raises(StaleCacheError, match="episode 0 has 10 cached frames, dataset 9"):
        build_source(cfg_for(cached, tmp_path, data_root=str(tmp_path / "ds")))
    with pytest.raises(ValueError, match="cache_dir"):
        build_source(cfg_for(cached, tmp_path, cache_dir=""))


def test_wm_train_console_script_from_another_directory(cached, tmp_path, cfg_for):
    script = Path(sys.executable).with_name("wm-train")
    if not script.is_file():
        pytest.skip("wm-train console script not installed in this environment")
    args = [f"{k}={v}" for k, v in cfg_for(cached, tmp_path / "run", max_steps=4).__dict__.items()]
    args = [a for a in args if not a.startswith("betas=")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run([str(script), *args], cwd=work, env=env, check=True, timeout=120)
    assert WorldModel.load(tmp_path / "run" / "world_model").predictor.cfg.pool_kernel == 2
