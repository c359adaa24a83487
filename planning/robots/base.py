"""The Robot protocol every MPC driver talks to, and a base class giving context-manager use."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class Observation(NamedTuple):
    """One observation: rgb (H, W, 3) uint8, state (7,) float32, timestamp_s (robot clock)."""

    rgb: np.ndarray
    state: np.ndarray
    timestamp_s: float


@runtime_checkable
class Robot(Protocol):
    """What :func:`planning.robots.run_mpc` drives: sim, fake or real hardware."""

    def connect(self) -> None: ...

    def get_observation(self) -> Observation: ...

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Send (A,) action; return the action actually sent after safety clamping."""
        ...

    def disconnect(self) -> None: ...


class RobotBase:
    """Connection bookkeeping plus ``with robot: ...`` (connect on enter, disconnect on exit)."""

    def __init__(self) -> None:
        self.connected = False

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def require_connected(self, what: str) -> None:
        if not self.connected:
            raise RuntimeError(f"{type(self).__name__}.{what}: robot is not connected")

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.disconnect()


def check_observation(obs: Observation, state_dim: int = 7) -> Observation:
    """Validate an observation coming from hardware or a simulator; raise ValueError if bad."""
    rgb = np.asarray(obs.rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"observation rgb must be (H,W,3) uint8, got {rgb.shape} {rgb.dtype}")
    state = np.asarray(obs.state, dtype=np.float32)
    if state.shape != (state_dim,) or not np.all(np.isfinite(state)):
        raise ValueError(f"observation state must be finite ({state_dim},), got {obs.state!r}")
    return Observation(rgb, state, float(obs.timestamp_s))
