"""Torch state propagation against scipy's rotations and the published update rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from worldmodel.models.state_ops import (
    apply_action,
    euler_xyz_from_matrix,
    matrix_from_euler_xyz,
    propagate_states,
)


def test_matrix_matches_scipy_extrinsic_xyz():
    e = np.random.default_rng(0).uniform(-3, 3, size=(20, 3))
    ours = matrix_from_euler_xyz(torch.from_numpy(e)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_euler("xyz", e).as_matrix(), atol=1e-12)


def test_euler_roundtrip_and_gimbal_lock():
    e = np.random.default_rng(1).uniform([-3, -1.5, -3], [3, 1.5, 3], size=(50, 3))
    back = euler_xyz_from_matrix(matrix_from_euler_xyz(torch.from_numpy(e)))
    np.testing.assert_allclose(back.numpy(), e, atol=1e-9)
    locked = torch.tensor([[0.3, np.pi / 2, -0.4]], dtype=torch.float64)
    R = matrix_from_euler_xyz(locked)
    np.testing.assert_allclose(matrix_from_euler_xyz(euler_xyz_from_matrix(R)), R, atol=1e-9)


def test_apply_action_rule():
    rng = np.random.default_rng(2)
    state = np.concatenate([rng.normal(size=(8, 6)), rng.uniform(0, 1, (8, 1))], 1)
    action = np.concatenate([rng.normal(size=(8, 6)) * 0.2, rng.normal(size=(8, 1))], 1)
    nxt = apply_action(torch.from_numpy(state), torch.from_numpy(action)).numpy()
    np.testing.assert_allclose(nxt[:, :3], state[:, :3] + action[:, :3])
    r_next = Rotation.from_euler("xyz", action[:, 3:6]) * Rotation.from_euler("xyz", state[:, 3:6])
    np.testing.assert_allclose(
        Rotation.from_euler("xyz", nxt[:, 3:6]).as_matrix(), r_next.as_matrix(), atol=1e-9
    )
    np.testing.assert_allclose(nxt[:, 6], np.clip(state[:, 6] + action[:, 6], 0, 1))
    assert nxt[:, 6].min() >= 0 and nxt[:, 6].max() <= 1


def test_zero_action_is_identity_and_broadcasts():
    state = torch.tensor([[0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.5]], dtype=torch.float64)
    out = apply_action(state, torch.zeros(5, 7, dtype=torch.float64))
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, state.expand(5, 7))


def test_propagate_states():
    state = torch.zeros(2, 7, dtype=torch.float64)
    actions = torch.zeros(2, 3, 7, dtype=torch.float64)
    actions[..., 0] = 0.1
    actions[..., 6] = 0.6
    seq = propagate_states(state, actions)
    assert seq.shape == (2, 3, 7)
    torch.testing.assert_close(seq[0, :, 0], torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64))
    torch.testing.assert_close(seq[0, :, 6], torch.tensor([0.0, 0.6, 1.0], dtype=torch.float64))


def test_bad_shapes():
    with pytest.raises(ValueError, match="state"):
        apply_action(torch.zeros(6), torch.zeros(7))
