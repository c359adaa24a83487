"""Shared fixtures for planning tests: toy dynamics and a reach problem with a known optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planning.toy import ToyDynamics, blank_images

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], dtype=np.float32)
# Each goal is one in-bounds step away: the optimal first action is goal - start.
OFFSETS = np.array(
    [
        [0.03, -0.02, 0.04, 0, 0, 0, 0.3],
        [-0.04, 0.01, 0.0, 0, 0, 0, -0.2],
        [0.02, 0.03, -0.03, 0, 0, 0, 0.0],
    ],
    dtype=np.float32,
)


@pytest.fixture(scope="session")
def toy() -> ToyDynamics:
    return ToyDynamics()


@pytest.fixture
def reach(toy):
    """(z, state, z_goal, goal_states) for B=3 one-step reach problems."""
    states = torch.as_tensor(np.repeat(START[None], 3, axis=0))
    goals = states + torch.as_tensor(OFFSETS)
    z = toy.encode(blank_images(3), states)
    z_goal = toy.encode(blank_images(3), goals)
    return z, states, z_goal, goals
