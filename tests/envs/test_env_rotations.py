"""envs.rotations: Euler conversions, delta actions and their composition."""

import numpy as np
import pytest

from envs.rotations import (
    apply_delta,
    delta_action,
    euler_xyz_from_matrix,
    matrix_from_euler_xyz,
    rotation_angle,
    rotvec_from_matrix,
)


def _elementary(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _random_euler(rng, n):
    return rng.uniform(
        [-np.pi, -np.pi / 2 + 1e-3, -np.pi], [np.pi, np.pi / 2 - 1e-3, np.pi], (n, 3)
    )


def test_matrix_is_extrinsic_xyz_product():
    rng = np.random.default_rng(0)
    for roll, pitch, yaw in _random_euler(rng, 20):
        expected = _elementary(2, yaw) @ _elementary(1, pitch) @ _elementary(0, roll)
        np.testing.assert_allclose(matrix_from_euler_xyz([roll, pitch, yaw]), expected, atol=1e-12)


def test_euler_matrix_round_trip_batched():
    rng = np.random.default_rng(1)
    euler = _random_euler(rng, 60).reshape(3, 20, 3)
    R = matrix_from_euler_xyz(euler)
    assert R.shape == (3, 20, 3, 3)
    np.testing.assert_allclose(
        R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12
    )
    np.testing.assert_allclose(euler_xyz_from_matrix(R), euler, atol=1e-9)


def test_gimbal_lock_reproduces_matrix():
    R = matrix_from_euler_xyz([0.4, np.pi / 2, -0.3])
    np.testing.assert_allclose(matrix_from_euler_xyz(euler_xyz_from_matrix(R)), R, atol=1e-9)


def test_rotvec_angle_and_axis():
    rng = np.random.default_rng(2)
    for angle in [0.0, 1e-4, 0.7, 2.5, np.pi - 1e-7, np.pi]:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K  # Rodrigues
        rv = rotvec_from_matrix(R)
        assert np.linalg.norm(rv) == pytest.approx(angle, abs=1e-6)
        if angle > 1e-3:  # the axis is defined up to sign at pi
            assert abs(abs(rv @ axis) - angle) < 1e-5
        assert rotation_angle(np.eye(3), R) == pytest.approx(angle, abs=1e-6)


def test_apply_delta_inverts_delta_action_batched():
    rng = np.random.default_rng(3)
    s0 = np.concatenate(
        [
            rng.normal(size=(4, 5, 3)),
            _random_euler(rng, 20).reshape(4, 5, 3) * 0.5,
            rng.uniform(0, 1, (4, 5, 1)),
        ],
        axis=-1,
    )
    s1 = np.concatenate(
        [
            rng.normal(size=(4, 5, 3)),
            _random_euler(rng, 20).reshape(4, 5, 3) * 0.5,
            rng.uniform(0, 1, (4, 5, 1)),
        ],
        axis=-1,
    )
    a = delta_action(s0, s1)
    assert a.shape == (4, 5, 7)
    np.testing.assert_allclose(apply_delta(s0, a), s1, atol=1e-9)
    np.testing.assert_allclose(delta_action(s0, s0), np.zeros((4, 5, 7)), atol=1e-12)


def test_rotation_deltas_compose_in_base_frame():
    rng = np.random.default_rng(4)
    s0 = np.concatenate([[0.4, 0.0, 0.2], rng.uniform(-0.5, 0.5, 3), [0.2]])
    a1 = np.concatenate([[0.01, 0.02, -0.03], rng.uniform(-0.25, 0.25, 3), [0.5]])
    a2 = np.concatenate([[-0.02, 0.0, 0.01], rng.uniform(-0.25, 0.25, 3), [0.6]])
    s2 = apply_delta(apply_delta(s0, a1), a2)
    total = delta_action(s0, s2)
    R_expected = matrix_from_euler_xyz(a2[3:6]) @ matrix_from_euler_xyz(a1[3:6])
    np.testing.assert_allclose(matrix_from_euler_xyz(total[3:6]), R_expected, atol=1e-9)
    np.testing.assert_allclose(total[:3], a1[:3] + a2[:3], atol=1e-12)
    assert s2[6] == 1.0  # gripper clipped to [0, 1]
    assert total[6] == pytest.approx(0.8)


def test_apply_delta_broadcasts_one_state_over_actions():
    s = np.array([0.4, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0])
    actions = np.zeros((8, 3, 7))
    actions[..., 0] = 0.05
    out = apply_delta(s, actions)
    assert out.shape == (8, 3, 7)
    np.testing.assert_allclose(out[..., 0], 0.45)


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="trailing dim of 7"):
        delta_action(np.zeros(6), np.zeros(7))
    with pytest.raises(ValueError, match="trailing dims"):
        euler_xyz_from_matrix(np.zeros((3, 4)))
