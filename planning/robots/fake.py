"""FakeRobot: records actions and serves scripted or integrated observations (tests, demos)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from planning.robots.base import Observation, RobotBase, check_observation
from planning.robots.safety import ClampReport, SafetyFilter, SafetyLimits


class FakeRobot(RobotBase):
    """A robot made of arrays.

    Without ``script`` the state integrates the sent actions like the envs (xyz and rotation
    added, gripper clipped to [0, 1]); with ``script(step, state) -> Observation`` every
    observation comes from the script. ``actions`` and ``reports`` record what was sent.
    Time is virtual: each ``send_action`` advances ``ctrl_dt_s``.
    """

    def __init__(
        self,
        initial_state: np.ndarray,
        image_size: int = 16,
        limits: SafetyLimits | None = None,
        script: Callable[[int, np.ndarray], Observation] | None = None,
        ctrl_dt_s: float = 0.25,
    ) -> None:
        super().__init__()
        self.initial_state = np.asarray(initial_state, dtype=np.float32).copy()
        self.image_size, self.script, self.ctrl_dt_s = image_size, script, ctrl_dt_s
        self.safety = SafetyFilter(limits, action_dim=self.initial_state.shape[0])
        self.actions: list[np.ndarray] = []
        self.reports: list[ClampReport] = []
        self.state = self.initial_state.copy()

    def connect(self) -> None:
        self.state = self.initial_state.copy()
        self.actions, self.reports = [], []
        super().connect()

    def get_observation(self) -> Observation:
        self.require_connected("get_observation")
        step = len(self.actions)
        if self.script is not None:
            return check_observation(self.script(step, self.state.copy()), self.state.shape[0])
        rgb = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        obs = Observation(rgb, self.state.copy(), step * self.ctrl_dt_s)
        return check_observation(obs, self.state.shape[0])

    @property
    def control_hz(self) -> float:
        return 1.0 / self.ctrl_dt_s

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self.require_connected("send_action")
        now = len(self.actions) * self.ctrl_dt_s
        if self.safety.wait_s(now) > 0:  # virtual clock: cannot happen unless misconfigured
            raise RuntimeError(f"FakeRobot: rate limit violated at t={now}")
        sent, report = self.safety.filter(action, self.state)
        self.safety.mark_sent(now)
        lay = self.safety.limits.layout
        nxt = self.state + sent
        if lay.gripper_index is not None:
            g = lay.gripper_index
            nxt[g] = np.clip(self.state[g] + sent[g], 0.0, 1.0)
        self.state = nxt.astype(np.float32)
        self.actions.append(sent)
        self.reports.append(report)
        return sent
