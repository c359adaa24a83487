"""The worked adapter of docs/robots-and-server.md (demos/adapters/cartesian_arm.py) drives a
fake vendor SDK to a goal with run_mpc, and moves nothing in dry run (#24)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from planning.mpc import MPCController
from planning.planners import make_planner
from planning.robots import SafetyLimits, run_mpc
from planning.toy import ToyDynamics

ADAPTER = Path(__file__).resolve().parents[2] / "demos" / "adapters" / "cartesian_arm.py"
GOAL = np.array([0.52, 0.05, 0.25, 0, 0, 0, 0.0], np.float32)


class FakeSDK:
    def __init__(self) -> None:
        self.pose, self.grip, self.moves, self.connected = (
            np.array([0.45, 0, 0.3, 0, 0, 0]),
            0.0,
            0,
            False,
        )

    def connect(self):
        self.connected = True

    def disconnect(self):
        self.connected = False

    def get_pose(self):
        return self.pose.copy()

    def get_gripper(self):
        return self.grip

    def move_delta(self, d6):
        self.pose = self.pose + np.asarray(d6)  # rotations are small here: added
        self.moves += 1

    def set_gripper(self, g):
        self.grip = g


class Camera:
    def read(self):
        return np.zeros((64, 64, 3), np.uint8)


def _adapter():
    spec = importlib.util.spec_from_file_location("cartesian_arm", ADAPTER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _controller():
    mpc = MPCController(ToyDynamics(), make_planner("cem", samples=128, iterations=4, top_k=12))
    mpc.set_goal(np.zeros((64, 64, 3), np.uint8), GOAL)
    return mpc


def test_the_worked_adapter_reaches_a_goal_within_its_limits():
    assert sum(1 for ln in ADAPTER.read_text().splitlines() if ln.strip()) <= 40
    sdk = FakeSDK()
    robot = _adapter().make_robot(sdk, Camera(), dry_run=False,
                                  limits=SafetyLimits(max_translation_m=0.03, rate_limit_hz=0))  # fmt: skip
    with robot:
        result = run_mpc(robot, _controller(), max_steps=12,
                         stop=lambda obs, info: np.linalg.norm(obs.state[:3] - GOAL[:3]) < 0.01)  # fmt: skip
    assert np.linalg.norm(sdk.pose[:3] - GOAL[:3]) < 0.01
    assert np.all(np.linalg.norm(result.sent[:, :3], axis=1) <= 0.03 + 1e-6)
    assert not sdk.connected


def test_dry_run_moves_nothing():
    sdk = FakeSDK()
    robot = _adapter().make_robot(sdk, Camera(), limits=SafetyLimits(rate_limit_hz=0))
    with robot:
        run_mpc(robot, _controller(), max_steps=3)
    assert sdk.moves == 0
