"""Scripted experts for the four tasks, using the privileged ``info`` of the envs.

The expert is reactive (no phase counters): each step it reads the end-effector state, the
object pose and whether the object is held, and picks the next sub-target:

- pick: hover 8 cm above the object -> descend to its centre -> close; a gripper that is
  closed on nothing opens and backs off (recovery);
- carry: move so that the object goes to the goal (lifting first when it is low);
- place: lower the object onto the table at the target, open, retreat upward.

Motions are straight lines, scaled so no axis exceeds the per-step bound; the rotation action
steers back to the nominal pointing-down orientation. Modes:

- ``expert``: the clean policy.
- ``noisy``: Gaussian action noise (sigma 5 mm, 0.02 rad, 0.05 gripper).
- ``explore``: the same noise, random-motion bursts (1-4 steps, including rotations and gripper
  toggles), premature closes and occasional drops; the reactive policy recovers from all of them.
- ``practice``: the noisy policy, but each step with probability ``practice_toggle_prob`` the
  arm holds still and the gripper toggles (closes if open, opens if closed): data where the
  gripper is the only thing that moves (at 64 px a full close changes our latent about as much
  as a 1-2 mm arm move, and in the other modes it comes with arm motion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.rotations import euler_xyz_from_matrix, matrix_from_euler_xyz

__all__ = ["ExpertConfig", "ScriptedExpert", "make_expert"]

_MODES = ("expert", "noisy", "explore", "practice")
_HOVER_M = 0.08
_LIFT_M = 0.11


@dataclass(frozen=True)
class ExpertConfig:
    """Noise and exploration settings of :class:`ScriptedExpert`."""

    noise_pos_m: float = 0.005
    noise_rot_rad: float = 0.02
    noise_grip: float = 0.05
    explore_noise_scale: float = 1.0
    burst_prob: float = 0.1
    premature_close_prob: float = 0.04
    drop_prob: float = 0.03
    practice_toggle_prob: float = 0.5

    def __post_init__(self) -> None:
        probs = (
            self.burst_prob,
            self.premature_close_prob,
            self.drop_prob,
            self.practice_toggle_prob,
        )
        if min(self.noise_pos_m, self.noise_rot_rad, self.noise_grip, self.explore_noise_scale) < 0:
            raise ValueError(f"noise settings must be >= 0, got {self}")
        if not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"probabilities must be in [0, 1], got {probs}")


class ScriptedExpert:
    """``act(obs, info) -> action (7,) float32`` for one env; ``reset()`` between episodes."""

    def __init__(
        self, env: gym.Env, mode: str, rng: np.random.Generator, cfg: ExpertConfig | None = None
    ):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.unwrapped = env.unwrapped
        self.task = self.unwrapped.task_name
        self.mode, self.rng, self.cfg = mode, rng, cfg or ExpertConfig()
        self.bound = np.asarray(env.action_space.high, dtype=np.float64)
        self._burst_left = 0
        self._burst_action = np.zeros(7)

    def reset(self) -> None:
        self._burst_left = 0

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """The next action (7,) float32 for the current observation/info."""
        s = np.asarray(info["ee_state"], dtype=np.float64)
        target, grip = self._target(s, info)
        action = self._to_action(s, target, grip)
        if self.mode == "practice" and self.rng.random() < self.cfg.practice_toggle_prob:
            action = np.zeros(7)  # arm still, gripper swings fully the other way
            action[6] = -1.0 if s[6] > 0.5 else 1.0
        elif self.mode in ("noisy", "practice"):
            action += self._noise(1.0)
        elif self.mode == "explore":
            action = self._explore(action, info)
        return np.clip(action, -self.bound, self.bound).astype(np.float32)

    # ----------------------------------------------------------------- policy
    def _target(self, s: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, float]:
        if self.task == "reach":
            return info["goal_state"][:3], float(info["goal_state"][6])
        held, obj = bool(info["object_held"]), np.asarray(info["object_pos"])
        if self.task == "pick_place":
            return self._pick_place(s, obj, held, info)
        if not held:
            return self._pick(s, obj, info)
        if self.task == "grasp":
            goal_obj = np.array([obj[0], obj[1], info["object_rest_z"] + _LIFT_M])
        else:
            goal_obj = np.asarray(info["goal_object_pos"])
        return s[:3] + goal_obj - obj, 1.0

    def _pick(
        self, s: np.ndarray, obj: np.ndarray, info: dict[str, Any]
    ) -> tuple[np.ndarray, float]:
        p, g = s[:3], s[6]
        if g > 0.5:  # closed but not holding: open and back off upward
            return p + np.array([0.0, 0.0, 0.04]), 0.0
        hover_z = obj[2] + _HOVER_M
        xy_err = np.linalg.norm(p[:2] - obj[:2])
        if xy_err > 0.02:
            if p[2] < hover_z - 0.03:  # low and off to the side: rise before moving across
                return np.array([p[0], p[1], hover_z]), 0.0
            return np.array([obj[0], obj[1], max(hover_z, p[2])]), 0.0
        if p[2] > obj[2] + 0.012 or xy_err > 0.008:  # descend, re-centring on the way
            return obj.copy(), 0.0
        return obj.copy(), 1.0

    def _pick_place(self, s, obj, held, info) -> tuple[np.ndarray, float]:
        target = np.asarray(info["goal_object_pos"])
        xy_err = np.linalg.norm(obj[:2] - target[:2])
        rest_z = float(info["object_rest_z"])
        if not held:
            if xy_err < 0.03 and abs(obj[2] - rest_z) < 0.02:
                return np.asarray(info["goal_state"][:3]), 0.0  # released: retreat upward
            return self._pick(s, obj, info)
        p = s[:3]
        if xy_err > 0.015:
            if obj[2] < rest_z + 0.06 and xy_err > 0.03:
                return p + np.array([0.0, 0.0, rest_z + _LIFT_M - obj[2]]), 1.0
            return p + np.array([target[0], target[1], rest_z + _LIFT_M]) - obj, 1.0
        if obj[2] > rest_z + 0.006:
            return p + np.array([target[0], target[1], rest_z + 0.002]) - obj, 1.0
        return p, 0.0

    def _to_action(self, s: np.ndarray, target: np.ndarray, grip: float) -> np.ndarray:
        d = np.asarray(target, dtype=np.float64) - s[:3]
        d *= min(1.0, self.bound[0] / max(np.max(np.abs(d)), 1e-9))
        R_cur = matrix_from_euler_xyz(s[3:6])
        rot = euler_xyz_from_matrix(R_cur.T)  # back to the nominal (identity) orientation
        return np.concatenate([d, np.clip(rot, -self.bound[3:6], self.bound[3:6]), [grip - s[6]]])

    # ----------------------------------------------------------------- noise / exploration
    def _noise(self, scale: float) -> np.ndarray:
        c = self.cfg
        sigma = np.array([c.noise_pos_m] * 3 + [c.noise_rot_rad] * 3 + [c.noise_grip]) * scale
        return self.rng.normal(size=7) * sigma

    def _explore(self, action: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        c, rng = self.cfg, self.rng
        if self._burst_left == 0 and rng.random() < c.burst_prob:
            self._burst_left = int(rng.integers(1, 5))
            burst = rng.uniform(-1.0, 1.0, size=7) * self.bound
            burst[3:6] *= 0.4
            burst[6] = rng.choice([-1.0, 0.0, 0.0, 1.0])
            self._burst_action = burst
        if self._burst_left > 0:
            self._burst_left -= 1
            return self._burst_action.copy()
        action = action + self._noise(c.explore_noise_scale)
        if info.get("object_held") and rng.random() < c.drop_prob:
            action[6] = -1.0  # drop the object; the policy picks it up again
        elif rng.random() < c.premature_close_prob:
            action[6] = 1.0  # close on nothing or too early: a failed grasp to recover from
        return action


def make_expert(
    env: gym.Env,
    mode: str = "expert",
    rng: np.random.Generator | None = None,
    cfg: ExpertConfig | None = None,
) -> ScriptedExpert:
    """A scripted expert for ``env`` (any of the wm/* tasks) in the given mode."""
    return ScriptedExpert(env, mode, rng if rng is not None else np.random.default_rng(0), cfg)
