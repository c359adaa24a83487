"""Robots the MPC loop drives: the :class:`Robot` protocol, adapters and :func:`run_mpc`.

:class:`SimRobot` (a gymnasium env), :class:`FakeRobot` (tests), :class:`CartesianDeltaRobot`
(template for real arms). Each enforces :class:`SafetyLimits` through a :class:`SafetyFilter`
and returns the action actually sent.
"""

from planning.robots.base import Observation, Robot, RobotBase, check_observation
from planning.robots.cartesian import CartesianDeltaRobot
from planning.robots.fake import FakeRobot
from planning.robots.run import RunResult, run_mpc
from planning.robots.safety import ClampReport, SafetyFilter, SafetyLimits
from planning.robots.sim import SimRobot

__all__ = [
    "CartesianDeltaRobot", "ClampReport", "FakeRobot", "Observation", "Robot", "RobotBase",
    "RunResult", "SafetyFilter", "SafetyLimits", "SimRobot", "check_observation", "run_mpc",
]  # fmt: skip
