"""Battery: wm-cache and the feature cache on bad folders and files. Each case: the specific error
(CacheDirError, DatasetError, StaleCacheError, CheckpointError) naming the folder or file and
what was expected, no file changed (nothing deleted or written anywhere under the test folder),
and a valid wm-cache run and cache read still succeed afterwards in the same process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import CacheDirError, CheckpointError, DatasetError, StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.training.cache import CacheConfig, build_cache
from worldmodel.training.feature_cache import MARKER_FILE, FeatureCache

MICRO = EncoderConfig(image_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_dim=96)
EP0 = Path("episodes") / "ep_000000"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A micro encoder folder, a 32 px dataset (2 episodes), its cache, and a 64 px dataset."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(MICRO), PreprocessConfig(32)).save(root / "enc")
    write_synthetic_dataset(root / "data", num_episodes=2, lengths=[5, 6], image_size=32)
    write_synthetic_dataset(root / "px64", num_episodes=1, lengths=5, image_size=64)
    build_cache(_cfg(root, root / "data", root / "cache"))
    return root


def _cfg(good: Path, data: Path, cache: Path, **kw) -> CacheConfig:
    return CacheConfig(data_root=str(data), encoder_dir=str(good / "enc"), cache_dir=str(cache),
                       device="cpu", batch_size=8, **kw)  # fmt: skip


def _identity(good: Path) -> str:
    return FrozenEncoder.load(good / "enc").identity()


def _still_works(good: Path, tmp_path: Path) -> None:
    """The process keeps working: a cache read, and a wm-cache run overwriting a cache."""
    assert FeatureCache(good / "cache", _identity(good)).features(1).shape == (6, 16, 48)
    redo = shutil.copytree(good / "cache", tmp_path / "redo")
    build_cache(_cfg(good, good / "data", redo, overwrite=True))
    assert FeatureCache(redo, _identity(good)).features(0).shape == (5, 16, 48)


@pytest.fixture
def work(good, tmp_path):
    """Copies of the good dataset (``data``) and cache (``cache``) under ``tmp_path/w``."""
    w = tmp_path / "w"
    shutil.copytree(good / "data", w / "data")
    shutil.copytree(good / "cache", w / "cache")
    return w


# --- where the cache goes: never the dataset, never a folder wm-cache did not create -----------


def _foreign_folder(w: Path) -> Path:
    (w / "mine").mkdir()
    (w / "mine" / "notes.txt").write_text("my notes")
    return w / "mine"


def _old_cache(w: Path) -> Path:
    (w / "cache" / MARKER_FILE).unlink()  # as written before the marker existed
    return w / "cache"


def _cache_with(name: str, folder: bool = False):
    def setup(w: Path) -> Path:
        path = w / "cache" / name
        path.mkdir() if folder else path.write_text("mine")
        return w / "cache"

    return setup


def _bad_marker(w: Path) -> Path:
    (w / "cache" / MARKER_FILE).write_text("{torn")
    return w / "cache"


def _file_as_cache(w: Path) -> Path:
    (w / "features.npy").write_bytes(b"mine")
    return w / "features.npy"


# (setup(w) -> cache_dir, overwrite, pattern naming the folder/file and what was expected)
LOCATION_CASES = {
    "cache_dir_is_the_dataset": (lambda w: w / "data", True, "is the dataset folder"),
    "cache_dir_is_the_dataset_no_overwrite": (lambda w: w / "data", False, "is the dataset folder"),
    "cache_dir_above_the_dataset": (lambda w: w, True, "is a folder above the dataset"),
    "cache_dir_is_the_episodes_folder": (
        lambda w: w / "data" / "episodes", True, "lies inside the dataset's episodes"
    ),
    "cache_dir_inside_an_episode": (
        lambda w: w / "data" / EP0, True, "lies inside the dataset's episodes"
    ),
    "cache_dir_is_meta_json": (
        lambda w: w / "data" / "meta.json", True, "lies inside the dataset's meta.json"
    ),
    "foreign_folder_overwrite": (
        _foreign_folder, True, r"is not a feature cache \(no \.wm-cache marker\)"
    ),
    "foreign_folder_no_overwrite": (
        _foreign_folder, False, "is not empty and is not a feature cache"
    ),
    "old_cache_without_marker_overwrite": (
        _old_cache, True, r"older than the \.wm-cache marker.*delete the folder by hand"
    ),
    "marked_cache_with_a_foreign_file": (
        _cache_with("notes.txt"), True, r"holds files wm-cache did not write: \['notes.txt'\]"
    ),
    "marked_cache_with_a_foreign_folder": (
        _cache_with("ep_000009.npy", folder=True), True, r"did not write: \['ep_000009.npy'\]"
    ),
    "marked_cache_with_a_torn_marker": (
        _bad_marker, True, r"\.wm-cache: not readable JSON"
    ),
    "cache_dir_is_a_file": (_file_as_cache, False, "is a file, expected a folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LOCATION_CASES))
def test_refused_cache_folder(good, work, tmp_path, snapshot, case):
    setup, overwrite, pattern = LOCATION_CASES[case]
    cache_dir = setup(work)
    snap = snapshot(work)
    with pytest.raises(CacheDirError, match=pattern) as info:
        build_cache(_cfg(good, work / "data", cache_dir, overwrite=overwrite))
    assert str(cache_dir) in str(info.value)
    snap.assert_unchanged()
    _still_works(good, tmp_path)


# --- a bad dataset or encoder: refused before the old cache is touched -------------------------


def _no_episodes(w: Path) -> Path:
    shutil.rmtree(w / "data" / "episodes")
    (w / "data" / "episodes").mkdir()
    return w / "data"


def _no_meta(w: Path) -> Path:
    (w / "data" / "meta.json").unlink()
    return w / "data" / "meta.json"


def _corrupt_video(w: Path) -> Path:
    (w / "data" / EP0 / "exterior.mp4").write_bytes(b"not a video" * 40)
    return w / "data" / EP0 / "exterior.mp4"


# (setup(w) -> file/folder the message names, config overrides, error, pattern)
DATASET_CASES = {
    "dataset_without_episodes": (_no_episodes, {}, DatasetError, "has no complete episodes"),
    "dataset_without_meta": (_no_meta, {}, DatasetError, "missing dataset metadata file"),
    "dataset_video_is_not_a_video": (_corrupt_video, {}, DatasetError, "cannot open video"),
    "views_not_in_dataset": (
        lambda w: w / "data" / "meta.json", {"views": "wrist"}, DatasetError,
        r"no camera 'wrist' for views='wrist'; the dataset has cameras \['exterior'\]",
    ),
    "encoder_missing": (
        lambda w: w / "no_encoder", {"encoder_dir": "no_encoder"}, CheckpointError,
        "does not exist",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_bad_input_leaves_the_old_cache(good, work, tmp_path, snapshot, case):
    """overwrite=true with a bad dataset, views or encoder: the error, and the old cache intact."""
    setup, overrides, error, pattern = DATASET_CASES[case]
    named = setup(work)
    if "encoder_dir" in overrides:
        overrides = {"encoder_dir": str(work / overrides["encoder_dir"])}
    cfg = _cfg(good, work / "data", work / "cache", overwrite=True)
    cfg = CacheConfig(**{**cfg.__dict__, **overrides})
    snap = snapshot(work)
    with pytest.raises(error, match=pattern) as info:
        build_cache(cfg)
    assert str(named) in str(info.value)
    snap.assert_unchanged()
    _still_works(good, tmp_path)


def test_video_of_another_size_leaves_the_old_cache(good, work, tmp_path, snapshot):
    """A 64 px video in the 32 px dataset (same length): named with both sizes, cache intact."""
    video = work / "data" / EP0 / "exterior.mp4"
    shutil.copy(good / "px64" / EP0 / "exterior.mp4", video)
    snap = snapshot(work)
    with pytest.raises(DatasetError, match=r"frames are 64x64 px but .* 32x32") as info:
        build_cache(_cfg(good, work / "data", work / "cache", overwrite=True))
    assert str(video) in str(info.value) and "meta.json" in str(info.value)
    snap.assert_unchanged()
    _still_works(good, tmp_path)


def test_dataset_without_episodes_creates_no_cache(good, work, tmp_path, snapshot):
    _no_episodes(work)
    snap = snapshot(work)
    with pytest.raises(DatasetError, match="has no complete episodes") as info:
        build_cache(_cfg(good, work / "data", work / "new_cache"))
    assert str(work / "data") in str(info.value)
    assert not (work / "new_cache").exists()
    snap.assert_unchanged()
    _still_works(good, tmp_path)


# --- damaged cache files: StaleCacheError naming the file and the field ------------------------


def _edit_cache_meta(edit):
    def damage(cache: Path) -> None:
        raw = json.loads((cache / "meta.json").read_text())
        edit(raw)
        (cache / "meta.json").write_text(json.dumps(raw))

    return damage


def _write_bytes(name: str, data_of):
    def damage(cache: Path) -> None:
        path = cache / name
        path.write_bytes(data_of(path.read_bytes()))

    return damage


def _read_features(good: Path, cache: Path):
    return FeatureCache(cache, _identity(good)).features(1)


def _resume(good: Path, cache: Path):
    return build_cache(_cfg(good, good / "data", cache))


# (damage(cache), call(good, cache), file named, pattern)
FILE_CASES = {
    "meta_not_json": (
        _write_bytes("meta.json", lambda b: b[:30]), _read_features, "meta.json",
        "not readable JSON",
    ),
    "meta_not_json_on_resume": (
        _write_bytes("meta.json", lambda b: b[:30]), _resume, "meta.json", "not readable JSON",
    ),
    "meta_not_utf8": (
        _write_bytes("meta.json", lambda b: b"\xff\xfe" + b), _read_features, "meta.json",
        "not readable JSON",
    ),
    "meta_is_a_list": (
        _write_bytes("meta.json", lambda b: b"[]"), _read_features, "meta.json",
        "expected a JSON object, got list",
    ),
    "meta_without_encoder_identity": (
        _edit_cache_meta(lambda m: m.pop("encoder_identity")), _read_features, "meta.json",
        "missing field 'encoder_identity'",
    ),
    "meta_lengths_not_counts": (
        _edit_cache_meta(lambda m: m.update(episode_lengths={"0": "five"})), _read_features,
        "meta.json", "field 'episode_lengths' is",
    ),
    "meta_lengths_missing_an_episode": (
        _edit_cache_meta(lambda m: m["episode_lengths"].pop("1")), _read_features, "meta.json",
        r"'episode_lengths' lacks episodes \[1\]",
    ),
    "meta_tokens_per_frame_text": (
        _edit_cache_meta(lambda m: m.update(tokens_per_frame="16")), _read_features, "meta.json",
        "field 'tokens_per_frame' is '16'",
    ),
    "features_truncated": (
        _write_bytes("ep_000001.npy", lambda b: b[:-100]), _read_features, "ep_000001.npy",
        "missing, partial or not float16",
    ),
    "features_garbage": (
        _write_bytes("ep_000001.npy", lambda b: b"garbage" * 50), _read_features,
        "ep_000001.npy", "missing, partial or not float16",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_damaged_cache_file(good, tmp_path, snapshot, case):
    damage, call, name, pattern = FILE_CASES[case]
    cache = shutil.copytree(good / "cache", tmp_path / "cache")
    damage(cache)
    snap = snapshot(cache)
    with pytest.raises(StaleCacheError, match=pattern) as info:
        call(good, cache)
    assert str(cache / name) in str(info.value)
    snap.assert_unchanged()
    _still_works(good, tmp_path)
