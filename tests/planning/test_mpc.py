"""MPC: reaches toy goals through run_mpc, switches sub-goals, serves action chunks."""

from __future__ import annotations

import numpy as np
import pytest

from planning.cem import CEMConfig, CEMPlanner
from planning.icem import ICEMConfig, ICEMPlanner
from planning.mpc import MPCConfig, MPCController
from planning.robot import FakeRobot, SafetyLimits, run_mpc
from planning.toy import ToyDynamics

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], dtype=np.float32)
IMG = np.zeros((16, 16, 3), np.uint8)
LIMITS = SafetyLimits(rate_limit_hz=0.0)


def near(state, goal, tol=0.006) -> bool:
    return bool(np.abs(np.asarray(state)[:3] - goal[:3]).max() < tol)


@pytest.mark.parametrize("planner", [CEMPlanner(CEMConfig()), ICEMPlanner(ICEMConfig())])
def test_mpc_reaches_goal_in_few_steps(toy, planner):
    goal = START.copy()
    goal[:3] += [0.10, -0.07, 0.09]  # needs >= 2 steps of 0.05
    ctrl = MPCController(toy, planner)
    ctrl.set_goal(IMG, goal_states=goal)
    with FakeRobot(START, limits=LIMITS) as robot:
        out = run_mpc(robot, ctrl, max_steps=8, stop=lambda obs, info: near(obs.state, goal))
    assert out.stopped_early, robot.state - goal
    assert len(out.infos) <= 5
    assert out.infos[-1].energy < out.infos[0].energy


def test_subgoal_budget_then_threshold(toy):
    a, b = START.copy(), START.copy()
    a[:3] += [0.04, 0.0, 0.0]
    b[:3] += [0.04, 0.0, 0.08]
    ctrl = MPCController(toy, CEMPlanner(CEMConfig()), cfg=MPCConfig())
    ctrl.set_goal([IMG, IMG], goal_states=np.stack([a, b]), budgets=[2, 1])
    with FakeRobot(START, limits=LIMITS) as robot:
        out = run_mpc(robot, ctrl, max_steps=5)
    assert [i.subgoal_index for i in out.infos] == [0, 0, 1, 1, 1]
    assert near(robot.state, b)
    # threshold switching: moves on once the current frame is close to sub-goal 0
    ctrl = MPCController(toy, CEMPlanner(CEMConfig()), cfg=MPCConfig(subgoal_energy_threshold=0.05))
    ctrl.set_goal([IMG, IMG], goal_states=np.stack([a, b]))
    with FakeRobot(START, limits=LIMITS) as robot:
        out = run_mpc(robot, ctrl, max_steps=5)
    idx = [i.subgoal_index for i in out.infos]
    assert idx[0] == 0 and idx[-1] == 1 and near(robot.state, b)


def test_action_chunk_and_warm_start(toy):
    goal = START.copy()
    goal[:3] += [0.06, 0.06, 0.0]
    ctrl = MPCController(toy, CEMPlanner(CEMConfig(horizon=2)), cfg=MPCConfig(action_chunk=2))
    ctrl.set_goal(IMG, goal_states=goal)
    with FakeRobot(START, limits=LIMITS) as robot:
        out = run_mpc(robot, ctrl, max_steps=4)
    assert [i.replanned for i in out.infos] == [True, False, True, False]
    assert near(robot.state, goal, tol=0.01)
    with pytest.raises(ValueError, match="action_chunk"):
        MPCController(toy, CEMPlanner(CEMConfig(horizon=1)), cfg=MPCConfig(action_chunk=2))


def test_mpc_errors_and_reset(toy):
    ctrl = MPCController(toy, CEMPlanner())
    with pytest.raises(ValueError, match="no goal"):
        ctrl.act(IMG, START)
    with pytest.raises(ValueError, match="budgets"):
        ctrl.set_goal([IMG, IMG], budgets=[1])
    ctrl.set_goal(IMG, goal_states=START)
    ctrl.act(IMG, START)
    ctrl.reset()
    assert ctrl.subgoal_index == 0 and ctrl.has_goal


def test_goal_without_state_is_encoded_at_first_step():
    calls = []

    class Spy(ToyDynamics):
        def encode(self, images, states):
            calls.append(images.shape[0])
            return super().encode(images, states)

    ctrl = MPCController(Spy(), CEMPlanner(CEMConfig(samples=32, top_k=4, iterations=2)))
    ctrl.set_goal([IMG, IMG, IMG])
    for _ in range(3):
        ctrl.act(IMG, START)
    assert calls == [1, 3, 1, 1]  # frame, all goals once, then one frame per step
