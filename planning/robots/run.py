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
        if t == 0:
            check_robot_fits(robot, controller.dynamics, obs)
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


RATE_TOLERANCE = 0.05  # relative: 4 Hz vs 4.1 Hz passes, 4 Hz vs 5 Hz does not


def check_robot_fits(robot: Robot, model, obs: Observation) -> None:
    """Refuse, before the first action, a robot that does not match what the model was trained
    on: another action size, another control rate, another state size, or frames that are not
    the model's views (a mosaic of V square views side by side).

    The rate is compared when both sides know it (``robot.control_hz``, ``model.layout.fps``).

    Raises:
        ValueError: naming both values and what to change.
    """
    layout = getattr(model, "layout", None)
    safety = getattr(robot, "safety", None)
    if safety is not None and safety.action_dim != model.action_dim:
        raise ValueError(
            f"the robot takes {safety.action_dim}-D actions, the model plans {model.action_dim}-D "
            f"({'/'.join(layout.action_names) if layout else ''})"
        )
    if layout is None:
        return
    if np.shape(obs.state) != (layout.state_dim,):
        raise ValueError(
            f"the robot reports a state of shape {np.shape(obs.state)}, the model was trained "
            f"on {layout.state_dim}-D states ({', '.join(layout.state_names)})"
        )
    hz = getattr(robot, "control_hz", None)
    if hz and layout.fps and abs(hz - layout.fps) > RATE_TOLERANCE * layout.fps:
        raise ValueError(
            f"the robot is controlled at {hz:g} Hz, the model was trained on {layout.fps:g} Hz "
            "data: one action would span another time step than the model predicts. Run the "
            f"robot at {layout.fps:g} Hz (ctrl_dt_s={1 / layout.fps:g}) or import the data at "
            "the robot's rate"
        )
    views = getattr(model, "views", ("exterior",))
    h, w = np.shape(obs.rgb)[:2]
    if len(views) > 1 and w != len(views) * h:
        raise ValueError(
            f"the model takes {len(views)} square views side by side ({'+'.join(views)}): frames "
            f"of {h}x{len(views) * h} px, got {h}x{w}; is a camera missing?"
        )


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
