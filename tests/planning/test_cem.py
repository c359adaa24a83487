"""CEM: finds the toy optimum, is deterministic per seed, batches, respects bounds."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from planning.planners.cem import (
    CEMConfig,
    CEMPlanner,
    make_generator,
    project_l1_ball,
    shift_plan,
)
from planning.planners.reference import reference_cem, reference_cem_config
from planning.protocol import ActionLayout
from planning.toy import ToyDynamics, ToyDynamicsConfig, blank_images

TOL_M = 0.004


def test_finds_known_optimum(toy, reach):
    z, states, z_goal, goals = reach
    res = CEMPlanner().plan(toy, z, states, z_goal)
    final = toy.propagate(states, res.actions[:, None])[:, 0, -1]  # (B, 7)
    assert (final[:, :3] - goals[:, :3]).abs().max() < TOL_M
    assert (final[:, 6] - goals[:, 6]).abs().max() < 0.03
    assert res.energy_trace.shape == (CEMConfig().iterations, 3)
    assert (res.energy_trace[-1] < res.energy_trace[0]).all()  # energy decreases


def test_same_seed_same_plan_other_seed_differs(toy, reach):
    z, states, z_goal, _ = reach
    a = CEMPlanner(CEMConfig(seed=3)).plan(toy, z, states, z_goal).actions
    b = CEMPlanner(CEMConfig(seed=3)).plan(toy, z, states, z_goal).actions
    c = CEMPlanner(CEMConfig(seed=4)).plan(toy, z, states, z_goal).actions
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_equals_single_runs_with_per_element_generators(toy, reach):
    z, states, z_goal, _ = reach
    planner = CEMPlanner()
    gens = [make_generator(10 + b) for b in range(3)]
    batched = planner.plan(toy, z, states, z_goal, generator=gens)
    for b in range(3):
        single = planner.plan(
            toy,
            z[b : b + 1],
            states[b : b + 1],
            z_goal[b : b + 1],
            generator=[make_generator(10 + b)],
        )
        torch.testing.assert_close(batched.actions[b], single.actions[0], atol=1e-5, rtol=0)


def test_box_bounds_respected_when_goal_is_out_of_reach(toy):
    states = torch.tensor([[0.45, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5]])
    goals = states + torch.tensor([[0.3, -0.3, 0.3, 0.0, 0.0, 0.0, 0.0]])
    z, z_goal = toy.encode(blank_images(1), states), toy.encode(blank_images(1), goals)
    cfg = CEMConfig(horizon=2)
    res = CEMPlanner(cfg).plan(toy, z, states, z_goal)
    high = torch.tensor(cfg.action_high)
    assert (res.actions.abs() <= high + 1e-6).all()
    assert res.actions[0, :, 0].min() > 0.04  # pushes against the bound towards the goal


def test_l1_ball_respected():
    states = torch.tensor([[0.45, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5]])
    toy = ToyDynamics()
    goals = states + torch.tensor([[0.05, 0.05, 0.05, 0.0, 0.0, 0.0, 0.0]])
    z, z_goal = toy.encode(blank_images(1), states), toy.encode(blank_images(1), goals)
    cfg = CEMConfig(xyz_bound="l1", xyz_l1_radius_m=0.06)
    res = CEMPlanner(cfg).plan(toy, z, states, z_goal)
    assert res.actions[0, 0, :3].abs().sum() <= 0.06 + 1e-5
    assert res.actions[0, 0, :3].abs().sum() > 0.05  # uses the ball, not a tiny step


def test_project_l1_ball_is_the_projection():
    v = torch.tensor([[0.1, -0.02, 0.03], [0.01, 0.01, 0.0]])
    p = project_l1_ball(v, 0.06)
    assert p[0].abs().sum() == pytest.approx(0.06, abs=1e-6)
    torch.testing.assert_close(p[1], v[1])  # inside: unchanged
    # optimality: no random point of the ball is closer to v[0]
    cand = project_l1_ball(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), 0.06)
    assert (cand - v[0]).norm(dim=1).min() >= (p[0] - v[0]).norm() - 1e-6


def test_rotation_hold_and_plan(toy):
    states = torch.tensor([[0.45, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5]])
    goals = states + torch.tensor([[0.01, 0.0, 0.0, 0.15, -0.1, 0.2, 0.0]])
    z, z_goal = toy.encode(blank_images(1), states), toy.encode(blank_images(1), goals)
    held = CEMPlanner(CEMConfig(rotation="hold")).plan(toy, z, states, z_goal)
    assert torch.count_nonzero(held.actions[..., 3:6]) == 0
    assert torch.count_nonzero(held.std[..., 3:6]) == 0
    planned = CEMPlanner(CEMConfig(rotation="plan", samples=400)).plan(toy, z, states, z_goal)
    torch.testing.assert_close(planned.actions[0, 0, 3:6], goals[0, 3:6], atol=0.02, rtol=0)


def test_warm_start_shift_and_init_mean(toy, reach):
    mean = torch.arange(2 * 3 * 7, dtype=torch.float32).reshape(2, 3, 7)
    shifted = shift_plan(mean, 1)
    torch.testing.assert_close(shifted[:, :2], mean[:, 1:])
    assert torch.count_nonzero(shifted[:, 2]) == 0
    z, states, z_goal, goals = reach
    cfg = CEMConfig(iterations=1, samples=16, top_k=4, init_std=0.05, min_std=0.01)
    good = (goals - states)[:, None, :].clone()
    warm = CEMPlanner(cfg).plan(toy, z, states, z_goal, init_mean=good)
    cold = CEMPlanner(cfg).plan(toy, z, states, z_goal)
    assert (warm.energy < cold.energy).all()


def test_action_dim_from_dynamics_not_constants():
    """A 4-D action layout (xyz + gripper, no rotation) plans without any code change."""
    lay = ActionLayout(xyz_dims=(0, 3), rotation_dims=None, gripper_index=3)
    cfg = CEMConfig(action_low=(-0.05,) * 3 + (-1.0,), action_high=(0.05,) * 3 + (1.0,), layout=lay)

    class FourD(ToyDynamics):
        action_dim = 4

        def rollout(self, z, state, actions):
            full = torch.zeros(*actions.shape[:-1], 7)
            full[..., :3], full[..., 6] = actions[..., :3], actions[..., 3]
            return super().rollout(z, state, full)

    dyn = FourD(ToyDynamicsConfig())
    states = torch.tensor([[0.45, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5]])
    goals = states + torch.tensor([[0.02, -0.03, 0.01, 0.0, 0.0, 0.0, 0.0]])
    res = CEMPlanner(cfg).plan(dyn, dyn.encode(blank_images(1), states), states,
                               dyn.encode(blank_images(1), goals))  # fmt: skip
    assert res.actions.shape == (1, 1, 4)
    torch.testing.assert_close(
        res.actions[0, 0, :3], goals[0, :3] - states[0, :3], atol=TOL_M, rtol=0
    )
    with pytest.raises(ValueError, match="action_dim"):
        CEMPlanner().plan(dyn, dyn.encode(blank_images(1), states), states,
                          dyn.encode(blank_images(1), goals))  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [dict(samples=0), dict(top_k=999), dict(momentum_mean=1.0), dict(rotation="spin"),
     dict(xyz_bound="sphere"), dict(action_low=(0.0,)), dict(min_std=0.0),
     dict(action_low=(0.1,) * 7)],
)  # fmt: skip
def test_config_validation(bad):
    with pytest.raises(ValueError, match="CEMConfig"):
        CEMConfig(**bad)


def test_reference_cem_matches_planner_and_reencodes(toy, reach):
    z, states, z_goal, goals = reach
    cfg = replace(reference_cem_config(), samples=200, iterations=4)
    calls = {"n": 0}

    class Counting(ToyDynamics):
        def encode(self, images, s):
            calls["n"] += 1
            return super().encode(images, s)

    ref = reference_cem(Counting(), blank_images(3), states, blank_images(3), goals, cfg=cfg)
    fast = CEMPlanner(cfg).plan(toy, z, states, z_goal)
    assert calls["n"] == 2 * cfg.iterations  # frame + goal re-encoded every iteration
    torch.testing.assert_close(ref.actions, fast.actions, atol=1e-5, rtol=0)


def test_action_cost_keeps_an_unseen_gripper_still(reach):
    """Energy blind to the gripper: the effort term pins its delta near 0, xyz still solved."""
    blind = ToyDynamics(ToyDynamicsConfig(gripper_scale=1e4))
    _, states, _, goals = reach
    states = states.clone()
    states[:, 6] = 1.0  # holding something, closed
    goals = goals.clone()
    goals[:, 6] = 1.0
    z = blind.encode(blank_images(3), states)
    z_goal = blind.encode(blank_images(3), goals)
    cost = CEMConfig(action_cost=(0, 0, 0, 0, 0, 0, 0.05))
    free = CEMPlanner().plan(blind, z, states, z_goal).actions
    held = CEMPlanner(cost).plan(blind, z, states, z_goal).actions
    assert held[..., 6].abs().max() < 0.05 < free[..., 6].abs().max()
    final = blind.propagate(states, held[:, None])[:, 0, -1]
    assert (final[:, :3] - goals[:, :3]).abs().max() < TOL_M
    with pytest.raises(ValueError, match="action_cost"):
        CEMConfig(action_cost=(0.1, 0.2))
