"""Batched torch propagation of the 7-D end-effector state under a 7-D delta action.

State ``[x, y, z, roll, pitch, yaw, gripper]`` with the orientation as extrinsic xyz Euler angles
(``R = Rz(yaw) Ry(pitch) Rx(roll)``); action ``[dx, dy, dz, droll, dpitch, dyaw, dgripper]`` with
the rotation delta as extrinsic xyz Euler angles of ``R_next R_cur^T``. So

    xyz_next = xyz + dxyz,  R_next = R(delta) R_cur,  g_next = clip(g + dg, 0, 1).

This is the torch twin of ``envs.rotations.apply_delta`` (numpy); the world model uses it to
propagate proprioception during imagined rollouts, on whatever device the latents live.
"""

from __future__ import annotations

import torch
from torch import Tensor

STATE_DIM = 7
ACTION_DIM = 7


def matrix_from_euler_xyz(euler: Tensor) -> Tensor:
    """Rotation matrices from extrinsic xyz Euler angles.

    Args:
        euler: (..., 3) ``[roll, pitch, yaw]`` in radians.

    Returns:
        (..., 3, 3) ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
    """
    cr, cp, cy = torch.cos(euler).unbind(-1)
    sr, sp, sy = torch.sin(euler).unbind(-1)
    rows = [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def euler_xyz_from_matrix(rot: Tensor) -> Tensor:
    """Extrinsic xyz Euler angles of rotation matrices (inverse of :func:`matrix_from_euler_xyz`).

    Args:
        rot: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) ``[roll, pitch, yaw]``, pitch in [-pi/2, pi/2], roll and yaw in (-pi, pi].
        At gimbal lock (|pitch| = pi/2) roll is set to 0 and yaw absorbs the rotation.
    """
    sin_pitch = (-rot[..., 2, 0]).clamp(-1.0, 1.0)
    pitch = torch.asin(sin_pitch)
    cos_pitch = torch.sqrt(rot[..., 2, 1] ** 2 + rot[..., 2, 2] ** 2)
    locked = cos_pitch < 1e-6
    roll = torch.where(locked, torch.zeros_like(pitch), torch.atan2(rot[..., 2, 1], rot[..., 2, 2]))
    yaw_free = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    # Gimbal lock: R = Rz(yaw) Ry(+-pi/2); read yaw from the remaining 2x2 block.
    yaw_locked = torch.atan2(-rot[..., 0, 1], rot[..., 1, 1])
    yaw = torch.where(locked, yaw_locked, yaw_free)
    return torch.stack([roll, pitch, yaw], dim=-1)


def apply_action(state: Tensor, action: Tensor) -> Tensor:
    """Apply delta actions to states (broadcasting over leading dims).

    Args:
        state: (..., 7) ``[x, y, z, roll, pitch, yaw, gripper]``.
        action: (..., 7) ``[dx, dy, dz, droll, dpitch, dyaw, dgripper]``.

    Returns:
        (..., 7) next state.
    """
    if state.shape[-1] != STATE_DIM or action.shape[-1] != ACTION_DIM:
        raise ValueError(
            f"expected state (...,{STATE_DIM}) and action (...,{ACTION_DIM}), "
            f"got {tuple(state.shape)} and {tuple(action.shape)}"
        )
    state, action = torch.broadcast_tensors(state, action)
    xyz = state[..., :3] + action[..., :3]
    rot = matrix_from_euler_xyz(action[..., 3:6]) @ matrix_from_euler_xyz(state[..., 3:6])
    euler = euler_xyz_from_matrix(rot)
    grip = (state[..., 6:7] + action[..., 6:7]).clamp(0.0, 1.0)
    return torch.cat([xyz, euler, grip], dim=-1)


def propagate_states(state: Tensor, actions: Tensor) -> Tensor:
    """States before each action of a sequence.

    Args:
        state: (..., 7) state before ``actions[..., 0, :]``.
        actions: (..., H, 7) action sequence.

    Returns:
        (..., H, 7) where entry h is the state at which ``actions[..., h, :]`` is applied
        (entry 0 is ``state`` itself).
    """
    out = [state.expand((*actions.shape[:-2], STATE_DIM))]
    for h in range(actions.shape[-2] - 1):
        out.append(apply_action(out[-1], actions[..., h, :]))
    return torch.stack(out, dim=-2)
