"""wm-import of DROID raw episodes built by worldmodel.data.importers.fixtures."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("h5py")

from scipy.spatial.transform import Rotation

from worldmodel.data.episodes import open_dataset
from worldmodel.data.importers import fixtures as fx
from worldmodel.data.importers.cli import SUMMARY_FILE, import_dataset
from worldmodel.data.importers.config import ImportConfig
from worldmodel.data.meta import EE_NAMES, VideoSpec
from worldmodel.data.video import write_video
from worldmodel.errors import DatasetError

CAMS = ("ext1", "ext2", "wrist")


def _cfg(src, out, **kw) -> ImportConfig:
    base = {"src": str(src), "out_dir": str(out), "image_size": 64, "progress": False}
    return ImportConfig(**{**base, **kw})


def _indices(frames: np.ndarray) -> list[int]:
    return [fx.frame_index_of(f) for f in frames]


def _source_camera(frames: np.ndarray, episode: fx.FixtureEpisode) -> str:
    """Which source camera imported frames come from: the nearest background colour (corner)."""
    colour = frames[:, 2, 2].astype(float).mean(0)
    return min(episode.frames, key=lambda k: np.abs(episode.frames[k][0, 2, 2] - colour).sum())


@pytest.fixture(scope="module")
def droid(tmp_path_factory):
    """3 DROID raw episodes (15 Hz, 3 cameras, roll wrapping at +-pi) under a lab/date tree."""
    eps = fx.ee_episodes(3, length=13, cameras=CAMS, seed=7)
    root = tmp_path_factory.mktemp("droid")
    folders = fx.write_droid_raw(root, eps, fps=15)
    return root, eps, folders


def _hand_deltas(states: np.ndarray) -> np.ndarray:
    """V-JEPA 2-AC's poses_to_diffs with scipy: xyz diff, Euler('xyz') of R1 R0^T, gripper diff."""
    rot = [Rotation.from_euler("xyz", s[3:6]) for s in states]
    return np.stack(
        [
            np.concatenate(
                [
                    states[t + 1, :3] - states[t, :3],
                    (rot[t + 1] * rot[t].inv()).as_euler("xyz"),
                    states[t + 1, 6:] - states[t, 6:],
                ]
            )
            for t in range(len(states) - 1)
        ]
    )


def test_droid_default_import_at_5hz(droid, tmp_path):
    root, eps, folders = droid
    result = import_dataset(_cfg(root, tmp_path / "out", fps=5, on_error="raise"))
    assert result.imported == [0, 1, 2] and result.resampling.startswith("stride 3")
    ds = open_dataset(tmp_path / "out", verify_videos=True)
    meta = ds.meta
    assert meta.camera_names == ("left", "right", "wrist") and meta.fps == 5
    assert (meta.action_kind, meta.state_names, meta.action_names) == (
        "ee_delta",
        EE_NAMES,
        EE_NAMES,
    )
    assert meta.extra["import"]["action_mode"] == "ee_delta_from_state"
    rows = np.arange(0, 13, 3)
    for i, ep in enumerate(eps):
        steps = ds.steps(i)
        kept = ep.states[rows].astype(np.float64)
        np.testing.assert_allclose(steps.state, kept, atol=1e-6)
        np.testing.assert_allclose(steps.action[:-1], _hand_deltas(kept), atol=2e-5)
        assert np.abs(steps.action[:, 3:6]).max() < 1.0  # roll wraps at +-pi: no 2 pi jumps
        assert str(steps.extra["task"]) == ep.task
        assert str(steps.extra["source_path"]) == folders[i].relative_to(root).as_posix()
        # left = ext1 (the exterior camera with the larger y), its frames at rows 0, 3, 6, ...
        left = ds.read_episode_frames(i, "left")
        assert _source_camera(left, ep) == "ext1"
        assert _source_camera(ds.read_episode_frames(i, "right"), ep) == "ext2"
        assert _indices(left) == [r % 12 for r in rows]
    assert meta.action_low and len(meta.state_std) == 7
    assert json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())["frames"] == 15


def test_droid_joint_space_as_recorded_range_and_camera_map(droid, tmp_path):
    root, _, _ = droid
    cfg = _cfg(
        root, tmp_path / "out", action_mode="as_recorded", state_key="joint_positions",
        action_key="joint_position", cameras={"wrist": "wrist", "right": "exterior"},
        episodes="1:3",
    )  # fmt: skip
    result = import_dataset(cfg)
    assert result.imported == [1, 2]
    ds = open_dataset(tmp_path / "out")
    assert ds.meta.camera_names == ("wrist", "exterior") and ds.meta.fps == 15
    assert (ds.meta.state_dim, ds.meta.action_dim, ds.meta.action_kind) == (7, 7, "absolute")
    assert ds.meta.state_names[0] == "joint_positions_0"
    joints = np.linspace(0.0, 1.0, 13 * 7).reshape(13, 7)
    np.testing.assert_allclose(ds.steps(0).state, joints, atol=1e-6)
    np.testing.assert_allclose(ds.steps(0).action[:-1], joints[:-1], atol=1e-6)


def test_left_right_from_extrinsics_when_metadata_lacks_them(tmp_path):
    eps = fx.ee_episodes(1, length=6, cameras=("ext1", "ext2"), seed=8)
    (folder,) = fx.write_droid_raw(tmp_path / "src", eps)
    meta_path = next(folder.glob("metadata_*.json"))
    record = json.loads(meta_path.read_text())
    for key in ("left_mp4_path", "right_mp4_path"):
        del record[key]
    record["ext1_cam_extrinsics"][1], record["ext2_cam_extrinsics"][1] = -0.5, 0.5  # ext2 left
    meta_path.write_text(json.dumps(record))
    import_dataset(_cfg(tmp_path / "src", tmp_path / "out"))
    ds = open_dataset(tmp_path / "out")
    assert _source_camera(ds.read_episode_frames(0, "left"), eps[0]) == "ext2"


def _unreadable_h5(folder):
    path = folder / "trajectory.h5"
    path.write_bytes(b"not an hdf5 file" * 10)
    return path, "unreadable HDF5 file"


def _missing_field(folder):
    import h5py

    path = folder / "trajectory.h5"
    with h5py.File(path, "a") as h5:
        del h5["observation/robot_state/gripper_position"]
    return path, r"missing field 'observation/robot_state/gripper_position'"


def _nan_state(folder):
    import h5py

    path = folder / "trajectory.h5"
    with h5py.File(path, "a") as h5:
        h5["observation/robot_state/cartesian_position"][4, 1] = np.nan
    return path, r"has NaN/inf in 1 row\(s\), first row 4"


def _short_video(folder):
    path = next((folder / "recordings" / "MP4").glob("33333333.mp4"))  # wrist
    write_video(path, fx.make_frames(9, 64, 48), 15, VideoSpec(pix_fmt="yuv420p"))
    return path, r"trajectory\.h5 has 13 rows .*the video is shorter than its table"


def _no_camera(folder):
    path = next(folder.glob("metadata_*.json"))
    record = json.loads(path.read_text())
    del record["wrist_mp4_path"]
    path.write_text(json.dumps(record))
    return path, "field 'wrist_mp4_path' missing"


def _missing_video(folder):
    path = folder / "recordings" / "MP4" / "22222222.mp4"
    path.unlink()
    return path, "missing video file"


@pytest.mark.parametrize(
    "breaker",
    [_unreadable_h5, _missing_field, _nan_state, _short_video, _no_camera, _missing_video],
)
def test_bad_episode_is_skipped_or_raised(droid, tmp_path, breaker):
    src = tmp_path / "src"
    shutil.copytree(droid[0], src)
    folders = sorted(p.parent for p in src.rglob("trajectory.h5"))
    path, pattern = breaker(folders[1])
    with pytest.raises(DatasetError, match=pattern) as info:
        import_dataset(_cfg(src, tmp_path / "raise", on_error="raise"))
    assert str(path) in str(info.value)
    assert sorted(p.name for p in (tmp_path / "raise" / "episodes").iterdir()) == ["ep_000000"]
    result = import_dataset(_cfg(src, tmp_path / "skip"))
    assert result.imported == [0, 2] and [s["episode"] for s in result.skipped] == [1]
    assert str(path) in result.skipped[0]["reason"]
    assert len(open_dataset(tmp_path / "skip")) == 2


def test_no_episodes_and_missing_h5py(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a recognised source"):
        import_dataset(_cfg(tmp_path / "empty", tmp_path / "out"))
    with pytest.raises(DatasetError, match="no DROID episode folders"):
        import_dataset(_cfg(tmp_path / "empty", tmp_path / "out", format="droid"))
    (tmp_path / "empty" / "ep").mkdir()
    (tmp_path / "empty" / "ep" / "trajectory.h5").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[import\]'"):
        import_dataset(_cfg(tmp_path / "empty", tmp_path / "out"))
    assert not (tmp_path / "out").exists()
