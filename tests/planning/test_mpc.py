"""MPC: reaches toy goals through run_mpc, switches sub-goals, serves action chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planning.harness.agents import PlannerAgent
from planning.mpc import MPCConfig, MPCController
from planning.planners.cem import CEMConfig, CEMPlanner
from planning.planners.icem import ICEMConfig, ICEMPlanner
from planning.protocol import final_step_l1_energy, token_weighted_l1_energy
from planning.robots import FakeRobot, SafetyLimits, run_mpc
from planning.toy import ToyDynamics
from worldmodel.models.views import parse_views

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


def test_token_weighted_energy():
    g = torch.Generator().manual_seed(0)
    z_future, z_goal = torch.randn(2, 5, 3, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    even = token_weighted_l1_energy(torch.ones(4))
    torch.testing.assert_close(even(z_future, z_goal), final_step_l1_energy(z_future, z_goal))
    mask = torch.tensor([True, False, True, False])
    expected = final_step_l1_energy(z_future[..., mask, :], z_goal[:, mask])
    torch.testing.assert_close(token_weighted_l1_energy(mask)(z_future, z_goal), expected)
    for bad in (torch.zeros(4), torch.tensor([1.0, -1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="weights"):
            token_weighted_l1_energy(bad)
    with pytest.raises(ValueError, match="z_goal"):
        even(z_future[..., :3, :], z_goal[:, :3])


def test_energy_per_subgoal(toy):
    a, b = START.copy(), START.copy()
    a[:3] += [0.04, 0.0, 0.0]
    b[:3] += [0.0, 0.04, 0.0]
    seen = []

    def tagged(tag):
        def energy(z_future, z_goal):
            seen.append(tag)
            return final_step_l1_energy(z_future, z_goal)

        return energy

    planner = CEMPlanner(CEMConfig(samples=16, iterations=2, top_k=4))
    ctrl = MPCController(toy, planner, energy_fn=tagged("default"))
    ctrl.set_goal([IMG, IMG], np.stack([a, b]), budgets=[1, 1], energy_fns=[tagged("first"), None])
    ctrl.act(IMG, START)
    assert set(seen) == {"first"}
    seen.clear()
    ctrl.act(IMG, START)  # budget spent: sub-goal 1, whose energy is the controller's own
    assert seen[0] == "first" and set(seen[1:]) == {"default"} and ctrl.subgoal_index == 1
    with pytest.raises(ValueError, match="energy_fns"):
        ctrl.set_goal([IMG, IMG], np.stack([a, b]), energy_fns=[None])


def test_agent_energy_views(toy):
    agent = PlannerAgent(toy, CEMPlanner(), energy_views={"reach": ["exterior"], "grasp": [None]})
    assert agent._energies("reach", 1) is None  # one view: the default energy over all tokens
    assert agent._energies("pick_place", 5) is None  # no entry for the task
    with pytest.raises(ValueError, match="goal images"):
        agent._energies("grasp", 4)
    agent.energy_views = {"reach": ["wrist"]}
    with pytest.raises(ValueError, match="view_tokens"):
        agent._energies("reach", 1)
    agent.energy_views = {"reach": "exterior"}  # a list per goal image, not a string
    with pytest.raises(ValueError, match="per goal image"):
        agent._energies("reach", 1)

    class TwoViews(ToyDynamics):
        views = ("exterior", "wrist")

        def view_tokens(self, selected):
            return torch.tensor([parse_views(selected) == ("exterior",)])

    agent = PlannerAgent(TwoViews(), CEMPlanner(), energy_views={"reach": ["exterior"]})
    (energy,) = agent._energies("reach", 1)
    z = torch.randn(1, 1, 1, 1, 8)  # (B, S, H, N=1 token, D)
    torch.testing.assert_close(energy(z, z[:, 0, 0] + 0.5), torch.full((1, 1), 0.5))


def test_execute_filters_close_all_the_way_and_hold_the_arm_in_a_grasp_or_release():
    plan = np.array([0.03, -0.02, 0.01, 0.0, 0.0, 0.1, 0.2], dtype=np.float32)
    off = MPCConfig()
    assert off.execute(plan, START) is plan  # both off: the plan as it is
    opened, closed, half = (START.copy() for _ in range(3))
    opened[-1], closed[-1], half[-1] = 0.0, 1.0, 0.6
    close = MPCConfig(gripper_close_at=0.3)
    np.testing.assert_array_equal(close.execute(plan, opened), plan)  # +0.2 < 0.3: as planned
    closing = plan.copy()
    closing[-1] = 0.4  # >= 0.3: all the way closed, from wherever it is; the arm moves
    out = close.execute(closing, opened)
    assert out[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(out[:-1], closing[:-1])
    assert close.execute(closing, half)[-1] == pytest.approx(0.4)
    opening = plan.copy()
    opening[-1] = -0.45  # openings are executed as planned
    np.testing.assert_array_equal(close.execute(opening, closed), opening)
    # the arm holds where the command passes 0.5 (a grasp or a release), nowhere else
    hold = MPCConfig(hold_arm_on_gripper=True)
    assert not hold.execute(closing, half - [0, 0, 0, 0, 0, 0, 0.3])[:-1].any()  # 0.3 -> 0.7
    np.testing.assert_array_equal(hold.execute(opening, closed), opening)  # 1.0 -> 0.55: held on
    release = opening.copy()
    release[-1] = -0.6
    out = hold.execute(release, closed)  # 1.0 -> 0.4: a release
    assert not out[:-1].any() and out[-1] == pytest.approx(-0.6)
    np.testing.assert_array_equal(hold.execute(closing, closed), closing)  # clipped: no change
    # a chunk: the closure of later rows follows the rows before (closed after row 0)
    both = MPCConfig(gripper_close_at=0.3, hold_arm_on_gripper=True)
    chunk = np.stack([closing, closing, release])
    out = both.execute(chunk, opened)
    assert out.shape == (3, 7)
    np.testing.assert_allclose(out[:, -1], [1.0, 0.0, -0.6], atol=1e-6)
    assert not out[0, :-1].any() and not out[2, :-1].any()
    np.testing.assert_allclose(out[1, :-1], closing[:-1])  # already closed: the arm moves
    for bad in ({"gripper_close_at": 1.5}, {"gripper_close_at": 0.0}, {"hold_arm_on_gripper": 1}):
        with pytest.raises(ValueError, match="MPCConfig"):
            MPCConfig(**bad)


def test_controller_executes_the_filtered_action(toy):
    start = START.copy()
    start[-1] = 0.0
    goal = start.copy()
    goal[0] += 0.03
    goal[-1] = 0.6  # a goal closed part-way: the plan closes to ~0.6 and moves 3 cm
    cfg = MPCConfig(gripper_close_at=0.3, hold_arm_on_gripper=True)
    for mpc_cfg, closed in ((MPCConfig(), False), (cfg, True)):
        ctrl = MPCController(toy, CEMPlanner(CEMConfig()), cfg=mpc_cfg)
        ctrl.set_goal(IMG, goal_states=goal)
        with FakeRobot(start, limits=LIMITS) as robot:
            run_mpc(robot, ctrl, max_steps=1)
            moved = abs(robot.state[0] - start[0])
            if closed:  # all the way closed while the arm stood still
                assert robot.state[-1] == 1.0 and moved < 1e-6
            else:  # as planned: part-way, and moving
                assert 0.4 < robot.state[-1] < 0.8 and moved > 0.01


def test_queued_chunk_rows_are_filtered_against_the_state_they_are_sent_in(toy):
    start = START.copy()
    start[-1] = 0.0
    goal = start.copy()
    goal[0] += 0.06
    goal[-1] = 0.6
    cfg = MPCConfig(action_chunk=2, gripper_close_at=0.3, hold_arm_on_gripper=True)
    ctrl = MPCController(toy, CEMPlanner(CEMConfig(horizon=2)), cfg=cfg)
    ctrl.set_goal(IMG, goal_states=goal)
    with FakeRobot(start, limits=LIMITS) as robot:
        out = run_mpc(robot, ctrl, max_steps=2)
        assert robot.state[-1] == 1.0  # closed all the way, not to the planned ~0.6
    assert [i.replanned for i in out.infos] == [True, False]
    grips = out.planned[:, -1]
    closing = int(np.argmax(grips))
    assert grips[closing] == pytest.approx(1.0)  # from open: the close row sends +1
    assert not out.planned[closing, :-1].any()  # the arm stood still in the grasp step
    assert abs(out.planned[1 - closing, 0]) > 0.005  # and moved in the other


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_state_is_refused_before_planning(toy, bad):
    ctrl = MPCController(toy, CEMPlanner())
    ctrl.set_goal(IMG, goal_states=START)
    state = START.copy()
    state[2] = bad
    with pytest.raises(ValueError, match="state contains NaN or inf"):
        ctrl.act(IMG, state)
    assert np.all(np.isfinite(ctrl.act(IMG, START)[0]))  # the controller keeps working


def test_a_non_finite_plan_is_refused(toy, monkeypatch):
    ctrl = MPCController(toy, CEMPlanner())
    ctrl.set_goal(IMG, goal_states=START)
    monkeypatch.setattr(
        toy, "rollout", lambda z, s, a: torch.full((*a.shape[:3], *z.shape[1:]), float("nan"))
    )
    with pytest.raises(RuntimeError, match="non-finite plan"):
        ctrl.act(IMG, START)


@pytest.mark.parametrize("reported_grip", [-0.5, -0.9, 1.7])
def test_gripper_close_at_stays_in_the_action_box_for_any_reported_gripper(reported_grip):
    """#22 item 6: a reported gripper outside [0, 1] made "close fully" a change of 1.2-1.9."""
    cfg = MPCConfig(gripper_close_at=0.5, hold_arm_on_gripper=True)
    chunk = np.zeros((3, 7), dtype=np.float32)
    chunk[:, -1] = [0.8, 0.9, -0.2]
    state = np.array([0.4, 0, 0.3, 0, 0, 0, reported_grip], dtype=np.float32)
    out = cfg.execute(chunk, state)
    assert np.all(np.abs(out[:, -1]) <= 1.0), out[:, -1]
    assert np.all(np.isfinite(out))


def test_execute_refuses_non_finite_state():
    with pytest.raises(ValueError, match="non-finite"):
        MPCConfig(gripper_close_at=0.5).execute(np.zeros(7), np.full(7, np.nan))


def test_proposal_starts_each_search_at_the_learned_first_action(toy):
    """With a near-zero search std the plan is where the search starts: the proposal's action
    (projected: rotation held) instead of the zero mean; the proposal sees the current
    latent, the active sub-goal's latent and the state; a non-finite or misshapen proposal is refused before anything is executed."""
    tight = CEMConfig(samples=4, iterations=1, top_k=2, horizon=2, init_std=1e-6, min_std=1e-6)
    a, b = START.copy(), START.copy()
    a[:3] += [0.04, 0.0, 0.0]
    b[:3] += [0.0, 0.0, 0.04]
    guess = torch.tensor([[0.02, -0.01, 0.03, 0.1, 0.0, 0.0, 0.2]])
    seen = []

    def propose(z, z_goal, state):
        seen.append((z.clone(), z_goal.clone(), state.clone()))
        return guess

    ctrl = MPCController(toy, CEMPlanner(tight), proposal=propose)
    ctrl.set_goal([IMG, IMG], goal_states=np.stack([a, b]), budgets=[1, 1])
    first, _ = ctrl.plan_chunk(IMG, START)
    expected = guess.clone()
    expected[0, 3:6] = 0.0  # the planner holds the rotation
    np.testing.assert_allclose(first[0], expected[0].numpy(), atol=1e-4)

    def enc(state):
        return toy.encode(torch.as_tensor(IMG[None]), torch.as_tensor(state[None]))

    z, z_goal, state = seen[-1]
    torch.testing.assert_close(z, enc(START))
    torch.testing.assert_close(z_goal, enc(a))
    torch.testing.assert_close(state, torch.as_tensor(START[None]))
    ctrl.plan_chunk(IMG, START)  # budget spent: sub-goal b is active
    torch.testing.assert_close(seen[-1][1], enc(b))

    plain = MPCController(toy, CEMPlanner(tight))
    plain.set_goal(IMG, goal_states=a)
    np.testing.assert_allclose(plain.plan_chunk(IMG, START)[0][0], 0.0, atol=1e-4)

    for bad in (torch.full((1, 7), float("nan")), torch.zeros(2, 7)):
        ctrl = MPCController(toy, CEMPlanner(tight), proposal=lambda *_, b=bad: b)
        ctrl.set_goal(IMG, goal_states=a)
        with pytest.raises(RuntimeError, match="proposal"):
            ctrl.act(IMG, START)
        assert ctrl._queue == []
