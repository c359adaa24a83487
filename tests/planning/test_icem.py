"""iCEM: same success as CEM on the toy optimum with fewer samples and less time."""

from __future__ import annotations

import pytest
import torch

from planning.planners.cem import CEMConfig, CEMPlanner
from planning.planners.icem import ICEMConfig, ICEMPlanner, coloured_noise_filter
from planning.toy import ToyDynamics, ToyDynamicsConfig, blank_images

TOL_M = 0.005


def success(toy, states, goals, actions) -> torch.Tensor:
    final = toy.propagate(states, actions[:, None])[:, 0, -1]
    return (final[:, :3] - goals[:, :3]).abs().amax(dim=1) < TOL_M  # (B,)


def test_icem_finds_optimum_and_keeps_best(toy, reach):
    z, states, z_goal, goals = reach
    res = ICEMPlanner().plan(toy, z, states, z_goal)
    assert success(toy, states, goals, res.actions).all()
    # the returned energy is that of the returned actions (keep-best bookkeeping is right)
    again = toy.rollout(z, states, res.actions[:, None])
    e = (again[:, :, -1] - z_goal[:, None]).abs().mean(dim=(-2, -1))[:, 0]
    torch.testing.assert_close(e, res.energy, atol=1e-5, rtol=0)
    assert (res.energy <= res.energy_trace.min(dim=0).values + 1e-6).all()


def test_icem_same_success_fewer_samples_less_time():
    """Heavier toy (N=32 tokens) so rollouts dominate; horizon 2 reach over 9 goals."""
    toy = ToyDynamics(ToyDynamicsConfig(num_tokens=32, feature_dim=64))
    gen = torch.Generator().manual_seed(0)
    states = torch.tensor([[0.45, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5]]).repeat(9, 1)
    goals = states.clone()
    goals[:, :3] += (torch.rand(9, 3, generator=gen) - 0.5) * 0.16  # within 2 steps
    z, z_goal = toy.encode(blank_images(9), states), toy.encode(blank_images(9), goals)
    cem = CEMPlanner(CEMConfig(horizon=2, samples=400, iterations=8, top_k=20))
    icem = ICEMPlanner(ICEMConfig(horizon=2))

    def run(planner):
        best_s, res = float("inf"), None
        for _ in range(2):
            res = planner.plan(toy, z, states, z_goal)
            best_s = min(best_s, res.seconds)
        return res, best_s

    r_cem, t_cem = run(cem)
    r_icem, t_icem = run(icem)
    ok_cem = success(toy, states, goals, r_cem.actions)
    ok_icem = success(toy, states, goals, r_icem.actions)
    assert ok_cem.all(), ok_cem
    assert ok_icem.sum() >= ok_cem.sum()
    assert r_icem.samples_evaluated * 3 < r_cem.samples_evaluated
    assert t_icem < t_cem


def test_coloured_noise_filter():
    white = coloured_noise_filter(6, 0.0, torch.device("cpu"))
    torch.testing.assert_close(white @ white.T, torch.eye(6), atol=1e-5, rtol=0)
    red = coloured_noise_filter(6, 2.0, torch.device("cpu"))
    cov = red @ red.T
    torch.testing.assert_close(cov.diagonal(), torch.ones(6), atol=1e-5, rtol=0)
    assert cov[0, 1] > 0.5 and cov[0, 1] > cov[0, 4]  # neighbours correlate, far steps less
    assert coloured_noise_filter(1, 2.0, torch.device("cpu")).shape == (1, 2)


def test_icem_deterministic_and_validates(toy, reach):
    z, states, z_goal, _ = reach
    a = ICEMPlanner().plan(toy, z, states, z_goal).actions
    b = ICEMPlanner().plan(toy, z, states, z_goal).actions
    assert torch.equal(a, b)
    for bad in (dict(noise_beta=-1.0), dict(sample_decay=0.5), dict(min_samples=4),
                dict(keep_elite_fraction=2.0)):  # fmt: skip
        with pytest.raises(ValueError, match="ICEMConfig"):
            ICEMConfig(**bad)


def test_icem_respects_hold_and_bounds(toy, reach):
    z, states, z_goal, _ = reach
    res = ICEMPlanner(ICEMConfig(horizon=3)).plan(toy, z, states, z_goal)
    assert torch.count_nonzero(res.actions[..., 3:6]) == 0
    assert (res.actions.abs() <= torch.tensor(ICEMConfig().action_high) + 1e-6).all()
