"""Template adapter for a real arm under a Cartesian end-effector-delta controller.

Copy this class for your robot and keep its shape: all I/O goes through two injected callables,
so the adapter itself has no vendor dependency and can be tested without hardware.

- ``read_observation() -> Observation``: grab the exterior camera frame (H, W, 3) uint8 RGB and
  the EE state ``[x, y, z, roll, pitch, yaw, gripper]`` in the robot base frame (metres, radians,
  extrinsic xyz Euler, gripper 0 open .. 1 closed), plus a timestamp in seconds.
- ``transport(action) -> None``: send one (7,) delta ``[dx, dy, dz, droll, dpitch, dyaw, dg]``
  to the controller (e.g. a ROS topic publisher, a Franka/xArm SDK servo call, a socket).

Every action passes the :class:`SafetyFilter` (workspace box, max step, gripper range) and the
rate limit (the adapter sleeps until the next slot). ``dry_run=True`` (the default) logs the
filtered action instead of calling ``transport``: run a whole episode this way first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from planning.robots.base import Observation, RobotBase, check_observation
from planning.robots.safety import ClampReport, SafetyFilter, SafetyLimits

log = logging.getLogger(__name__)


class CartesianDeltaRobot(RobotBase):
    """Robot protocol over injected ``read_observation`` and ``transport`` callables."""

    def __init__(
        self,
        read_observation: Callable[[], Observation],
        transport: Callable[[np.ndarray], None],
        limits: SafetyLimits | None = None,
        dry_run: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._read, self._transport = read_observation, transport
        self.safety = SafetyFilter(limits)  # the 7-D end-effector delta layout
        self.dry_run, self._clock, self._sleep = dry_run, clock, sleep
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self.last_report: ClampReport | None = None
        self._last_state: np.ndarray | None = None

    def connect(self) -> None:
        if self._on_connect is not None:
            self._on_connect()
        super().connect()
        log.info("CartesianDeltaRobot connected (dry_run=%s)", self.dry_run)

    def disconnect(self) -> None:
        if self.connected and self._on_disconnect is not None:
            self._on_disconnect()
        super().disconnect()

    @property
    def control_hz(self) -> float | None:
        """The command rate the rate limit enforces (None when unlimited)."""
        return self.safety.limits.rate_limit_hz or None

    def get_observation(self) -> Observation:
        self.require_connected("get_observation")
        obs = check_observation(self._read(), self.safety.action_dim)
        self._last_state = obs.state
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Filter, wait for the rate-limit slot, then send (or log in dry-run); return sent."""
        self.require_connected("send_action")
        if self._last_state is None:
            raise RuntimeError("CartesianDeltaRobot.send_action: call get_observation first")
        sent, report = self.safety.filter(action, self._last_state)
        wait = self.safety.wait_s(self._clock())
        if wait > 0:
            log.warning("rate limit: waiting %.3f s before the next command", wait)
            report = report._replace(reasons=(*report.reasons, "rate"))
            self._sleep(wait)
        self.last_report = report
        self.safety.mark_sent(self._clock())
        if self.dry_run:
            log.info("dry run: would send %s", np.round(sent, 4))
        else:
            self._transport(sent.copy())
        self._last_state = None  # the next action needs a fresh observation
        return sent
