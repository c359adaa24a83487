"""Safety filter (each limit reported), FakeRobot, SimRobot (stub and real envs), template."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest

from planning.protocol import ActionLayout
from planning.robots import (
    CartesianDeltaRobot,
    FakeRobot,
    Observation,
    Robot,
    SafetyFilter,
    SafetyLimits,
    SimRobot,
)

STATE = np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5], np.float32)
IMG = np.zeros((8, 8, 3), np.uint8)


@pytest.mark.parametrize(
    ("action", "state_change", "reason"),
    [
        ([0.04, 0.04, 0.0, 0, 0, 0, 0], None, "translation"),
        ([0, 0, 0, 0.2, 0.2, 0.0, 0], None, "rotation"),
        ([0, 0, 0.04, 0, 0, 0, 0], (2, 0.58), "workspace"),
        ([0, 0, 0, 0, 0, 0, 0.9], None, "gripper"),
    ],
)
def test_safety_filter_each_limit(action, state_change, reason, caplog):
    state = STATE.copy()
    if state_change is not None:
        state[state_change[0]] = state_change[1]
    filt = SafetyFilter(SafetyLimits())
    with caplog.at_level(logging.DEBUG):
        sent, report = filt.filter(np.array(action, np.float32), state)
    assert report.reasons == (reason,)
    assert reason in caplog.text
    (record,) = caplog.records
    assert record.levelno == (logging.DEBUG if reason == "gripper" else logging.WARNING)
    lim = filt.limits
    assert np.linalg.norm(sent[:3]) <= lim.max_translation_m + 1e-6
    assert np.linalg.norm(sent[3:6]) <= lim.max_rotation_rad + 1e-6
    assert np.all(state[:3] + sent[:3] <= np.array(lim.workspace_high_m) + 1e-6)
    assert 0.0 <= state[6] + sent[6] <= 1.0 + 1e-6


def test_safety_filter_passes_safe_action_unchanged():
    a = np.array([0.01, -0.01, 0.0, 0.05, 0.0, 0.0, 0.2], np.float32)
    sent, report = SafetyFilter().filter(a, STATE)
    np.testing.assert_allclose(sent, a, atol=1e-7)
    assert not report.clamped


@pytest.mark.parametrize(
    ("action", "match"),
    [(np.full(7, np.nan), "NaN"), (np.array([0.0, np.inf, 0, 0, 0, 0, 0]), "NaN or inf"),
     (np.zeros(6), "shape"), (np.zeros((1, 7)), "shape")],
)  # fmt: skip
def test_robot_rejects_bad_actions_then_keeps_working(action, match):
    with FakeRobot(STATE) as robot:
        with pytest.raises(ValueError, match=match):
            robot.send_action(action)
        sent = robot.send_action(np.zeros(7))  # the next good action still goes through
        assert len(robot.actions) == 1 and np.all(sent == 0)


def test_robot_requires_connection_and_context_manager():
    robot = FakeRobot(STATE)
    assert isinstance(robot, Robot)
    with pytest.raises(RuntimeError, match="not connected"):
        robot.send_action(np.zeros(7))
    with robot:
        assert robot.connected
    assert not robot.connected


@pytest.mark.parametrize(
    ("obs", "match"),
    [(Observation(np.zeros((8, 8), np.uint8), STATE, 0.0), "rgb"),
     (Observation(IMG.astype(np.float32), STATE, 0.0), "rgb"),
     (Observation(IMG, np.full(7, np.nan), 0.0), "state"),
     (Observation(IMG, np.zeros(6), 0.0), "state")],
)  # fmt: skip
def test_bad_observations_from_hardware_are_rejected(obs, match):
    robot = CartesianDeltaRobot(lambda: obs, transport=lambda a: None)
    with robot, pytest.raises(ValueError, match=match):
        robot.get_observation()


def test_cartesian_template_dry_run_transport_and_rate_limit(caplog):
    sent_log, now = [], [100.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    def make(dry_run):
        return CartesianDeltaRobot(
            lambda: Observation(IMG, STATE, now[0]), transport=sent_log.append,
            limits=SafetyLimits(rate_limit_hz=4.0), dry_run=dry_run,
            clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip

    with make(dry_run=True) as robot, caplog.at_level(logging.INFO):
        robot.get_observation()
        robot.send_action(np.array([0.01, 0, 0, 0, 0, 0, 0]))
        assert sent_log == [] and "dry run" in caplog.text
        with pytest.raises(RuntimeError, match="get_observation first"):
            robot.send_action(np.zeros(7))
    with make(dry_run=False) as robot:
        robot.get_observation()
        robot.send_action(np.array([0.1, 0, 0, 0, 0, 0, 0]))
        assert robot.last_report.reasons == ("translation",)
        robot.get_observation()
        now[0] += 0.1  # only 0.1 s later: must wait 0.15 s for the 4 Hz slot
        robot.send_action(np.zeros(7))
        assert robot.last_report.reasons == ("rate",)
        assert sleeps == [pytest.approx(0.15)]
    assert len(sent_log) == 2 and sent_log[0][0] == pytest.approx(0.05)


class StubArmEnv(gym.Env):
    """Integrates actions like the real envs; reports the applied (clipped) action."""

    def __init__(self):
        self.action_space = gym.spaces.Box(-0.05, 0.05, (7,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {"rgb": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
             "state": gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)}
        )  # fmt: skip
        self.state = STATE.copy()

    def _obs(self):
        return {"rgb": IMG.copy(), "state": self.state.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = STATE.copy()
        return self._obs(), {"goal_rgb": IMG, "options": options}

    def step(self, action):
        applied = np.clip(action, self.action_space.low, self.action_space.high)
        self.state = self.state + applied
        return self._obs(), 0.0, False, False, {"applied_action": applied}


def test_sim_robot_over_stub_env_returns_applied_action():
    with SimRobot(StubArmEnv(), task_id=2) as robot:
        assert robot.info["options"] == {"task_id": 2}
        sent = robot.send_action(np.array([0.03, 0, 0, 0, 0, 0, 0.4]))  # safe: env clips dg
        np.testing.assert_allclose(sent, [0.03, 0, 0, 0, 0, 0, 0.05], atol=1e-7)
        obs = robot.get_observation()
        assert obs.timestamp_s == pytest.approx(0.25)
        np.testing.assert_allclose(obs.state[:3], STATE[:3] + np.array([0.03, 0, 0]), atol=1e-6)
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, 0.9]))
        assert robot.last_report.reasons == ("gripper",)


def test_sim_robot_over_real_env():
    envs = pytest.importorskip("envs")
    if not hasattr(envs, "TASKS"):
        pytest.skip("envs not ready")
    env = gym.make(envs.TASKS["reach"], image_size=32)
    try:
        with SimRobot(env, seed=0, task_id=0) as robot:
            obs0 = robot.get_observation()
            assert obs0.rgb.shape == (32, 32, 3) and obs0.state.shape == (7,)
            assert "goal_rgb" in robot.info
            sent = robot.send_action(np.array([0.03, 0.0, -0.02, 0, 0, 0, 0], np.float32))
            np.testing.assert_allclose(sent, robot.info["applied_action"])
            obs1 = robot.get_observation()
            assert np.linalg.norm(obs1.state[:3] - obs0.state[:3]) > 0.005
    finally:
        env.close()


@pytest.mark.parametrize("index", [0, 2, 6])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_safety_filter_refuses_a_non_finite_state(index, bad):
    state = STATE.copy()
    state[index] = bad
    with pytest.raises(ValueError, match="state contains NaN or inf"):
        SafetyFilter().filter(np.zeros(7, np.float32), state)


NO_PARTS = ActionLayout(None, None, None)


class _ToyWithConventions:
    """Toy dynamics that records conventions like a trained WorldModel (layout, views)."""

    def __init__(self, fps=4.0, views=("exterior",)):
        from planning.toy import ToyDynamics
        from worldmodel.models.layout import Layout

        self._toy = ToyDynamics()
        self.layout, self.views = Layout(fps=fps), views

    def __getattr__(self, name):
        return getattr(self._toy, name)


def _mpc_for(model):
    from planning.mpc import MPCController
    from planning.planners import make_planner

    ctl = MPCController(model, make_planner("cem", samples=8, top_k=2, iterations=1))
    ctl.set_goal(np.zeros((16, 16, 3), np.uint8), STATE)
    return ctl


@pytest.mark.parametrize(
    "robot_kwargs,model_kwargs,match",
    [
        (dict(ctrl_dt_s=0.2), dict(fps=4.0), "controlled at 5 Hz, the model was trained on 4 Hz"),
        (
            dict(initial_state=STATE[:6], limits=SafetyLimits(rate_limit_hz=0, layout=NO_PARTS)),
            dict(),
            "takes 6-D actions, the model plans 7-D",
        ),
        (dict(), dict(views=("exterior", "wrist")), "2 square views side by side"),
    ],
    ids=["rate", "action_size", "missing_camera"],
)
def test_run_mpc_refuses_a_robot_that_does_not_fit_the_model(robot_kwargs, model_kwargs, match):
    from planning.robots import run_mpc

    kwargs = {"initial_state": STATE, "limits": SafetyLimits(rate_limit_hz=0), **robot_kwargs}
    robot = FakeRobot(**kwargs)
    robot.connect()
    with pytest.raises(ValueError, match=match):
        run_mpc(robot, _mpc_for(_ToyWithConventions(**model_kwargs)), max_steps=2)
    assert robot.actions == []  # refused before the first action
    fits = FakeRobot(STATE, limits=SafetyLimits(rate_limit_hz=0))
    fits.connect()
    assert len(run_mpc(fits, _mpc_for(_ToyWithConventions()), max_steps=2).sent) == 2


def test_safety_limits_for_a_joint_space_model_box_each_joint():
    """A joint model's limits are its recorded per-dim box, applied last: the [0, 1] gripper
    rule of the end-effector layout must not turn a gripper in the robot's own units around."""
    from worldmodel.models.layout import Layout

    class Joints:
        layout = Layout(6, 6, [f"j{i}" for i in range(5)] + ["gripper"],
                        [f"dj{i}" for i in range(5)] + ["dgripper"], "delta",
                        [-0.1] * 6, [0.1] * 6)  # fmt: skip

    limits = SafetyLimits.for_model(Joints(), rate_limit_hz=0)
    filt = SafetyFilter(limits, action_dim=6)
    sent, report = filt.filter(np.array([0.5, -0.5, 0.05, 0, 0, 0.05]), np.zeros(6))
    np.testing.assert_allclose(sent, [0.1, -0.1, 0.05, 0, 0, 0.05], atol=1e-6)
    assert report.reasons == ("box",)
    sent, _ = filt.filter(np.array([0, 0, 0, 0, 0, 0.05]), np.array([0, 0, 0, 0, 0, 30.0]))
    assert sent[5] == pytest.approx(0.05)  # a gripper at 30 (mm, say) keeps its planned +0.05
    assert SafetyLimits.for_model(object()) == SafetyLimits()


def test_the_box_is_applied_after_the_gripper_rule():
    box = SafetyLimits(rate_limit_hz=0, action_low=(-0.05,) * 3 + (-0.25,) * 3 + (-0.1,),
                       action_high=(0.05,) * 3 + (0.25,) * 3 + (0.1,))  # fmt: skip
    sent, report = SafetyFilter(box).filter(np.zeros(7), np.array([0.5, 0, 0.3, 0, 0, 0, 1.5]))
    assert -0.1 - 1e-9 <= sent[6] <= 0.1 + 1e-9 and "box" in report.reasons
