"""A worked adapter: a Cartesian end-effector-delta arm behind a vendor SDK, as a Robot.

``sdk``: ``connect()``, ``disconnect()``, ``get_pose() -> [x, y, z, roll, pitch, yaw]`` (metres,
radians, extrinsic xyz Euler, robot base frame), ``get_gripper() -> 0 (open) .. 1 (closed)``,
``move_delta(d6)``, ``set_gripper(g)``; ``camera.read() -> (H, W, 3) uint8 RGB``. Rename these
four calls to your SDK's (xArm, Franka, a ROS topic...): everything else stays.
"""

from __future__ import annotations

import time

import numpy as np

from planning.robots import CartesianDeltaRobot, Observation, SafetyLimits


def make_robot(sdk, camera, dry_run: bool = True, limits: SafetyLimits | None = None):
    """The arm as a :class:`CartesianDeltaRobot`: safety filter, rate limit, dry run included."""

    def read() -> Observation:
        state = np.r_[np.asarray(sdk.get_pose(), np.float32), np.float32(sdk.get_gripper())]
        return Observation(camera.read(), state, time.monotonic())

    def send(action: np.ndarray) -> None:  # already finite and inside the limits
        sdk.move_delta(action[:6])
        sdk.set_gripper(float(np.clip(sdk.get_gripper() + action[6], 0.0, 1.0)))

    limits = limits or SafetyLimits(max_translation_m=0.03)  # your arm's limits
    return CartesianDeltaRobot(read, send, limits, dry_run=dry_run,
                               on_connect=sdk.connect, on_disconnect=sdk.disconnect)  # fmt: skip
