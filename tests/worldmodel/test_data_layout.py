"""Datasets of any state / action width: the layout fields of meta.json, validated everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldmodel.data import EpisodeWriter, make_step_table, open_dataset, read_meta
from worldmodel.data.images import IMAGE_POLICIES as FIT_POLICIES
from worldmodel.data.meta import EE_NAMES, IMAGE_POLICIES, CameraMeta, DatasetMeta
from worldmodel.data.synthetic import synthetic_meta, write_synthetic_dataset
from worldmodel.errors import DatasetError

CAM = CameraMeta(name="front", width=32, height=32, fovy_deg=None, source_image_size=(640, 480))


def _meta(**kw) -> DatasetMeta:
    base = {"fps": 10.0, "image_size": 32, "cameras": (CAM,), "state_dim": 6, "action_dim": 8}
    base["action_kind"] = "delta"  # the default, ee_delta, needs the 7-D layout
    return DatasetMeta(**{**base, **kw})


def _frames(n: int) -> dict[str, np.ndarray]:
    return {"front": np.full((n, 32, 32, 3), 80, np.uint8)}


def test_any_width_round_trips_with_stats_and_kind(tmp_path):
    meta = _meta(action_low=(-1.0,) * 8, action_high=(1.0,) * 8)
    assert meta.state_names == tuple(f"state_{i}" for i in range(6))
    assert meta.action_names[-1] == "action_7"
    writer = EpisodeWriter(tmp_path, meta)
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(6, 8)).astype(np.float32)
    actions[-1] = 0
    writer.write(0, _frames(6), make_step_table(rng.normal(size=(6, 6)), actions, 10.0))
    ds = open_dataset(tmp_path, verify_videos=True)
    assert ds.meta == meta and ds.meta.camera("front").source_image_size == (640, 480)
    clip = ds.read_clip(0, 0, 3, stride=2, camera="front")
    assert clip.states.shape == (3, 6) and clip.actions.shape == (3, 8)
    np.testing.assert_allclose(clip.actions[0], actions[0] + actions[1], rtol=1e-6)  # delta: sum
    raw = json.loads((tmp_path / "meta.json").read_text())
    assert raw["cameras"][0]["fovy_deg"] is None and raw["cameras"][0]["K"] is None
    with pytest.raises(ValueError, match="intrinsics unknown"):
        CAM.focal_px  # noqa: B018


def test_absolute_actions_compose_to_the_last_target(tmp_path):
    writer = EpisodeWriter(tmp_path, _meta(action_kind="absolute", action_dim=6))
    actions = np.arange(36, dtype=np.float32).reshape(6, 6)
    actions[-1] = 0
    writer.write(0, _frames(6), make_step_table(np.zeros((6, 6)), actions, 10.0))
    clip = open_dataset(tmp_path).read_clip(0, 0, 3, stride=2, camera="front")
    np.testing.assert_array_equal(clip.actions[:2], actions[[1, 3]])


def test_widths_are_checked_against_meta(tmp_path):
    writer = EpisodeWriter(tmp_path, _meta())
    with pytest.raises(
        DatasetError, match=r"field 'action' has shape \(4, 7\), but meta\.json gives action_dim 8"
    ):
        writer.write(0, _frames(4), make_step_table(np.zeros((4, 6)), np.zeros((4, 7)), 10.0))
    assert not list((tmp_path / "episodes").iterdir())
    writer.write(0, _frames(4), make_step_table(np.zeros((4, 6)), np.zeros((4, 8)), 10.0))
    raw = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**raw, "action_dim": 7, "action_names": []}))
    with pytest.raises(
        DatasetError, match=r"steps\.npz: field 'action' has shape \(4, 8\), expected \(4, 7\)"
    ):
        open_dataset(tmp_path)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"state_names": ["a"]}, "state_names must be 6 non-empty strings"),
        ({"action_kind": "joint"}, "action_kind must be one of"),
        ({"action_kind": "ee_delta"}, "'ee_delta' needs the 7-D end-effector layout"),
        ({"action_std": [1.0] * 7}, "action_std must be empty .* or 8 finite numbers"),
        ({"state_std": [-1.0] * 6}, "state_std must be >= 0"),
        ({"action_low": [1.0] * 8, "action_high": [0.0] * 8}, "low <= high"),
        ({"action_low": [0.0] * 8}, "both be given"),
        ({"image_policy": "stretch"}, "image_policy must be one of"),
        ({"action_mean": "zero"}, "field 'action_mean' is 'zero'"),
        ({"state_names": [1, 2]}, "field 'state_names'"),
    ],
)
def test_bad_layout_fields_name_the_field(tmp_path, change, pattern):
    EpisodeWriter(tmp_path, _meta())
    raw = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**raw, **change}))
    with pytest.raises(DatasetError, match=pattern) as info:
        read_meta(tmp_path)
    assert "meta.json" in str(info.value)


def test_old_meta_json_gets_the_end_effector_defaults(tmp_path):
    write_synthetic_dataset(tmp_path, num_episodes=1, lengths=[4], image_size=32)
    raw = json.loads((tmp_path / "meta.json").read_text())
    for key in ("state_names", "action_names", "action_kind", "image_policy", "action_low"):
        raw.pop(key)
    for cam in raw["cameras"]:
        cam.pop("source_image_size")
    (tmp_path / "meta.json").write_text(json.dumps(raw))
    meta = read_meta(tmp_path)
    assert meta == synthetic_meta(32, ("exterior",))
    assert meta.state_names == meta.action_names == EE_NAMES
    assert (meta.action_kind, meta.image_policy, meta.action_low) == ("ee_delta", "crop", ())
    assert open_dataset(tmp_path).read_clip(0, 0, 2).states.shape == (2, 7)


def test_policies_agree_with_fit_frames():
    assert IMAGE_POLICIES == FIT_POLICIES
