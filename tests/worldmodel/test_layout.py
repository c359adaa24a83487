"""Layout: any state/action dims, how actions move states, stored with the model (#23)."""

from __future__ import annotations

import pytest
import torch

from worldmodel.errors import CheckpointError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.layout import Layout
from worldmodel.models.predictor import ACPredictor, PredictorConfig
from worldmodel.models.state_ops import propagate_states
from worldmodel.world_model import WorldModel

JOINTS = Layout(6, 6, [f"j{i}" for i in range(6)], [f"dj{i}" for i in range(6)], "delta",
                [-0.2] * 6, [0.2] * 6, fps=15.0)  # fmt: skip


def test_default_layout_propagates_like_the_published_state_ops():
    g = torch.Generator().manual_seed(0)
    state = torch.rand(3, 7, generator=g)
    actions = (torch.rand(3, 4, 7, generator=g) - 0.5) * 0.1
    torch.testing.assert_close(Layout().propagate(state, actions), propagate_states(state, actions))


def test_delta_and_absolute_kinds():
    state = torch.tensor([[1.0, 2.0, 3.0]])
    actions = torch.tensor([[[0.1, 0.0, -0.1], [0.2, 0.2, 0.2], [0.0, 0.0, 0.0]]])
    named = dict(state_names=["a", "b", "c"], action_names=["da", "db", "dc"],
                 action_low=[-1] * 3, action_high=[1] * 3)  # fmt: skip
    delta = Layout(3, 3, action_kind="delta", **named).propagate(state, actions)
    torch.testing.assert_close(delta[0, 2], torch.tensor([1.3, 2.2, 3.1]))
    absolute = Layout(3, 3, action_kind="absolute", **named).propagate(state, actions)
    torch.testing.assert_close(absolute[0, 1], actions[0, 0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(state_dim=6, action_dim=6), "'ee_delta' needs 7-D"),
        (dict(action_kind="joints"), "action_kind must be one of"),
        (dict(action_low=[0.1] * 7), "finite low < high"),
        (dict(action_names=["a"]), "action_names has 1 entries"),
        (dict(fps=0.0), "fps must be > 0"),
    ],
)
def test_bad_layouts_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Layout(**kwargs)


def test_from_dict_names_the_unknown_field():
    with pytest.raises(ValueError, match=r"m\.json: unknown layout fields \['hz'\]"):
        Layout.from_dict({"hz": 4}, "m.json")


def _joint_model() -> WorldModel:
    torch.manual_seed(0)
    enc = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    pcfg = PredictorConfig(encoder_dim=96, width=48, depth=1, num_heads=2, mlp_dim=64,
                           input_grid=(8, 8), pool_kernel=2, action_dim=6, state_dim=6)  # fmt: skip
    return WorldModel(enc, ACPredictor(pcfg), layout=JOINTS)


def test_a_six_dof_joint_model_saves_loads_encodes_and_rolls_out(tmp_path):
    wm = _joint_model()
    wm.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm")
    assert loaded.layout == JOINTS and loaded.action_dim == 6 and loaded.state_dim == 6
    z = loaded.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), torch.zeros(2, 6))
    preds = loaded.rollout(z, torch.zeros(2, 6), torch.zeros(2, 5, 3, 6))
    assert preds.shape[:3] == (2, 5, 3) and torch.isfinite(preds).all()
    with pytest.raises(ValueError, match=r"states \(B,6\)"):
        loaded.encode(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 7))


def test_a_layout_that_does_not_fit_the_predictor_is_refused(tmp_path):
    wm = _joint_model()
    wm.save(tmp_path / "wm")
    import json

    path = tmp_path / "wm" / "world_model.json"
    meta = json.loads(path.read_text())
    meta["layout"] = Layout().to_dict()  # 7-D layout, 6-D predictor
    path.write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match="7-D states and 7-D actions; the predictor takes 6-D"
    ):
        WorldModel.load(tmp_path / "wm")
    meta["layout"] = {**JOINTS.to_dict(), "action_kind": "teleport"}
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"world_model\.json: 'layout': Layout\.action_kind"):
        WorldModel.load(tmp_path / "wm")


def test_planner_bounds_come_from_the_model_layout():
    from planning.planners import CEMConfig, make_planner

    wm = _joint_model()
    planner = make_planner("cem", CEMConfig(samples=8, top_k=2, iterations=1), wm)
    assert planner.cfg.action_low == JOINTS.action_low and planner.cfg.action_dim == 6
    assert planner.cfg.layout.xyz_dims is None and planner.cfg.layout.rotation_dims is None
    z = wm.encode(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 6))
    res = planner.plan(wm, z, torch.zeros(1, 6), z)
    assert res.actions.shape == (1, 1, 6)
    assert (res.actions.abs() <= 0.2 + 1e-6).all()
    from planning.protocol import ActionLayout

    mine = CEMConfig(
        action_low=(-0.05,) * 6, action_high=(0.05,) * 6, layout=ActionLayout(None, None, None)
    )
    explicit = make_planner("cem", mine, wm)
    assert explicit.cfg.action_high == (0.05,) * 6  # set by the user: kept


def test_frames_are_fitted_by_the_recorded_image_policy():
    """A model trained on padded 640x480 frames pads a 640x480 robot frame the same way."""
    import dataclasses

    wm = _joint_model()
    frame = torch.full((1, 48, 64, 3), 200, dtype=torch.uint8)
    z_crop = wm.encode(frame, torch.zeros(1, 6))
    wm.layout = dataclasses.replace(JOINTS, image_policy="pad")
    z_pad = wm.encode(frame, torch.zeros(1, 6))
    from worldmodel.data.images import fit_frames

    padded = torch.from_numpy(fit_frames(frame.numpy(), 64, "pad"))
    torch.testing.assert_close(z_pad, wm.encode(padded, torch.zeros(1, 6)))
    assert not torch.allclose(z_crop, z_pad)


def test_a_joint_dataset_without_bounds_names_the_unfinished_import():
    from types import SimpleNamespace

    meta = SimpleNamespace(state_dim=6, action_dim=6, action_kind="absolute", action_low=(),
                           action_high=(), fps=10.0, state_names=(), action_names=())  # fmt: skip
    with pytest.raises(ValueError, match="rerun wm-import"):
        Layout.from_meta(meta)
