"""A tiny env meeting the recording part of the env contract (``envs/contract.py``; no goal
image) without MuJoCo, plus its scripted expert.

For fast tests of data collection: ``gymnasium.make("envs.fake_env:FakeArm-v0")``
imports this module (which registers the id), also inside spawned worker processes. The end
effector is a point in [0, 1]^2 drawn by :func:`worldmodel.data.synthetic.render_dot`; the goal
is a random point; success when within 0.05 of it.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from worldmodel.data.synthetic import render_dot

ENV_ID = "FakeArm-v0"
FULL_ENV_ID = f"envs.fake_env:{ENV_ID}"
MAX_EPISODE_STEPS = 8


class FakeArmEnv(gym.Env):
    """Point "arm" with the obs/info/action conventions of the real arm envs."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012
    camera_fovy_deg = 50.0

    def __init__(
        self, image_size: int = 32, wrist_camera: bool = False, step_delay_s: float = 0.0, **_: Any
    ) -> None:
        self.image_size = image_size
        self.step_delay_s = step_delay_s
        self.wrist_camera = wrist_camera
        bound = np.array([0.05, 0.05, 0.05, 0.25, 0.25, 0.25, 1.0], dtype=np.float32)
        self.action_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        spaces = {"rgb": img, "state": gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)}
        if wrist_camera:
            spaces["wrist_rgb"] = img
        self.observation_space = gym.spaces.Dict(spaces)
        # the env contract (envs/contract.py): the wrist image, when on, is obs["wrist_rgb"]
        cameras = ("exterior", "wrist") if wrist_camera else ("exterior",)
        self.metadata = {**type(self).metadata, "cameras": cameras, "action_kind": "ee_delta"}
        self._state = np.zeros(7, dtype=np.float32)
        self.goal = np.zeros(2)

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {
            "rgb": render_dot(self._state[None], self.image_size)[0],
            "state": self._state.copy(),
        }
        if self.wrist_camera:
            obs["wrist_rgb"] = render_dot(self._state[None], self.image_size, shade=40)[0]
        return obs

    def task_distance(self) -> float:
        """Distance of the point to the goal."""
        return float(np.linalg.norm(self._state[:2] - self.goal))

    def _info(self, applied: np.ndarray) -> dict[str, Any]:
        return {
            "applied_action": applied.astype(np.float32),
            "task_id": None,
            "task": "fake",
            "is_success": self.task_distance() < 0.05,
            "task_distance": self.task_distance(),
            "goal_state": self.goal.copy(),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = np.zeros(7, dtype=np.float32)
        self._state[:2] = self.np_random.uniform(0.2, 0.8, size=2)
        self.goal = self.np_random.uniform(0.2, 0.8, size=2)
        return self._obs(), self._info(np.zeros(7))

    def step(self, action: np.ndarray):
        if self.step_delay_s:
            time.sleep(self.step_delay_s)  # stands in for physics + rendering time
        applied = np.clip(
            np.asarray(action, np.float32), self.action_space.low, self.action_space.high
        )
        self._state[:6] += applied[:6]
        self._state[6] = np.clip(self._state[6] + applied[6], 0.0, 1.0)
        info = self._info(applied)
        return self._obs(), -info["task_distance"], False, False, info


class FakeExpert:
    """Moves straight to the goal ("expert"), with noise ("noisy"), or randomly ("explore")."""

    def __init__(self, env: gym.Env, mode: str, rng: np.random.Generator) -> None:
        if mode not in ("expert", "noisy", "explore"):
            raise ValueError(f"mode must be expert, noisy or explore, got {mode!r}")
        self.env, self.mode, self.rng = env, mode, rng

    def reset(self) -> None:
        """Nothing to reset (stateless)."""

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """(7,) action towards ``info["goal_state"]``."""
        action = np.zeros(7, dtype=np.float32)
        action[:2] = np.clip(info["goal_state"] - obs["state"][:2], -0.08, 0.08)
        if self.mode == "noisy":
            action[:2] += self.rng.normal(0.0, 0.02, size=2)
        elif self.mode == "explore":
            action[:2] = self.rng.uniform(-0.06, 0.06, size=2)
        return action


def make_expert(env: gym.Env, mode: str = "expert", rng: np.random.Generator | None = None):
    """Same signature as ``envs.experts.make_expert``."""
    return FakeExpert(env, mode, rng if rng is not None else np.random.default_rng())


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=FakeArmEnv, max_episode_steps=MAX_EPISODE_STEPS)
