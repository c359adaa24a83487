"""Every way a dataset on disk can be broken raises a DatasetError naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldmodel.data import open_dataset
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import DatasetError


@pytest.fixture
def root(tmp_path):
    write_synthetic_dataset(tmp_path, num_episodes=2, lengths=8, image_size=32)
    return tmp_path


def _steps(root, ep=0):
    path = root / "episodes" / f"ep_{ep:06d}" / "steps.npz"
    with np.load(path) as npz:
        return path, {k: npz[k] for k in npz.files}


def _rewrite_steps(root, **changes):
    path, arrays = _steps(root)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_missing_meta(root):
    (root / "meta.json").unlink()
    with pytest.raises(DatasetError, match=r"meta\.json: missing dataset metadata"):
        open_dataset(root)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda raw: raw.pop("format_version"), "missing 'format_version'"),
        (lambda raw: raw.update(format_version=99), "unknown format_version 99"),
        (lambda raw: raw.pop("fps"), "missing required key 'fps'"),
        (
            lambda raw: raw.update(cameras=[{"name": "exterior"}]),
            r"missing required key 'cameras\[0\]\.width'",
        ),
        (lambda raw: raw.update(image_size="64"), r"field 'image_size' is '64' \(str\)"),
    ],
)
def test_bad_meta(root, edit, pattern):
    raw = json.loads((root / "meta.json").read_text())
    edit(raw)
    (root / "meta.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match=pattern) as info:
        open_dataset(root)
    assert "meta.json" in str(info.value)


def test_meta_not_json(root):
    (root / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        open_dataset(root)


def test_missing_mp4(root):
    (root / "episodes" / "ep_000001" / "exterior.mp4").unlink()
    with pytest.raises(DatasetError, match=r"ep_000001/exterior\.mp4: missing video file"):
        open_dataset(root)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_mp4(root, damage):
    path = root / "episodes" / "ep_000000" / "exterior.mp4"
    data = path.read_bytes()
    new = {"garbage": b"not an mp4" * 50, "truncated": data[: len(data) // 2], "empty": b""}
    path.write_bytes(new[damage])
    ds = open_dataset(root)  # tables are fine: opening without verification succeeds
    with pytest.raises(DatasetError, match=r"ep_000000/exterior\.mp4: cannot open video"):
        ds.read_clip(0, 0, 2)
    with pytest.raises(DatasetError, match="cannot open video"):
        open_dataset(root, verify_videos=True)
    np.testing.assert_array_equal(ds.read_clip(1, 0, 2).states.shape, (2, 7))  # others still read


def test_frame_count_mismatch(root):
    path, arrays = _steps(root)
    shorter = {k: (v[:-2] if v.ndim and k != "task_id" else v) for k, v in arrays.items()}
    shorter["action_valid"][-1] = False
    with open(path, "wb") as fh:
        np.savez(fh, **shorter)
    ds = open_dataset(root)
    with pytest.raises(DatasetError, match=r"video has 8 frames but .*steps\.npz has 6 rows"):
        ds.read_clip(0, 0, 2)
    with pytest.raises(DatasetError, match="8 frames"):
        open_dataset(root, verify_videos=True)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"state": np.zeros((8, 7), np.float64)}, "'state' has dtype float64, expected float32"),
        ({"state": np.zeros((8, 6), np.float32)}, r"'state' has shape \(8, 6\), expected \(8, 7\)"),
        ({"action": np.zeros((7, 7), np.float32)}, r"'action' has shape \(7, 7\), expected"),
        ({"action_valid": np.ones(8, np.int64)}, "'action_valid' has dtype int64, expected bool"),
        ({"time_s": np.zeros((8, 1))}, r"'time_s' has shape \(8, 1\)"),
        ({"task_id": np.zeros(2, np.int64)}, r"'task_id' has shape \(2,\), expected \(\)"),
        ({"is_success": None}, r"missing field\(s\) \['is_success'\]"),
        ({"action_valid": np.ones(8, bool)}, r"action_valid\[-1\] must be False"),
        ({"state": np.full((8, 7), np.nan, np.float32)}, "'state' contains NaN"),
    ],
)
def test_bad_steps(root, changes, pattern):
    path = _rewrite_steps(root, **changes)
    with pytest.raises(DatasetError, match=pattern) as info:
        open_dataset(root)
    assert str(path) in str(info.value)


def test_steps_not_npz(root):
    path = root / "episodes" / "ep_000000" / "steps.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="unreadable npz"):
        open_dataset(root)
    path.unlink()
    with pytest.raises(DatasetError, match="missing per-step table"):
        open_dataset(root)


def test_frames_of_another_size_than_meta(root, tmp_path):
    """A 64 px video in a 32 px dataset: every read checks the frame size against meta.json."""
    other = tmp_path / "px64"
    write_synthetic_dataset(other, num_episodes=1, lengths=8, image_size=64)
    video = root / "episodes" / "ep_000001" / "exterior.mp4"
    video.write_bytes((other / "episodes" / "ep_000000" / "exterior.mp4").read_bytes())
    ds = open_dataset(root)
    with pytest.raises(DatasetError, match=r"ep_000001/exterior\.mp4: frames are 64x64 px but"):
        ds.read_clip(1, 0, 2)
    with pytest.raises(DatasetError, match=r"meta\.json gives camera 'exterior' .* 32x32"):
        open_dataset(root, verify_videos=True)
    assert ds.read_clip(0, 0, 2).frames.shape == (2, 32, 32, 3)


def test_unknown_camera(root):
    with pytest.raises(KeyError, match="no camera 'wrist'"):
        open_dataset(root).read_clip(0, 0, 2, camera="wrist")
