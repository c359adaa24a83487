""":func:`run_mpc`, the loop that drives any :class:`~planning.robots.base.Robot` with an
:class:`~planning.mpc.MPCController`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from planning.mpc import MPCController, StepInfo
from planning.robots.base import Observation, Robot


class RunResult(NamedTuple):
    """What happened in :func:`run_mpc`: per step planned and sent actions and diagnostics."""

    planned: np.ndarray  # (T, A) what the controller returned (after MPCConfig's filters)
    sent: np.ndarray  # (T, A)
    infos: list[StepInfo]
    stopped_early: bool


def run_mpc(
    robot: Robot,
    controller: MPCController,
    max_steps: int,
    stop: Callable[[Observation, StepInfo], bool] | None = None,
    on_step: Callable[[int, Observation, np.ndarray, StepInfo], None] | None = None,
) -> RunResult:
    """Observe, plan, send for at most ``max_steps`` steps on a connected robot.

    ``stop(obs, info)`` ends the run early (e.g. energy under a threshold or env success);
    ``on_step(t, obs, sent, info)`` is called after each sent action (logging, video).
    """
    if max_steps < 1:
        raise ValueError(f"run_mpc: max_steps must be >= 1, got {max_steps}")
    planned, sent_all, infos = [], [], []
    for t in range(max_steps):
        obs = robot.get_observation()
        action, info = controller.act(obs.rgb, obs.state)
        if stop is not None and stop(obs, info):
            return RunResult(_stack(planned), _stack(sent_all), infos, True)
        sent = robot.send_action(action)
        planned.append(action)
        sent_all.append(np.asarray(sent))
        infos.append(info)
        if on_step is not None:
            on_step(t, obs, sent, info)
    return RunResult(_stack(planned), _stack(sent_all), infos, False)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
