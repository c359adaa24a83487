"""Round trip of the episode format: write synthetic episodes, read clips back."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from worldmodel.data import EpisodeWriter, make_step_table, open_dataset, read_meta
from worldmodel.data.actions import compose_actions, euler_xyz_from_matrix, matrix_from_euler_xyz
from worldmodel.data.clips import ClipDataset
from worldmodel.data.synthetic import (
    render_dot,
    synthetic_episode,
    synthetic_meta,
    write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_synthetic_dataset(
        root, num_episodes=3, lengths=[12, 9, 5], image_size=32, cameras=("exterior", "wrist")
    )
    return root


def test_round_trip_values(dataset_root):
    ds = open_dataset(dataset_root, verify_videos=True)
    assert len(ds) == 3
    assert [ds.episode_length(i) for i in range(3)] == [12, 9, 5]
    rng = np.random.default_rng(0)
    expected = [synthetic_episode(n, rng) for n in (12, 9, 5)]
    for i, table in enumerate(expected):
        clip = ds.read_clip(i, 1, 4, camera="exterior")
        np.testing.assert_array_equal(clip.states, table.state[1:5])
        np.testing.assert_array_equal(clip.actions, table.action[1:5])
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == (4, 32, 32, 3)
        want = render_dot(table.state[1:5], 32).astype(int)
        assert np.abs(clip.frames.astype(int) - want).mean() < 2.0
        wrist = ds.read_clip(i, 1, 4, camera="wrist").frames.astype(int)
        assert np.abs(wrist - render_dot(table.state[1:5], 32, shade=40)).mean() < 2.0
        full = ds.read_episode_frames(i)
        assert full.shape[0] == len(table)
        np.testing.assert_array_equal(
            ds.steps(i).action_valid, np.arange(len(table)) < len(table) - 1
        )
        assert not ds.steps(i).action_valid[-1] and not ds.steps(i).action[-1].any()


def test_meta_round_trip(dataset_root):
    meta = read_meta(dataset_root)
    assert meta == synthetic_meta(32, ("exterior", "wrist"))
    raw = json.loads((dataset_root / "meta.json").read_text())
    assert raw["format"] == "wm-episodes" and raw["format_version"] == 1
    fy = raw["cameras"][0]["K"][1][1]
    assert fy == pytest.approx(16 / np.tan(np.radians(22.5)))


def test_clip_stride_composes_actions(dataset_root):
    ds = open_dataset(dataset_root)
    table = ds.steps(0)
    clip = ds.read_clip(0, 2, 3, stride=3)
    np.testing.assert_array_equal(clip.states, table.state[[2, 5, 8]])
    # synthetic actions translate only: the composition is the sum over the stride
    np.testing.assert_allclose(clip.actions[0, :3], table.action[2:5, :3].sum(0), atol=1e-6)
    np.testing.assert_allclose(clip.actions[1, :3], table.action[5:8, :3].sum(0), atol=1e-6)
    np.testing.assert_allclose(
        clip.actions[:, 6], [np.clip(table.action[t : t + 3, 6].sum(), -1, 1) for t in (2, 5, 8)]
    )
    # last clip frame 8 of 12: actions 8, 9, 10 valid, 11 is the zero terminal row
    np.testing.assert_allclose(clip.actions[2, :3], table.action[8:11, :3].sum(0), atol=1e-6)
    with pytest.raises(IndexError):
        ds.read_clip(0, 3, 4, stride=3)  # last frame 12 is past the end


def test_compose_actions_matches_sequential_rotation():
    rng = np.random.default_rng(1)
    acts = rng.uniform(-0.25, 0.25, size=(4, 7))
    valid = np.array([True, True, True, False])
    out = compose_actions(acts, valid)
    rot = np.eye(3)
    for a in acts[:3]:
        rot = matrix_from_euler_xyz(a[3:6]) @ rot
    np.testing.assert_allclose(matrix_from_euler_xyz(out[3:6].astype(float)), rot, atol=1e-6)
    np.testing.assert_allclose(out[:3], acts[:3, :3].sum(0), atol=1e-6)
    np.testing.assert_allclose(
        euler_xyz_from_matrix(matrix_from_euler_xyz(acts[:, 3:6])), acts[:, 3:6], atol=1e-9
    )


def test_clip_dataset_length_and_items(dataset_root):
    clips = ClipDataset(dataset_root, num_frames=4, stride=2)
    # span 6 frames: starts 12-6=6, 9-6=3, 5-6<0 -> 0
    assert len(clips) == 6 + 3
    assert clips.locate(0) == (0, 0) and clips.locate(5) == (0, 5) and clips.locate(6) == (1, 0)
    item = clips[8]
    assert item["frames"].shape == (4, 32, 32, 3) and str(item["frames"].dtype) == "torch.uint8"
    assert item["states"].shape == (4, 7) and item["actions"].shape == (4, 7)
    assert int(item["episode"]) == 1 and int(item["start"]) == 2
    ds = open_dataset(dataset_root)
    np.testing.assert_array_equal(item["states"].numpy(), ds.steps(1).state[[2, 4, 6, 8]])
    with pytest.raises(IndexError):
        clips[len(clips)]
    assert len(ClipDataset(dataset_root, num_frames=1)) == 12 + 9 + 5


def test_dataset_pickles_without_readers(dataset_root):
    ds = open_dataset(dataset_root)
    ds.read_clip(0, 0, 2)
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.read_clip(0, 0, 2).frames, ds.read_clip(0, 0, 2).frames)


def test_clip_dataset_in_dataloader(dataset_root):
    torch = pytest.importorskip("torch")
    clips = ClipDataset(dataset_root, 3)
    clips[0]  # the parent now holds an open decoder; forked workers must not share it
    loader = torch.utils.data.DataLoader(clips, batch_size=4, shuffle=True, num_workers=2)
    seen = set()
    for batch in loader:
        assert batch["frames"].shape[1:] == (3, 32, 32, 3) and batch["actions"].shape[1:] == (3, 7)
        for k in range(len(batch["start"])):
            ep, start = int(batch["episode"][k]), int(batch["start"][k])
            ref = clips.episodes.read_clip(ep, start, 3)
            np.testing.assert_array_equal(batch["frames"][k].numpy(), ref.frames)
            seen.add((ep, start))
    assert len(seen) == len(clips)


def test_leftover_tmp_dir_is_ignored(tmp_path):
    write_synthetic_dataset(tmp_path, num_episodes=2, lengths=6)
    half = tmp_path / "episodes" / "ep_000002.999.tmp"
    half.mkdir()
    (half / "exterior.mp4").write_bytes(b"\x00" * 10)  # half-written, no steps.npz
    ds = open_dataset(tmp_path, verify_videos=True)
    assert ds.episode_names == ["ep_000000", "ep_000001"]
    writer = EpisodeWriter(tmp_path, read_meta(tmp_path))
    assert writer.remove_stale_temps() == [half] and not half.exists()


def test_writer_refuses_overwrite_and_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="width 48 px cannot be decoded"):
        EpisodeWriter(tmp_path, synthetic_meta(48))
    meta = synthetic_meta(64)
    writer = EpisodeWriter(tmp_path, meta)
    table = make_step_table(np.zeros((3, 7)), np.zeros((2, 7)), meta.fps)
    frames = {"exterior": np.zeros((3, 64, 64, 3), np.uint8)}
    writer.write(0, frames, table)
    assert writer.is_complete(0) and not writer.is_complete(1)
    from worldmodel.errors import DatasetError

    with pytest.raises(DatasetError, match="already exists"):
        writer.write(0, frames, table)
    with pytest.raises(DatasetError, match="expected uint8"):
        writer.write(1, {"exterior": np.zeros((4, 64, 64, 3), np.uint8)}, table)
    with pytest.raises(DatasetError, match="no frames for camera"):
        writer.write(1, {}, table)
    assert not list((tmp_path / "episodes").glob("*.tmp"))
    with pytest.raises(DatasetError, match="image_size"):
        EpisodeWriter(tmp_path, synthetic_meta(32))  # resume into an incompatible dataset
