"""Simulation environments: a MuJoCo Panda-like arm on a table with four gymnasium tasks.

Importing this package registers ``wm/Reach-v0``, ``wm/ReachWithObject-v0``, ``wm/Grasp-v0`` and
``wm/PickPlace-v0``; ``TASKS`` maps task names to those ids. Create with
``gymnasium.make(id, image_size=64, wrist_camera=False, ...)`` (any ``EnvConfig`` field).
"""

from __future__ import annotations

import os

# Headless machines: render offscreen with EGL unless the user chose a backend or has a display.
# (Takes effect only if mujoco has not been imported yet.)
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import gymnasium as gym

from envs.env_config import EnvConfig, GoalConfig

__all__ = ["MAX_EPISODE_STEPS", "TASKS", "EnvConfig", "GoalConfig"]

TASKS = {
    "reach": "wm/Reach-v0",
    "reach_with_object": "wm/ReachWithObject-v0",
    "grasp": "wm/Grasp-v0",
    "pick_place": "wm/PickPlace-v0",
}
# Steps at 4 Hz; the scripted experts need about a third of these.
MAX_EPISODE_STEPS = {"reach": 30, "reach_with_object": 30, "grasp": 40, "pick_place": 60}
_ENTRY_POINTS = {
    "reach": "envs.tasks:ReachEnv",
    "reach_with_object": "envs.tasks:ReachWithObjectEnv",
    "grasp": "envs.tasks:GraspEnv",
    "pick_place": "envs.tasks:PickPlaceEnv",
}

for _name, _env_id in TASKS.items():
    if _env_id not in gym.registry:
        gym.register(
            id=_env_id,
            entry_point=_ENTRY_POINTS[_name],
            max_episode_steps=MAX_EPISODE_STEPS[_name],
        )
