"""Damped-least-squares inverse kinematics for a site, on a scratch ``MjData``.

One iteration solves ``dq = J^T (J J^T + lambda^2 I)^-1 e`` where ``J`` (6, n) is the site
Jacobian (translation rows from ``mj_jacSite``, rotation rows in the world frame) restricted to
the arm's dofs and ``e = [p_target - p, rotvec(R_target R^T)]``. A null-space term pulls the
redundant dof toward a rest posture so repeated solves do not drift. Joint limits are enforced
by clipping after every iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import mujoco
import numpy as np

from envs.rotations import rotvec_from_matrix

__all__ = ["DlsIK", "IKConfig", "IKResult", "site_jacobian"]


@dataclass(frozen=True)
class IKConfig:
    """Solver settings.

    Attributes:
        damping: lambda in the damped pseudo-inverse (m / rad).
        max_iters: iteration cap.
        pos_tol_m: stop when the position error is below this...
        rot_tol_rad: ...and the rotation error below this.
        max_step_rad: per-iteration cap on |dq| (infinity norm).
        nullspace_gain: pull of the redundant dof toward the rest posture per iteration.
        rot_weight: weight of the rotation rows relative to the position rows (m per rad).
    """

    damping: float = 0.02
    max_iters: int = 60
    pos_tol_m: float = 5e-4
    rot_tol_rad: float = 2e-3
    max_step_rad: float = 0.2
    nullspace_gain: float = 0.05
    rot_weight: float = 0.3

    def __post_init__(self) -> None:
        if self.damping <= 0 or self.max_iters < 1:
            raise ValueError(f"damping must be > 0 and max_iters >= 1, got {self}")
        if self.pos_tol_m <= 0 or self.rot_tol_rad <= 0 or self.max_step_rad <= 0:
            raise ValueError(f"tolerances and max_step_rad must be > 0, got {self}")
        if not 0 <= self.nullspace_gain < 1 or self.rot_weight <= 0:
            raise ValueError(f"nullspace_gain in [0, 1) and rot_weight > 0 required, got {self}")


class IKResult(NamedTuple):
    """Joint solution (n,), final position error (m), rotation error (rad), iterations used."""

    qpos: np.ndarray
    pos_err_m: float
    rot_err_rad: float
    iters: int


def site_jacobian(model: mujoco.MjModel, data: mujoco.MjData, site_id: int) -> np.ndarray:
    """(6, nv) Jacobian of the site: rows 0-2 linear velocity, rows 3-5 angular velocity (world).

    ``data`` must hold up-to-date kinematics (``mj_kinematics`` + ``mj_comPos``).
    """
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacp, jacr, site_id)
    return np.vstack([jacp, jacr])


class DlsIK:
    """IK for one site over a subset of hinge joints, using its own scratch ``MjData``."""

    def __init__(
        self,
        model: mujoco.MjModel,
        site: str,
        joints: tuple[str, ...],
        rest_qpos: np.ndarray,
        cfg: IKConfig | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg or IKConfig()
        self.data = mujoco.MjData(model)
        self.site_id = model.site(site).id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in joints])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in joints])
        self.lower = np.array([model.joint(j).range[0] for j in joints])
        self.upper = np.array([model.joint(j).range[1] for j in joints])
        self.rest_qpos = np.asarray(rest_qpos, dtype=np.float64).copy()
        if self.rest_qpos.shape != (len(joints),):
            raise ValueError(
                f"rest_qpos must have shape ({len(joints)},), got {self.rest_qpos.shape}"
            )

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Site position (3,) and rotation (3, 3) at arm joint values ``q``."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        site = self.data.site(self.site_id)
        return site.xpos.copy(), site.xmat.reshape(3, 3).copy()

    def solve(self, q_init: np.ndarray, pos: np.ndarray, rot: np.ndarray) -> IKResult:
        """Joint values that put the site at ``pos`` (3,) with rotation ``rot`` (3, 3)."""
        cfg = self.cfg
        q = np.clip(np.asarray(q_init, dtype=np.float64).copy(), self.lower, self.upper)
        w = np.array([1.0, 1.0, 1.0, cfg.rot_weight, cfg.rot_weight, cfg.rot_weight])
        eye6 = np.eye(6) * cfg.damping**2
        pos_err = rot_err = np.inf
        it = 0
        for it in range(1, cfg.max_iters + 1):  # noqa: B007 -- iteration count is returned
            p, R = self.forward(q)
            e_pos = pos - p
            e_rot = rotvec_from_matrix(rot @ R.T)
            pos_err, rot_err = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
            if pos_err < cfg.pos_tol_m and rot_err < cfg.rot_tol_rad:
                break
            J = site_jacobian(self.model, self.data, self.site_id)[:, self.dadr] * w[:, None]
            e = np.concatenate([e_pos, e_rot]) * w
            JJt_inv = np.linalg.inv(J @ J.T + eye6)
            dq = J.T @ (JJt_inv @ e)
            null = np.eye(len(q)) - J.T @ JJt_inv @ J
            dq += null @ (cfg.nullspace_gain * (self.rest_qpos - q))
            dq *= min(1.0, cfg.max_step_rad / max(np.max(np.abs(dq)), 1e-12))
            q = np.clip(q + dq, self.lower, self.upper)
        return IKResult(q, pos_err, rot_err, it)
