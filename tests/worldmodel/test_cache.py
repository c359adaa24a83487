"""Feature cache: contents match the encoder, stale/partial caches are refused, resumable."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from worldmodel.errors import CacheDirError, StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.training.cache import cache_dataset
from worldmodel.training.feature_cache import MARKER_FILE, FeatureCache, episode_file

MICRO = EncoderConfig(image_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_dim=96)


class FakeEpisodes:
    """The part of the episode-dataset contract the cache uses."""

    def __init__(self, lengths, seed=0):
        rng = np.random.default_rng(seed)
        self.frames = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in lengths]
        self.reads = 0

    def __len__(self):
        return len(self.frames)

    def read_episode_frames(self, i):
        self.reads += 1
        return self.frames[i]


def make_encoder(seed=0, batch_size=4):
    torch.manual_seed(seed)
    return FrozenEncoder(VisionTransformer(MICRO), PreprocessConfig(32), batch_size=batch_size)


def test_cache_matches_encoder_and_is_memmapped(tmp_path):
    data, enc = FakeEpisodes([5, 9]), make_encoder()
    cache_dataset(data, enc, tmp_path / "c", {"name": "fake"}, progress=False)
    cache = FeatureCache(tmp_path / "c", enc.identity())
    assert len(cache) == 2 and cache.episode_length(1) == 9
    feats = cache.features(1)
    assert isinstance(feats, np.memmap) and feats.dtype == np.float16
    assert feats.shape == (9, 16, 48)
    expected = enc.encode_frames(data.frames[1]).numpy()
    np.testing.assert_allclose(feats.astype(np.float32), expected, atol=2e-2, rtol=1e-2)


def test_other_encoder_is_refused(tmp_path):
    data, enc = FakeEpisodes([4]), make_encoder()
    cache_dataset(data, enc, tmp_path / "c", {}, progress=False)
    other = make_encoder(seed=1)
    with pytest.raises(StaleCacheError, match="rerun wm-cache"):
        FeatureCache(tmp_path / "c", other.identity())
    with pytest.raises(StaleCacheError, match="not"):
        cache_dataset(data, other, tmp_path / "c", {}, progress=False)


def test_partial_and_missing_files_are_detected(tmp_path):
    data, enc = FakeEpisodes([6, 6]), make_encoder()
    root = cache_dataset(data, enc, tmp_path / "c", {}, progress=False)
    path = episode_file(root, 1)
    path.write_bytes(path.read_bytes()[:-100])  # truncated write
    cache = FeatureCache(root, enc.identity())
    cache.features(0)
    with pytest.raises(StaleCacheError, match="partial"):
        cache.features(1)
    episode_file(root, 0).unlink()
    with pytest.raises(StaleCacheError, match="missing"):
        cache.features(0)


def test_incomplete_cache_refused_and_rerun_resumes(tmp_path):
    data, enc = FakeEpisodes([3, 4, 5]), make_encoder()
    root = cache_dataset(data, enc, tmp_path / "c", {}, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    meta["complete"] = False  # as if killed before the end
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StaleCacheError, match="incomplete"):
        FeatureCache(root, enc.identity())
    episode_file(root, 2).unlink()
    data.reads = 0
    cache_dataset(data, enc, root, {}, progress=False)
    assert data.reads == 1  # only the missing episode was re-encoded
    assert FeatureCache(root, enc.identity()).features(2).shape == (5, 16, 48)


def test_wm_cache_entry_point_on_episode_dataset(tmp_path):
    synthetic = pytest.importorskip("worldmodel.data.synthetic")
    synthetic.write_synthetic_dataset(tmp_path / "data", num_episodes=2, lengths=[5, 7])
    enc = make_encoder()
    enc.save(tmp_path / "enc")
    cmd = [sys.executable, "-m", "worldmodel.training.cache", f"data_root={tmp_path / 'data'}",
           f"encoder_path={tmp_path / 'enc'}", f"cache_dir={tmp_path / 'feats'}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    cache = FeatureCache(tmp_path / "feats", FrozenEncoder.load(tmp_path / "enc").identity())
    assert [cache.episode_length(i) for i in range(2)] == [5, 7]
    assert cache.features(1).shape == (7, 16, 48)


def _wm_cache(tmp_path, cache_dir, **kw):
    """build_cache on a 2-episode synthetic dataset with a saved micro encoder (in process)."""
    from worldmodel.data.synthetic import write_synthetic_dataset
    from worldmodel.training.cache import CacheConfig, build_cache

    data, enc = tmp_path / "data", tmp_path / "enc"
    if not data.exists():
        write_synthetic_dataset(data, num_episodes=2, lengths=[4, 5])
        make_encoder().save(enc)
    cfg = CacheConfig(data_root=str(data), encoder_dir=str(enc), cache_dir=str(cache_dir),
                      device="cpu", **kw)  # fmt: skip
    return build_cache(cfg), FrozenEncoder.load(enc).identity()


def test_cache_folder_carries_the_marker_and_overwrite_rebuilds_it(tmp_path):
    root, identity = _wm_cache(tmp_path, tmp_path / "c")
    marker = json.loads((root / MARKER_FILE).read_text())
    assert marker["format"] == "worldmodel-feature-cache" and marker["created_by"] == "wm-cache"
    stale = root / "ep_000007.npy.tmp.npy"  # left by a killed writer: wm-cache's own file
    stale.write_bytes(b"x")
    before = episode_file(root, 0).stat().st_mtime_ns
    _wm_cache(tmp_path, root, overwrite=True)
    assert not stale.exists() and episode_file(root, 0).stat().st_mtime_ns != before
    assert sorted(p.name for p in root.iterdir()) == [
        MARKER_FILE, "ep_000000.npy", "ep_000001.npy", "meta.json"
    ]  # fmt: skip
    assert FeatureCache(root, identity).features(1).shape == (5, 16, 48)


def test_default_cache_dir_inside_the_dataset_and_an_empty_folder_are_fine(tmp_path):
    root, identity = _wm_cache(tmp_path, "")
    assert root == tmp_path / "data" / "features" and (root / MARKER_FILE).is_file()
    (tmp_path / "empty").mkdir()
    _wm_cache(tmp_path, tmp_path / "empty")
    assert FeatureCache(tmp_path / "empty", identity).features(0).shape == (4, 16, 48)


def test_cache_written_before_the_marker_still_resumes_but_is_not_deleted(tmp_path):
    root, identity = _wm_cache(tmp_path, tmp_path / "c")
    (root / MARKER_FILE).unlink()  # the layout of caches written before the marker
    episode_file(root, 1).unlink()
    _wm_cache(tmp_path, root)  # resume: only wm-cache's own files are written
    assert not (root / MARKER_FILE).exists()
    assert FeatureCache(root, identity).features(1).shape == (5, 16, 48)
    with pytest.raises(CacheDirError, match=r"delete the folder by hand \(rm -r"):
        _wm_cache(tmp_path, root, overwrite=True)
    assert episode_file(root, 0).is_file()


def test_an_episode_added_into_a_gap_is_not_served_another_episodes_features(tmp_path):
    """wm-import names episodes by source index, so a later import can fill a gap and shift
    every position after it; equal lengths used to let the old files pass (review finding)."""
    import shutil

    from worldmodel.data.episodes import open_dataset
    from worldmodel.data.synthetic import write_synthetic_dataset
    from worldmodel.training.cache import CacheConfig, build_cache
    from worldmodel.training.train_data import check_cache_matches

    data = tmp_path / "data"
    write_synthetic_dataset(data, num_episodes=4, lengths=6, image_size=32, seed=0)
    shutil.move(data / "episodes" / "ep_000002", tmp_path / "later")  # the gap
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(MICRO), PreprocessConfig(32)).save(tmp_path / "enc")
    cfg = CacheConfig(data_root=str(data), encoder_dir=str(tmp_path / "enc"),
                      cache_dir=str(tmp_path / "cache"), device="cpu")  # fmt: skip
    build_cache(cfg)
    shutil.move(data / "episodes" / "ep_000003", tmp_path / "last")  # same count, other episode
    shutil.move(tmp_path / "later", data / "episodes" / "ep_000002")
    enc = FrozenEncoder.load(tmp_path / "enc")
    with pytest.raises(StaleCacheError, match="position 2 holds the features of ep_000003"):
        check_cache_matches(
            FeatureCache(tmp_path / "cache", enc.identity()), open_dataset(data), "c"
        )
    shutil.move(tmp_path / "last", data / "episodes" / "ep_000003")  # the gap filled: 4 episodes
    dataset = open_dataset(data)
    build_cache(cfg)  # resumes: positions 2 and 3 are recomputed, 0 and 1 kept
    cache = FeatureCache(tmp_path / "cache", enc.identity())
    check_cache_matches(cache, dataset, "cache")
    for ep in range(4):
        expected = enc.encode_frames(dataset.read_episode_frames(ep)).numpy()
        np.testing.assert_allclose(np.asarray(cache.features(ep), np.float32), expected, atol=2e-2)
