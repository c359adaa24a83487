"""Battery: bad inputs to the planners, the MPC controller, the world model and every robot
adapter. Each case: the specific error, nothing sent to the robot, no file changed, and the
same object plans / sends a good action afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planning.mpc import MPCConfig, MPCController
from planning.planners import make_planner
from planning.planners.reference import reference_cem
from planning.robots import CartesianDeltaRobot, FakeRobot, Observation, SafetyLimits, run_mpc
from planning.toy import ToyDynamics, blank_images
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.predictor import ACPredictor, PredictorConfig
from worldmodel.world_model import WorldModel

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], dtype=np.float32)
GOAL = START + np.array([0.03, -0.02, 0.02, 0, 0, 0, 0.3], dtype=np.float32)
NAN, INF = float("nan"), float("inf")
SMALL = dict(samples=16, top_k=4, iterations=2, horizon=2)
SIZES = {"cem": SMALL, "icem": dict(SMALL, min_samples=8)}


def _with(vec: np.ndarray, index: int, value: float) -> np.ndarray:
    out = np.array(vec, dtype=np.float32, copy=True)
    out[index] = value
    return out


@pytest.fixture(scope="module")
def toy():
    return ToyDynamics()


def _controller(toy, name="cem", **mpc) -> MPCController:
    ctl = MPCController(toy, make_planner(name, **SMALL), cfg=MPCConfig(**mpc))
    ctl.set_goal(blank_images(1)[0].numpy(), GOAL)
    return ctl


def _plans(ctl: MPCController) -> None:
    """Still serving: a good observation gives a finite action."""
    action, info = ctl.act(blank_images(1)[0].numpy(), START)
    assert np.all(np.isfinite(action)) and np.isfinite(info.energy)


# --- planners ---------------------------------------------------------------------------------

PLANNER_CASES = {
    "nan_latent": ("z", NAN),
    "inf_goal_latent": ("z_goal", INF),
    "nan_state": ("state", NAN),
    "inf_warm_start": ("init_mean", INF),
}


@pytest.mark.parametrize("planner", ["cem", "icem"])
@pytest.mark.parametrize("case", sorted(PLANNER_CASES))
def test_planners_refuse_non_finite_inputs(planner, case, toy):
    plan = make_planner(planner, **SIZES[planner])
    states = torch.as_tensor(START[None])
    z = toy.encode(blank_images(1), states)
    args = {"z": z, "z_goal": toy.encode(blank_images(1), torch.as_tensor(GOAL[None])),
            "state": states, "init_mean": torch.zeros(1, SMALL["horizon"], 7)}  # fmt: skip
    name, value = PLANNER_CASES[case]
    bad = dict(args)
    bad[name] = args[name].clone()
    bad[name].view(-1)[0] = value
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
        plan.plan(toy, bad["z"], bad["state"], bad["z_goal"], init_mean=bad["init_mean"])
    res = plan.plan(toy, **{k: args[k] for k in ("z", "state", "z_goal")})
    assert torch.isfinite(res.actions).all()


def test_reference_planner_refuses_a_nan_state(toy):
    images = blank_images(1)
    bad = torch.as_tensor(_with(START, 2, NAN)[None])
    with pytest.raises(ValueError, match="state contains NaN"):
        reference_cem(toy, images, bad, images, torch.as_tensor(GOAL[None]))


# --- MPC controller ---------------------------------------------------------------------------


@pytest.mark.parametrize("index,value", [(0, NAN), (6, INF), (3, -INF)])
def test_mpc_refuses_non_finite_state_and_keeps_serving(toy, index, value):
    ctl = _controller(toy)
    with pytest.raises(ValueError, match="NaN or inf"):
        ctl.act(blank_images(1)[0].numpy(), _with(START, index, value))
    _plans(ctl)


def test_mpc_refuses_non_finite_goal_state(toy):
    ctl = _controller(toy)
    with pytest.raises(ValueError, match="goal_states contain NaN"):
        ctl.set_goal(blank_images(1)[0].numpy(), _with(GOAL, 1, NAN))
    _plans(ctl)


class _NaNDynamics(ToyDynamics):
    """A model whose predictions are NaN (e.g. NaN weights that slipped past loading)."""

    def rollout(self, z, state, actions, history=None):
        return super().rollout(z, state, actions) * NAN


def test_mpc_refuses_a_non_finite_plan(toy):
    ctl = MPCController(_NaNDynamics(), make_planner("cem", **SMALL))
    ctl.set_goal(blank_images(1)[0].numpy(), GOAL)
    with pytest.raises(RuntimeError, match="non-finite plan"):
        ctl.act(blank_images(1)[0].numpy(), START)
    _plans(_controller(toy))


@pytest.mark.parametrize("reported", [-0.6, 1.8])
def test_mpc_gripper_filter_with_an_out_of_range_gripper_stays_boxed(toy, reported):
    ctl = _controller(toy, gripper_close_at=0.3, hold_arm_on_gripper=True)
    action, _ = ctl.act(blank_images(1)[0].numpy(), _with(START, 6, reported))
    assert np.all(np.abs(action) <= np.array([0.05] * 3 + [0.25] * 3 + [1.0]) + 1e-6)
    _plans(ctl)


# --- world model inputs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_model():
    torch.manual_seed(0)
    enc = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    pred = PredictorConfig(encoder_dim=96, width=48, depth=1, num_heads=2, mlp_dim=64,
                           input_grid=(8, 8), pool_kernel=2)  # fmt: skip
    return WorldModel(enc, ACPredictor(pred))


@pytest.mark.parametrize(
    "image,state,match",
    [
        (np.zeros((1, 1, 2, 3), np.uint8), START, "too small to plan on"),
        (np.zeros((1, 64, 64, 3), np.float32), START, "expected uint8 images"),
        (np.zeros((1, 64, 64, 4), np.uint8), START, "expected images"),
        (np.zeros((1, 64, 64, 3), np.uint8), _with(START, 0, NAN), "states hold NaN"),
    ],
    ids=["one_by_two_pixels", "float_image", "four_channels", "nan_state"],
)
def test_world_model_refuses_bad_frames(world_model, image, state, match):
    with pytest.raises(ValueError, match=match):
        world_model.encode(torch.as_tensor(image), torch.as_tensor(state[None]))
    z = world_model.encode(
        torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.as_tensor(START[None])
    )
    assert torch.isfinite(z).all()


def test_tiny_goal_image_is_refused_by_the_controller(world_model):
    ctl = MPCController(world_model, make_planner("cem", **SMALL))
    with pytest.raises(ValueError, match="too small"):
        ctl.set_goal(np.zeros((1, 2, 3), np.uint8), GOAL)
    ctl.set_goal(np.zeros((64, 64, 3), np.uint8), GOAL)
    action, _ = ctl.act(np.zeros((64, 64, 3), np.uint8), START)
    assert np.all(np.isfinite(action))


# --- robot adapters ---------------------------------------------------------------------------


def _fake(script=None) -> FakeRobot:
    robot = FakeRobot(START, limits=SafetyLimits(rate_limit_hz=0.0), script=script)
    robot.connect()
    return robot


@pytest.mark.parametrize(
    "action,match",
    [
        (_with(np.zeros(7), 0, NAN), "NaN or inf"),
        (_with(np.zeros(7), 6, INF), "NaN or inf"),
        (np.zeros(6), "shape"),
    ],
    ids=["nan_action", "inf_gripper", "short_action"],
)
def test_fake_robot_refuses_bad_actions_and_records_nothing(action, match):
    robot = _fake()
    with pytest.raises(ValueError, match=match):
        robot.send_action(action)
    assert robot.actions == []
    robot.send_action(np.zeros(7))
    assert len(robot.actions) == 1


def test_fake_robot_refuses_a_nan_observation_and_run_mpc_sends_nothing(toy):
    def script(step, state):
        s = _with(state, 2, NAN) if step == 0 else state
        return Observation(np.zeros((16, 16, 3), np.uint8), s, step * 0.25)

    robot = _fake(script)
    with pytest.raises(ValueError, match="observation state must be finite"):
        run_mpc(robot, _controller(toy), max_steps=2)
    assert robot.actions == []


class _Wire:
    """A Cartesian robot's I/O: the observations to read and the commands that reached it."""

    def __init__(self, state) -> None:
        self.state, self.sent = np.asarray(state, np.float32), []

    def read(self) -> Observation:
        return Observation(np.zeros((8, 8, 3), np.uint8), self.state, 0.0)


@pytest.mark.parametrize(
    "state,action,match",
    [
        (_with(START, 1, NAN), np.zeros(7), "observation state must be finite"),
        (START, _with(np.zeros(7), 3, -INF), "NaN or inf"),
        (START, np.full(7, NAN), "NaN or inf"),
    ],
    ids=["nan_reading", "inf_rotation_command", "all_nan_command"],
)
def test_cartesian_robot_never_transports_a_bad_command(state, action, match):
    wire = _Wire(state)
    robot = CartesianDeltaRobot(wire.read, wire.sent.append, SafetyLimits(rate_limit_hz=0.0),
                                dry_run=False)  # fmt: skip
    robot.connect()
    with pytest.raises(ValueError, match=match):
        robot.get_observation()
        robot.send_action(action)
    assert wire.sent == []
    wire.state = START
    robot.get_observation()
    robot.send_action(np.array([0.2, 0, 0, 0, 0, 0, 0.0]))  # clamped to the step limit
    (sent,) = wire.sent
    assert np.all(np.isfinite(sent)) and np.linalg.norm(sent[:3]) <= 0.05 + 1e-6


def test_sim_robot_refuses_a_nan_action_and_keeps_stepping():
    from envs.fake_env import FakeArmEnv
    from planning.robots import SimRobot

    robot = SimRobot(FakeArmEnv(), SafetyLimits(rate_limit_hz=0.0), seed=0)
    robot.connect()
    before = robot.get_observation().state.copy()
    with pytest.raises(ValueError, match="NaN or inf"):
        robot.send_action(np.full(7, NAN))
    np.testing.assert_array_equal(robot.get_observation().state, before)
    robot.send_action(np.zeros(7))
