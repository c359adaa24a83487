"""The published planner taken literally: the speed baseline of wm-eval and the benchmark.

V-JEPA 2-AC's CEM: 800 samples, 10 iterations, top-10, horizon 1, no momentum, with the current
frame and the goal re-encoded and the predictor re-run from scratch at every iteration. Our
:class:`planning.planners.cem.CEMPlanner` uses the same sampling and update rule; the difference is what
is recomputed, so the two give the same plan for the same seed.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import Tensor

from planning.planners.cem import (
    ActionBounds,
    CEMConfig,
    CEMPlanner,
    Generators,
    PlanResult,
    cem_step,
    check_inputs,
    finish_plan,
    initial_gaussian,
    make_generator,
)
from planning.protocol import EnergyFn, LatentDynamics, final_step_l1_energy

__all__ = ["ReferenceCEMPlanner", "reference_cem", "reference_cem_config"]


def reference_cem_config(**overrides) -> CEMConfig:
    """The published recipe: 800 samples, 10 iterations, top-10, horizon 1, no momentum."""
    base = CEMConfig(
        samples=800, iterations=10, top_k=10, horizon=1, momentum_mean=0.0, momentum_std=0.0
    )
    return replace(base, **overrides)


class ReferenceCEMPlanner(CEMPlanner):
    """The published recipe as a :class:`~planning.protocol.Planner` over given latents (the
    budget of :func:`reference_cem_config`, CEM's update). :func:`reference_cem` is the literal
    loop that re-encodes every iteration, kept to time what reusing the encodings saves."""

    def __init__(self, cfg: CEMConfig | None = None) -> None:
        super().__init__(cfg or reference_cem_config())


def reference_cem(
    dynamics: LatentDynamics,
    images: Tensor,
    states: Tensor,
    goal_images: Tensor,
    goal_states: Tensor | None = None,
    cfg: CEMConfig | None = None,
    energy_fn: EnergyFn = final_step_l1_energy,
    generator: Generators = None,
) -> PlanResult:
    """Literal baseline: every iteration re-encodes frame and goal and re-runs the dynamics.

    Same sampling and update rule as :class:`CEMPlanner` (the same seed gives the same plan);
    only the repeated encoding differs. Kept to measure what the optimized planners save.
    """
    cfg = cfg or reference_cem_config()
    goal_states = states if goal_states is None else goal_states
    start = time.perf_counter()
    gen = make_generator(cfg.seed, states.device) if generator is None else generator
    bounds = ActionBounds(cfg, states.device)
    mean, std = initial_gaussian(cfg, bounds, states.shape[0], None)
    trace = []
    with torch.no_grad():
        for _ in range(cfg.iterations):
            z = dynamics.encode(images, states)  # deliberately re-encoded every iteration
            z_goal = dynamics.encode(goal_images, goal_states)
            check_inputs(dynamics, cfg, z, z_goal, states)

            def score(actions: Tensor, z=z, z_goal=z_goal) -> Tensor:
                return energy_fn(dynamics.rollout(z, states, actions), z_goal)

            it = cem_step(cfg, bounds, score, mean, std, gen)
            mean, std = it.mean, it.std
            trace.append(it.elite_energy.mean(dim=1))
        return finish_plan(cfg, bounds, score, it, trace, start)
