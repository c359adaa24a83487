"""Rotation helpers for the 7-D state/action conventions (numpy only).

Conventions (shared with the world model and planner):

- Euler angles are *extrinsic* x-y-z: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
- State ``[x, y, z, roll, pitch, yaw, gripper]``; gripper in [0, 1], 1 = closed.
- Action ``[dx, dy, dz, droll, dpitch, dyaw, dgripper]`` where the rotation part is the Euler
  angles of ``R_next @ R_cur.T`` (a rotation applied in the base frame) and the gripper target
  after an action is ``clip(g + dg, 0, 1)``.

All functions broadcast over leading dimensions: a (..., 3) Euler array maps to (..., 3, 3).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "apply_delta",
    "delta_action",
    "euler_xyz_from_matrix",
    "matrix_from_euler_xyz",
    "rotation_angle",
    "rotvec_from_matrix",
]


def matrix_from_euler_xyz(euler: np.ndarray) -> np.ndarray:
    """Rotation matrices from extrinsic xyz Euler angles.

    Args:
        euler: (..., 3) ``[roll, pitch, yaw]`` in radians.

    Returns:
        (..., 3, 3) ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
    """
    euler = np.asarray(euler, dtype=np.float64)
    if euler.shape[-1] != 3:
        raise ValueError(f"euler must have a trailing dim of 3, got shape {euler.shape}")
    cr, cp, cy = np.cos(euler[..., 0]), np.cos(euler[..., 1]), np.cos(euler[..., 2])
    sr, sp, sy = np.sin(euler[..., 0]), np.sin(euler[..., 1]), np.sin(euler[..., 2])
    R = np.empty((*euler.shape[:-1], 3, 3), dtype=np.float64)
    R[..., 0, 0] = cy * cp
    R[..., 0, 1] = cy * sp * sr - sy * cr
    R[..., 0, 2] = cy * sp * cr + sy * sr
    R[..., 1, 0] = sy * cp
    R[..., 1, 1] = sy * sp * sr + cy * cr
    R[..., 1, 2] = sy * sp * cr - cy * sr
    R[..., 2, 0] = -sp
    R[..., 2, 1] = cp * sr
    R[..., 2, 2] = cp * cr
    return R


def euler_xyz_from_matrix(R: np.ndarray) -> np.ndarray:
    """Extrinsic xyz Euler angles of rotation matrices (inverse of matrix_from_euler_xyz).

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) ``[roll, pitch, yaw]`` with roll, yaw in (-pi, pi] and pitch in [-pi/2, pi/2].
        At the gimbal lock (|pitch| = pi/2) roll is set to 0 and yaw absorbs the rotation.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R must have trailing dims (3, 3), got shape {R.shape}")
    cos_pitch = np.hypot(R[..., 0, 0], R[..., 1, 0])
    pitch = np.arctan2(-R[..., 2, 0], cos_pitch)
    regular = cos_pitch > 1e-9
    roll = np.where(regular, np.arctan2(R[..., 2, 1], R[..., 2, 2]), 0.0)
    yaw_regular = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    yaw_locked = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    yaw = np.where(regular, yaw_regular, yaw_locked)
    return np.stack([roll, pitch, yaw], axis=-1)


def rotvec_from_matrix(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (..., 3) of rotation matrices (..., 3, 3), angle in [0, pi]."""
    R = np.asarray(R, dtype=np.float64)
    cos_angle = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos_angle)
    axis_unnorm = np.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]],
        axis=-1,
    )
    sin_angle = np.sin(angle)
    small = sin_angle < 1e-6
    scale = np.where(small, 0.5, angle / (2.0 * np.where(small, 1.0, sin_angle)))
    rotvec = axis_unnorm * scale[..., None]
    near_pi = small & (angle > 1.0)
    if np.any(near_pi):  # axis from the symmetric part: R = 2 a a^T - I at angle pi
        sym = (R[near_pi] + np.eye(3)) / 2.0
        col = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        axis = sym[np.arange(sym.shape[0]), :, col]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        rotvec[near_pi] = axis * np.pi
    return rotvec


def rotation_angle(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    """Geodesic angle (...,) in radians between rotation matrices (..., 3, 3)."""
    rel = np.swapaxes(R_a, -1, -2) @ R_b
    return np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0))


def delta_action(state_cur: np.ndarray, state_next: np.ndarray) -> np.ndarray:
    """The action that moves ``state_cur`` to ``state_next``.

    Args:
        state_cur: (..., 7) state.
        state_next: (..., 7) state.

    Returns:
        (..., 7) action ``[p_next - p_cur, euler(R_next R_cur^T), g_next - g_cur]``.
    """
    state_cur = np.asarray(state_cur, dtype=np.float64)
    state_next = np.asarray(state_next, dtype=np.float64)
    _check_last(state_cur, "state_cur")
    _check_last(state_next, "state_next")
    R_cur = matrix_from_euler_xyz(state_cur[..., 3:6])
    R_next = matrix_from_euler_xyz(state_next[..., 3:6])
    d_rot = euler_xyz_from_matrix(R_next @ np.swapaxes(R_cur, -1, -2))
    d_pos = state_next[..., :3] - state_cur[..., :3]
    d_grip = state_next[..., 6:7] - state_cur[..., 6:7]
    return np.concatenate([d_pos, d_rot, d_grip], axis=-1)


def apply_delta(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The state reached by applying ``action`` to ``state`` (exact kinematic model).

    Args:
        state: (..., 7) state.
        action: (..., 7) action (broadcasts against ``state``).

    Returns:
        (..., 7) next state; the gripper is clipped to [0, 1].
    """
    state = np.asarray(state, dtype=np.float64)
    action = np.asarray(action, dtype=np.float64)
    _check_last(state, "state")
    _check_last(action, "action")
    R_next = matrix_from_euler_xyz(action[..., 3:6]) @ matrix_from_euler_xyz(state[..., 3:6])
    pos = state[..., :3] + action[..., :3]
    euler = euler_xyz_from_matrix(R_next)
    grip = np.clip(state[..., 6:7] + action[..., 6:7], 0.0, 1.0)
    lead = np.broadcast_shapes(state.shape[:-1], action.shape[:-1])
    parts = [np.broadcast_to(x, (*lead, x.shape[-1])) for x in (pos, euler, grip)]
    return np.concatenate(parts, axis=-1)


def _check_last(x: np.ndarray, name: str) -> None:
    if x.shape[-1:] != (7,):
        raise ValueError(f"{name} must have a trailing dim of 7, got shape {x.shape}")
