"""Composing consecutive actions into one (for clips sampled with a frame stride, and for
``wm-import`` resampling to a lower control rate); the 7-D end-effector delta by default.

Action ``[dx, dy, dz, droll, dpitch, dyaw, dg]``: the rotation part is the extrinsic xyz Euler
angles of ``R_next R_cur^T``. Applying ``a_1`` then ``a_2`` moves the end effector by
``d_1 + d_2`` and rotates it by ``R(a_2) R(a_1)``; gripper deltas add (clipped to [-1, 1], since
the gripper target itself is clipped to [0, 1] after every step the sum is an approximation only
when the gripper saturates mid-way).
"""

from __future__ import annotations

import numpy as np

# The published (DROID) per-step action bounds: 5 cm of translation and 0.25 rad of rotation per
# axis, a gripper change of at most 1. Planner bounds, safety limits, the simulator's clipping and
# the CPU predictors' action scaling all derive from these.
MAX_STEP_TRANSLATION_M = 0.05
MAX_STEP_ROTATION_RAD = 0.25
MAX_STEP_GRIPPER = 1.0
ACTION_HIGH = (MAX_STEP_TRANSLATION_M,) * 3 + (MAX_STEP_ROTATION_RAD,) * 3 + (MAX_STEP_GRIPPER,)
ACTION_LOW = tuple(-x for x in ACTION_HIGH)


def matrix_from_euler_xyz(euler: np.ndarray) -> np.ndarray:
    """(..., 3) ``[roll, pitch, yaw]`` -> (..., 3, 3) ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, cp, cy = np.moveaxis(np.cos(euler), -1, 0)
    sr, sp, sy = np.moveaxis(np.sin(euler), -1, 0)
    rows = [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_xyz_from_matrix(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) extrinsic xyz Euler angles (pitch in [-pi/2, pi/2])."""
    pitch = np.arcsin(np.clip(-rot[..., 2, 0], -1.0, 1.0))
    cos_pitch = np.hypot(rot[..., 2, 1], rot[..., 2, 2])
    locked = cos_pitch < 1e-6
    roll = np.where(locked, 0.0, np.arctan2(rot[..., 2, 1], rot[..., 2, 2]))
    yaw = np.where(
        locked,
        np.arctan2(-rot[..., 0, 1], rot[..., 1, 1]),
        np.arctan2(rot[..., 1, 0], rot[..., 0, 0]),
    )
    return np.stack([roll, pitch, yaw], axis=-1)


def compose_actions(actions: np.ndarray, valid: np.ndarray, kind: str = "ee_delta") -> np.ndarray:
    """Compose a run of actions (applied in order) into one equivalent action.

    Args:
        actions: (K, A) float actions, the first applied first.
        valid: (K,) bool; invalid rows (past the episode end) count as "no motion".
        kind: the dataset's ``action_kind``: ``ee_delta`` (A = 7: translations add, rotations
            multiply, gripper deltas add clipped to [-1, 1]), ``delta`` (per-dim sum) or
            ``absolute`` (a target: the last valid row wins).

    Returns:
        (A,) float32 composed action; zero when no row is valid.
    """
    if kind == "delta":
        return np.where(valid[:, None], actions, 0.0).sum(axis=0).astype(np.float32)
    if kind == "absolute":
        rows = np.flatnonzero(valid)
        if not len(rows):
            return np.zeros(actions.shape[1], np.float32)
        return np.asarray(actions[rows[-1]], dtype=np.float32)
    if kind != "ee_delta":
        raise ValueError(f"unknown action kind {kind!r}; expected ee_delta, delta or absolute")
    acts = np.where(valid[:, None], actions, 0.0).astype(np.float64)
    out = np.zeros(7, dtype=np.float64)
    out[:3] = acts[:, :3].sum(axis=0)
    rot = np.eye(3)
    for mat in matrix_from_euler_xyz(acts[:, 3:6]):
        rot = mat @ rot  # later rotations multiply on the left
    out[3:6] = euler_xyz_from_matrix(rot)
    out[6] = np.clip(acts[:, 6].sum(), -1.0, 1.0)
    return out.astype(np.float32)
