"""wm-import of LeRobot v2.1 / v3.0 datasets built by worldmodel.data.importers.fixtures."""

from __future__ import annotations

import itertools
import json
import math
import shutil

import numpy as np
import pytest

pytest.importorskip("pyarrow")

import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial.transform import Rotation

from worldmodel.config import compose, plain_defaults
from worldmodel.data.episodes import open_dataset
from worldmodel.data.importers import fixtures as fx
from worldmodel.data.importers.cli import SUMMARY_FILE, config_from_mapping, import_dataset
from worldmodel.data.importers.config import ImportConfig
from worldmodel.data.meta import VideoSpec
from worldmodel.data.video import available_encoders, write_video
from worldmodel.data.writer import EpisodeWriter
from worldmodel.errors import DatasetError

FRONT, WRIST = "observation.images.front", "observation.images.wrist"
SPEC = VideoSpec(pix_fmt="yuv420p", crf=18)
JOINTS = [f"joint_{i}" for i in range(5)] + ["gripper"]


def _cfg(src, out, **kw) -> ImportConfig:
    return ImportConfig(
        **{"src": str(src), "out_dir": str(out), "image_size": 64, "progress": False, **kw}
    )


def _indices(frames: np.ndarray) -> list[int]:
    return [fx.frame_index_of(f) for f in frames]


def _no_partial(out) -> None:
    """No temp folder anywhere, and every ep_ folder complete (steps + videos)."""
    assert not list(out.rglob("*.tmp")) if out.exists() else True


@pytest.fixture(scope="module")
def v21(tmp_path_factory):
    """3 episodes, 6-D joint state / absolute joint targets, two cameras, H.264 at 30 Hz."""
    eps = fx.make_episodes(3, length=[12, 10, 14], cameras=(FRONT, WRIST), state_dim=6)
    root = fx.write_lerobot_v21(
        tmp_path_factory.mktemp("src") / "v21", eps, fps=30, state_names=JOINTS,
        action_names={"motors": JOINTS},  # LeRobot also writes names as a dict of one list
    )  # fmt: skip
    return root, eps


def test_v21_roundtrip(v21, tmp_path):
    root, eps = v21
    result = import_dataset(_cfg(root, tmp_path / "out", on_error="raise"))
    assert result.imported == [0, 1, 2] and not result.skipped and result.frames == 36
    ds = open_dataset(tmp_path / "out", verify_videos=True)
    meta = ds.meta
    assert meta.camera_names == ("front", "wrist")
    assert (meta.state_dim, meta.action_dim, meta.action_kind) == (6, 6, "absolute")
    assert meta.state_names == tuple(JOINTS) and meta.action_names == tuple(JOINTS)
    assert meta.camera("front").source_image_size == (64, 48)
    assert meta.fps == 30 and meta.image_policy == "crop"
    for i, ep in enumerate(eps):
        steps = ds.steps(i)
        np.testing.assert_array_equal(steps.state, ep.states)
        np.testing.assert_array_equal(steps.action[:-1], ep.actions[:-1])  # as recorded
        assert not steps.action[-1].any() and not steps.action_valid[-1]
        assert str(steps.extra["task"]) == ep.task
        assert _indices(ds.read_episode_frames(i, "wrist")) == [t % 12 for t in range(len(ep))]
        assert ds.read_clip(i, 0, 3, camera="front").states.shape == (3, 6)
    # statistics over the valid actions / all states
    acts = np.concatenate([ep.actions[:-1] for ep in eps])
    np.testing.assert_allclose(meta.action_mean, acts.mean(0), rtol=1e-5, atol=1e-6)
    assert all(lo >= m for lo, m in zip(meta.action_low, acts.min(0), strict=True))
    assert all(lo <= q for lo, q in zip(meta.action_low, np.percentile(acts, 1, 0), strict=True))
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert (
        summary["imported"] == [0, 1, 2] and summary["frames"] == 36 and "frames_per_s" in summary
    )


def test_v30_several_episodes_per_file_av1_stride(tmp_path):
    if "libsvtav1" not in available_encoders():
        pytest.skip("no AV1 encoder (libsvtav1) in this PyAV build")
    eps = fx.make_episodes(5, length=[12, 9, 14, 10, 11], cameras=(FRONT, WRIST), seed=1)
    root = fx.write_lerobot_v30(
        tmp_path / "v30", eps, fps=30, codec="libsvtav1", episodes_per_file=3,
        episodes_per_video=2, task_column="__index_level_0__", list_type="list",
    )  # fmt: skip
    result = import_dataset(_cfg(root, tmp_path / "out", fps=15, episodes="1:5", on_error="raise"))
    assert result.imported == [1, 2, 3, 4] and result.resampling.startswith("stride 2")
    ds = open_dataset(tmp_path / "out", verify_videos=True)
    assert ds.meta.fps == 15 and ds.episode_names == [
        "ep_000001",
        "ep_000002",
        "ep_000003",
        "ep_000004",
    ]
    for i, e in enumerate(range(1, 5)):
        ep, steps = eps[e], ds.steps(i)
        rows = np.arange(0, len(ep), 2)
        np.testing.assert_array_equal(steps.extra["source_row"], rows)
        np.testing.assert_array_equal(steps.state, ep.states[rows])
        # absolute targets over a stride: the last command before the next kept frame
        np.testing.assert_array_equal(steps.action[:-1], ep.actions[rows[1:] - 1])
        np.testing.assert_allclose(steps.time_s, rows / 30, atol=1e-6)
        for cam in ("front", "wrist"):
            assert _indices(ds.read_episode_frames(i, cam)) == [r % 12 for r in rows]
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["extra"]["source"]["tasks"] == {
        "0": "task 0",
        "1": "task 1",
    }


def test_15hz_nearest_timestamp_and_delta_actions(tmp_path):
    eps = fx.make_episodes(2, length=16, cameras=(FRONT,), state_dim=3, seed=2)
    root = fx.write_lerobot_v30(tmp_path / "v30", eps, fps=15, codec="libx264")
    result = import_dataset(_cfg(root, tmp_path / "out", fps=10, action_kind="delta"))
    assert result.resampling.startswith("nearest timestamp")
    ds = open_dataset(tmp_path / "out")
    # target j at 0.1 j s is source row 1.5 j: the nearest row, ties to the earlier one
    rows = np.array([math.ceil(1.5 * j - 0.5) for j in range(11)])
    for i, ep in enumerate(eps):
        steps = ds.steps(i)
        np.testing.assert_array_equal(steps.extra["source_row"], rows)
        want = [ep.actions[a:b].sum(0) for a, b in itertools.pairwise(rows)]
        np.testing.assert_allclose(steps.action[:-1], want, rtol=1e-5, atol=1e-6)
        assert _indices(ds.read_episode_frames(i, "front")) == [r % 12 for r in rows]
    assert ds.meta.action_kind == "delta" and ds.meta.fps == 10


def test_one_camera_named_front_and_names_override(v21, tmp_path):
    root, _ = v21
    cfg = _cfg(
        root, tmp_path / "out", cameras={WRIST: "front"}, state_names=tuple("abcdef"),
        image_policy="pad",
    )  # fmt: skip
    import_dataset(cfg)
    meta = open_dataset(tmp_path / "out").meta
    assert meta.camera_names == ("front",) and meta.state_names == tuple("abcdef")
    assert meta.image_policy == "pad"


def _hand_delta(s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """The V-JEPA 2-AC action from two poses, with scipy (extrinsic "xyz")."""
    rel = Rotation.from_euler("xyz", s1[3:6]) * Rotation.from_euler("xyz", s0[3:6]).inv()
    return np.concatenate([s1[:3] - s0[:3], rel.as_euler("xyz"), s1[6:] - s0[6:]])


def test_ee_delta_from_state_7d(tmp_path):
    eps = fx.ee_episodes(2, length=10, seed=3)
    # One step checked by hand: roll wraps from pi - 0.05 to -pi + 0.05, i.e. +0.1 rad about x.
    eps[0].states[1] = eps[0].states[0]
    eps[0].states[0, 3:6] = [np.pi - 0.05, 0.0, 0.0]
    eps[0].states[1, 3:6] = [-np.pi + 0.05, 0.0, 0.0]
    eps[0].states[1, :3] += [0.01, -0.02, 0.0]
    eps[0].states[0, 6], eps[0].states[1, 6] = 0.0, 1.0
    root = fx.write_lerobot_v21(tmp_path / "src", eps, fps=30)
    import_dataset(_cfg(root, tmp_path / "out", action_mode="ee_delta_from_state", fps=30))
    ds = open_dataset(tmp_path / "out")
    assert (ds.meta.action_kind, ds.meta.state_dim, ds.meta.action_dim) == ("ee_delta", 7, 7)
    np.testing.assert_allclose(ds.steps(0).action[0], [0.01, -0.02, 0, 0.1, 0, 0, 1], atol=1e-5)
    for i, ep in enumerate(eps):
        s = ep.states.astype(np.float64)
        want = [_hand_delta(s[t], s[t + 1]) for t in range(len(s) - 1)]
        np.testing.assert_allclose(ds.steps(i).action[:-1], want, atol=2e-5)
        assert np.abs(ds.steps(i).action[:, 3:6]).max() < 0.5  # no 2 pi jumps


def test_ee_8d_quaternion_state_and_8d_recorded_action(tmp_path):
    eps = fx.ee_episodes(2, length=10, rotation="quat_xyzw", seed=4)
    root = fx.write_lerobot_v21(tmp_path / "src", eps, fps=30)
    import_dataset(
        _cfg(root, tmp_path / "ee", action_mode="ee_delta_from_state", state_rotation="quat_xyzw")
    )
    ds = open_dataset(tmp_path / "ee")
    assert ds.meta.state_dim == ds.meta.action_dim == 7
    for i, ep in enumerate(eps):
        s = ep.states.astype(np.float64)
        euler = Rotation.from_quat(s[:, 3:7]).as_euler("xyz")
        np.testing.assert_allclose(
            np.cos(ds.steps(i).state[:, 3:6] - euler), 1.0, atol=1e-5
        )  # same angles up to 2 pi
        states7 = np.concatenate([s[:, :3], euler, s[:, 7:]], axis=1)
        want = [_hand_delta(states7[t], states7[t + 1]) for t in range(len(s) - 1)]
        np.testing.assert_allclose(ds.steps(i).action[:-1], want, atol=2e-5)
    import_dataset(_cfg(root, tmp_path / "raw"))  # 8-D absolute pose targets, as recorded
    raw = open_dataset(tmp_path / "raw")
    assert (raw.meta.state_dim, raw.meta.action_dim, raw.meta.action_kind) == (8, 8, "absolute")
    np.testing.assert_array_equal(raw.steps(1).action[:-1], eps[1].actions[:-1])


def test_640x480_pad(tmp_path):
    eps = fx.make_episodes(1, length=4, cameras=(FRONT,), size=(640, 480), seed=5)
    root = fx.write_lerobot_v21(tmp_path / "src", eps, fps=15)
    import_dataset(_cfg(root, tmp_path / "out", image_size=96, image_policy="pad"))
    ds = open_dataset(tmp_path / "out", verify_videos=True)
    assert ds.meta.camera("front").source_image_size == (640, 480)
    frames = ds.read_episode_frames(0, "front")
    assert frames.shape == (4, 96, 96, 3)
    assert frames[:, :8].max() < 24 and frames[:, -8:].max() < 24  # black pad bars
    assert _indices(frames) == [0, 1, 2, 3]


def test_resume_after_interruption_gives_the_same_output(v21, tmp_path, monkeypatch):
    root, _ = v21
    import_dataset(_cfg(root, tmp_path / "whole"))
    real_write, calls = EpisodeWriter.write, []

    def write_then_die(self, index, frames, steps, overwrite=False):
        if len(calls) == 2:
            raise KeyboardInterrupt  # "killed" while writing the third episode
        calls.append(index)
        return real_write(self, index, frames, steps, overwrite)

    monkeypatch.setattr(EpisodeWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(_cfg(root, tmp_path / "resumed"))
    episodes = tmp_path / "resumed" / "episodes"
    assert sorted(p.name for p in episodes.iterdir()) == ["ep_000000", "ep_000001"]
    monkeypatch.setattr(EpisodeWriter, "write", real_write)
    result = import_dataset(_cfg(root, tmp_path / "resumed"))
    assert result.imported == [2] and result.already_present == 2
    a, b = open_dataset(tmp_path / "whole"), open_dataset(tmp_path / "resumed")
    assert a.episode_names == b.episode_names
    for key in ("action_low", "action_high", "action_mean", "state_std"):
        assert getattr(a.meta, key) == getattr(b.meta, key)
    for i in range(len(a)):
        np.testing.assert_array_equal(a.steps(i).action, b.steps(i).action)
        np.testing.assert_array_equal(
            a.read_episode_frames(i, "front"), b.read_episode_frames(i, "front")
        )


# --- bad input: a clear error naming the file and field, and no partial episode ---------------


def _rewrite_parquet(path, **columns) -> None:
    table = pq.read_table(path)
    for name, values in columns.items():
        if values is None:
            table = table.drop_columns([name])
        else:
            table = table.set_column(table.column_names.index(name), name, values)
    pq.write_table(table, path)


def _break_nan(root):
    path = root / "data/chunk-000/episode_000001.parquet"
    state = pq.read_table(path)["observation.state"].to_pylist()
    state[3][2] = float("nan")
    _rewrite_parquet(path, **{"observation.state": pa.array(state, pa.list_(pa.float32()))})
    return path, r"'observation\.state' has NaN/inf in 1 row\(s\), first row 3"


def _break_timestamps(root):
    path = root / "data/chunk-000/episode_000001.parquet"
    ts = np.arange(10, dtype=np.float32) / 30
    ts[[4, 5]] = ts[[5, 4]]
    _rewrite_parquet(path, timestamp=pa.array(ts))
    return path, r"field 'timestamp' is not strictly increasing at row 5"


def _break_missing_column(root):
    path = root / "data/chunk-000/episode_000001.parquet"
    _rewrite_parquet(path, action=None)
    return path, r"missing column\(s\) \['action'\]"


def _short_video(root):
    path = root / "videos/chunk-000/observation.images.front/episode_000001.mp4"
    write_video(path, fx.make_frames(7, 64, 48), 30, SPEC)
    return path, r"episode_000001.parquet has 10 rows .*the video is shorter than its table"


def _long_video(root):
    path = root / "videos/chunk-000/observation.images.wrist/episode_000001.mp4"
    write_video(path, fx.make_frames(13, 64, 48), 30, SPEC)
    return path, r"13 video frames .* 10 rows .*more frames than its table"


def _rows_vs_length(root):
    path = root / "meta/episodes.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({"episode_index": 1, "tasks": ["task 1"], "length": 11})
    path.write_text("\n".join(lines) + "\n")
    return root / "data/chunk-000/episode_000001.parquet", r"has 10 rows but .*length 11"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_nan,
        _break_timestamps,
        _break_missing_column,
        _short_video,
        _long_video,
        _rows_vs_length,
    ],
)
def test_bad_episode_is_skipped_or_raised(v21, tmp_path, breaker):
    src = tmp_path / "src"
    shutil.copytree(v21[0], src)
    path, pattern = breaker(src)
    with pytest.raises(DatasetError, match=pattern) as info:
        import_dataset(_cfg(src, tmp_path / "raise", on_error="raise"))
    assert str(path) in str(info.value)
    episodes = tmp_path / "raise" / "episodes"
    assert sorted(p.name for p in episodes.iterdir()) == ["ep_000000"]  # only the good one
    result = import_dataset(_cfg(src, tmp_path / "skip"))
    assert result.imported == [0, 2] and [s["episode"] for s in result.skipped] == [1]
    assert str(path) in result.skipped[0]["reason"]
    summary = json.loads((tmp_path / "skip" / SUMMARY_FILE).read_text())
    assert summary["skipped"][0]["episode"] == 1
    assert sorted(p.name for p in (tmp_path / "skip" / "episodes").iterdir()) == [
        "ep_000000",
        "ep_000002",
    ]


def test_dataset_level_errors_write_nothing(v21, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(v21[0], src)
    with pytest.raises(DatasetError, match=r"info\.json: field 'features' has no column 'obs\.x'"):
        import_dataset(_cfg(src, tmp_path / "out", state_key="obs.x"))
    with pytest.raises(DatasetError, match=r"cameras \['cam'\] not in this dataset"):
        import_dataset(_cfg(src, tmp_path / "out", cameras={"cam": "front"}))
    with pytest.raises(DatasetError, match="ee_delta needs an end-effector pose state of 7"):
        import_dataset(_cfg(src, tmp_path / "out", action_mode="ee_delta_from_state"))
    with pytest.raises(DatasetError, match=r"fps=60 is above the source rate 30\.0 Hz"):
        import_dataset(_cfg(src, tmp_path / "out", fps=60))
    info = json.loads((src / "meta/info.json").read_text())
    (src / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(DatasetError, match=r"info\.json: field 'codebase_version' is 'v1\.6'"):
        import_dataset(_cfg(src, tmp_path / "out"))
    (src / "meta/info.json").write_text(json.dumps(info))
    for n in range(3):  # every episode bad: an error, and no folder left behind
        _rewrite_parquet(src / f"data/chunk-000/episode_{n:06d}.parquet", action=None)
    with pytest.raises(DatasetError, match="no episode could be imported"):
        import_dataset(_cfg(src, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_overwrite_only_replaces_a_wm_import_output(v21, tmp_path):
    root, _ = v21
    import_dataset(_cfg(root, tmp_path / "out", episodes="0:1"))
    with pytest.raises(DatasetError, match=r"image_size 64 vs 96.*overwrite=true"):
        import_dataset(_cfg(root, tmp_path / "out", image_size=96))
    import_dataset(_cfg(root, tmp_path / "out", image_size=96, overwrite=True))
    assert open_dataset(tmp_path / "out").meta.image_size == 96
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    (tmp_path / "out" / "meta.json").write_text(json.dumps({**meta, "created_by": "wm-collect"}))
    with pytest.raises(DatasetError, match="only replaces a wm-import output"):
        import_dataset(_cfg(root, tmp_path / "out", overwrite=True))
    with pytest.raises(DatasetError, match="overlap"):
        import_dataset(_cfg(root, root / "out"))


def test_cli_config_overrides():
    schema = plain_defaults(ImportConfig)
    schema["cameras"] = None  # as main() registers it
    raw = compose(
        "import",
        [
            "src=a",
            "out_dir=b",
            "cameras={observation.images.front:front}",
            "fps=5",
            "episodes=0:20",
        ],
        schema,
    )
    cfg = config_from_mapping(raw)
    assert cfg.cameras == {FRONT: "front"} and cfg.fps == 5 and cfg.episode_range == (0, 20)
    cfg = config_from_mapping(
        compose("import", ["src=a", "out_dir=b", f"cameras='{FRONT}=x,{WRIST}=y'"], schema)
    )
    assert cfg.cameras == {FRONT: "x", WRIST: "y"}
    for bad, match in (
        ({"action_mode": "joint"}, "action_mode"),
        ({"image_size": 48}, "image_size"),
        ({"episodes": "a:b"}, "episodes"),
        ({"cameras": {"k": "a/b"}}, "cameras"),
    ):
        with pytest.raises(ValueError, match=match):
            ImportConfig(src="a", out_dir="b", **bad)


def test_missing_pyarrow_names_the_extra(v21, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[import\]'"):
        import_dataset(_cfg(v21[0], tmp_path / "out"))


def test_decoding_in_windows_matches_whole_episodes(v21, tmp_path, monkeypatch):
    from worldmodel.data.importers import common

    root, eps = v21
    monkeypatch.setattr(common, "DECODE_BUDGET_BYTES", 1)  # windows of 8 rows
    import_dataset(_cfg(root, tmp_path / "out", fps=15, on_error="raise"))
    ds = open_dataset(tmp_path / "out")
    for i, ep in enumerate(eps):
        assert _indices(ds.read_episode_frames(i, "front")) == [
            r % 12 for r in range(0, len(ep), 2)
        ]
    src = tmp_path / "src"
    shutil.copytree(root, src)
    _short_video(src)  # 7 frames for 10 rows: the first window (8 rows) already runs short
    with pytest.raises(
        DatasetError, match=r"8 rows there \(rows 0-7 of 10.*shorter than its table"
    ):
        import_dataset(_cfg(src, tmp_path / "short", on_error="raise"))


def test_review_findings_bounds_widths_indices_and_reruns(v21, tmp_path):
    """A constant action dim keeps a valid box; mismatched widths, out-of-range indices and a
    rerun from another source are refused at import (second review of this session)."""
    from worldmodel.data.importers.common import layout_stats
    from worldmodel.data.steps import make_step_table
    from worldmodel.models.layout import Layout

    root, eps = v21
    actions = np.zeros((20, 3), np.float32)
    actions[:, 0] = np.linspace(-1, 1, 20)  # dim 1 never moves, dim 2 moves once
    actions[5, 2] = 0.5
    table = make_step_table(np.zeros((20, 3), np.float32), actions, 10.0, task_id=-1)
    stats = layout_stats([table])
    assert all(lo < hi for lo, hi in zip(stats["action_low"], stats["action_high"], strict=True))
    assert stats["action_high"][2] > 0.4  # a rare move (5 % of steps) keeps its room
    Layout(3, 3, ["a", "b", "c"], ["a", "b", "c"], "absolute", stats["action_low"],
           stats["action_high"])  # fmt: skip
    with pytest.raises(DatasetError, match="maps actions onto states dim by dim"):
        import_dataset(_cfg(root, tmp_path / "w", action_key="action[0:4]"))
    with pytest.raises(DatasetError, match=r"has 6 entries; \[7\] is out of range"):
        import_dataset(_cfg(root, tmp_path / "i", state_key="observation.state[7]",
                            action_key="action[0]"))  # fmt: skip
    import_dataset(_cfg(root, tmp_path / "out", episodes="0:1"))
    other = fx.write_lerobot_v21(tmp_path / "other", eps[:2], fps=30, state_names=JOINTS)
    with pytest.raises(DatasetError, match="holds another import"):
        import_dataset(_cfg(other, tmp_path / "out", episodes="0:2"))
    assert import_dataset(_cfg(root, tmp_path / "out", episodes="0:2")).imported == [1]


def test_a_lagging_table_within_the_tolerance_reads_across_decode_windows(tmp_path, monkeypatch):
    """Rows 0.035 s behind their frames, tolerance 0.05 s, 8-frame decode windows: each frame
    stays in its row's window (windows split half-way between rows; second review)."""
    from worldmodel.data.importers import common

    path = tmp_path / "v.mp4"
    write_video(path, fx.make_frames(20, 64, 48), fps=10, spec=SPEC)
    times = np.arange(20) / 10 - 0.035
    times[0] = 0.0
    plan = common.ImportPlan(10.0, 10.0, 1, "as_recorded", "absolute", "euler_xyz", 64,
                             "crop", 0.05)  # fmt: skip
    monkeypatch.setattr(common, "DECODE_BUDGET_BYTES", 8 * 64 * 48 * 3)
    frames = common.read_camera(common.VideoRef(path), times, np.arange(20), plan, tmp_path / "t")
    assert _indices(frames) == [i % 12 for i in range(20)]  # the fixture frames count mod 12
