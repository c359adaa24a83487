"""SimRobot: the Robot protocol over one of our gymnasium environments (an env object)."""

from __future__ import annotations

from typing import Any

import numpy as np

from planning.robots.base import Observation, RobotBase, check_observation
from planning.robots.safety import ClampReport, SafetyFilter, SafetyLimits


class SimRobot(RobotBase):
    """Wraps a gymnasium env whose observations are ``{"rgb", "state"}`` (see envs/).

    ``connect`` resets the env (``seed``, ``task_id``); ``send_action`` filters the action, steps
    the env and returns the action the env applied (``info["applied_action"]`` when present).
    Time is simulated: ``timestamp_s`` advances by ``ctrl_dt_s`` per step, so the rate limit
    never delays a simulation. The latest ``info``, reward and termination flags are kept.
    """

    def __init__(
        self,
        env: Any,
        limits: SafetyLimits | None = None,
        seed: int | None = None,
        task_id: int | None = None,
        ctrl_dt_s: float = 0.25,
    ) -> None:
        super().__init__()
        self.env, self.seed, self.task_id, self.ctrl_dt_s = env, seed, task_id, ctrl_dt_s
        self.safety = SafetyFilter(limits, action_dim=int(np.prod(env.action_space.shape)))
        self.info: dict = {}
        self.reward = 0.0
        self.terminated = self.truncated = False
        self.last_report: ClampReport | None = None
        self._obs: dict | None = None
        self._steps = 0

    def connect(self) -> None:
        options = None if self.task_id is None else {"task_id": self.task_id}
        self._obs, self.info = self.env.reset(seed=self.seed, options=options)
        self._steps = 0
        self.terminated = self.truncated = False
        super().connect()

    def get_observation(self) -> Observation:
        self.require_connected("get_observation")
        ts = self._steps * self.ctrl_dt_s
        state = np.asarray(self._obs["state"])
        return check_observation(Observation(self._obs["rgb"], state, ts), state.shape[-1])

    @property
    def control_hz(self) -> float:
        return 1.0 / self.ctrl_dt_s

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self.require_connected("send_action")
        state = np.asarray(self._obs["state"], dtype=np.float64)
        sent, self.last_report = self.safety.filter(action, state)
        self._obs, self.reward, self.terminated, self.truncated, self.info = self.env.step(
            sent.astype(np.float32)
        )
        self._steps += 1
        applied = self.info.get("applied_action", sent)
        return np.asarray(applied, dtype=np.float32)
