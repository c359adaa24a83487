"""The four tasks: reach, reach-with-object, grasp, pick-and-place.

Shared facts (see :mod:`envs.arm_env` for control and state):

- Objects (``cube`` 4.5 cm, ``cup`` d=5.2 cm h=7 cm) rest on the table in x [0.42, 0.62],
  y [-0.18, 0.18] (base frame, m), at least 12 cm apart, with random colours; the cube's yaw is
  within +-0.3 rad. The task's object is drawn per episode (``info["object_name"]``).
- Goals keep the gripper pointing down (orientation Euler [0, 0, 0]) and lie 8-20 cm (reach,
  reach-with-object) or 12-25 cm (pick-and-place) from the start, i.e. a few 5 cm steps away.
- ``info["subgoal_rgbs"]``: pick-and-place gives [grasped, carried, placed]; the others give
  [goal]. With ``EnvConfig.approach_subgoals`` (default) grasp and pick-and-place start the
  list with two approach images: [hover 8 cm above the object, at the object], gripper open;
  grasp then adds [closed on the object] before its lifted goal.
  ``info["goal_rgb"]`` is always the last one. ``env.unwrapped.goal_sim_states`` holds the sim
  states they were rendered from.
- Privileged info (experts / oracle only): ``ee_state``, ``object_name``, ``object_pos``,
  ``object_held`` (both pads touch it, gripper commanded closed), ``object_rest_z``,
  ``goal_state`` (EE state of the final goal), ``goal_object_pos``, ``subgoal_states``,
  ``place_target`` (pick-and-place).

Success thresholds (``info["is_success"]``):

- reach: EE within 3 cm of the goal position and 0.2 rad of the goal orientation.
- reach_with_object: object held and within 4 cm of its goal position.
- grasp: object held and lifted >= 5 cm above its resting height.
- pick_place: object within 4 cm (xy) of the target, resting on the table (|z - rest| < 1 cm,
  speed < 5 cm/s), the gripper commanded open, and the object was held and lifted >= 3 cm at
  some step of the episode (pushing or dragging it there does not count). That one bit of
  history is part of the task state: :meth:`PickPlaceEnv.get_sim_state` appends it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.arm_env import ArmEnv
from envs.env_config import GoalConfig
from envs.rotations import matrix_from_euler_xyz, rotation_angle
from envs.scene import OBJECT_SPECS

__all__ = ["GraspEnv", "PickPlaceEnv", "ReachEnv", "ReachWithObjectEnv"]

_TABLE_LOW, _TABLE_HIGH = np.array([0.42, -0.18]), np.array([0.62, 0.18])
_GOAL_LOW, _GOAL_HIGH = np.array([0.35, -0.22, 0.14]), np.array([0.65, 0.22, 0.38])
_MIN_SEPARATION_M = 0.12
_LIFT_GOAL_M = 0.10
_PICKED_LIFT_M = 0.03  # pick_place: held this far above the rest height counts as picked up
_NOT_PICKED_COST = 0.5  # pick_place task_distance offset before the pick (after-pick is lower)
_PLACE_MARGIN = np.array([0.02, 0.04])  # place targets may lie a bit outside the object region
_HOVER_M = 0.08  # approach sub-goal: EE this far above the object's centre


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _sample_points(rng: np.random.Generator, n: int, low, high, keep_out=()) -> list[np.ndarray]:
    """n xy points in the box, pairwise and from ``keep_out`` at least _MIN_SEPARATION_M apart."""
    for _ in range(1000):
        pts = [rng.uniform(low, high) for _ in range(n)]
        allp = list(keep_out) + pts
        d = [np.linalg.norm(a - b) for i, a in enumerate(allp) for b in allp[i + 1 :]]
        if not d or min(d) >= _MIN_SEPARATION_M:
            return pts
    raise RuntimeError("could not place objects; the table region is too small")


def _sample_offset_goal(
    rng: np.random.Generator, start: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """A point lo..hi m from ``start`` in a random direction, inside the goal box."""
    for _ in range(1000):
        direction = rng.normal(size=3)
        goal = start + direction / np.linalg.norm(direction) * rng.uniform(lo, hi)
        if np.all(goal >= _GOAL_LOW) and np.all(goal <= _GOAL_HIGH):
            return goal
    raise RuntimeError(f"no goal found around {start}")


def _object_poses(rng: np.random.Generator, objects, keep_out=()) -> dict[str, tuple]:
    """Resting poses (pos (3,), quat (4,)) of ``objects`` on the table."""
    xy = _sample_points(rng, len(objects), _TABLE_LOW, _TABLE_HIGH, keep_out)
    poses = {}
    for name, p in zip(objects, xy, strict=True):
        yaw = rng.uniform(-0.3, 0.3) if name == "cube" else rng.uniform(-np.pi, np.pi)
        poses[name] = (np.array([p[0], p[1], OBJECT_SPECS[name][3]]), _yaw_quat(yaw))
    return poses


def _start_ee(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform([0.38, -0.15, 0.2], [0.58, 0.15, 0.32])


class _ObjectTask(ArmEnv):
    """Shared info for tasks that involve one target object."""

    @property
    def rest_z(self) -> float:
        return OBJECT_SPECS[self.object_name][3]

    def _task_info(self) -> dict[str, Any]:
        pos, quat = self.object_pose(self.object_name)
        return {
            "object_name": self.object_name,
            "object_pos": pos,
            "object_quat": quat,
            "object_held": self.object_held(self.object_name),
            "object_rest_z": self.rest_z,
            "goal_state": self.goal_state.copy(),
            "goal_object_pos": self.goal_object_pos.copy(),
            "subgoal_states": [s.copy() for s in self.subgoal_states],
        }

    def _approach(self, obj: np.ndarray) -> tuple[list[np.ndarray], list[GoalConfig]]:
        """Approach sub-goal states and configs (hover above, then at the object; gripper open),
        or nothing when ``EnvConfig.approach_subgoals`` is off."""
        if not self.cfg.approach_subgoals:
            return [], []
        points = [obj + np.array([0.0, 0.0, _HOVER_M]), obj.copy()]
        return [_state(p, 0.0) for p in points], [GoalConfig(ee_pos=tuple(p)) for p in points]

    def _grasp_gap(self) -> float:
        """Distance from the EE site to the object's centre (m)."""
        return float(np.linalg.norm(self.ee_state()[:3] - self.object_pose(self.object_name)[0]))


def _state(pos, gripper: float) -> np.ndarray:
    return np.concatenate([pos, np.zeros(3), [gripper]])


class ReachEnv(ArmEnv):
    """Move the end effector to a goal pose (gripper open). Success: within 3 cm, 0.2 rad."""

    task_name = "reach"

    def _sample_episode(self, rng):
        poses = _object_poses(rng, self.cfg.objects)
        start = _start_ee(rng)
        self.goal_state = _state(_sample_offset_goal(rng, start, 0.08, 0.2), 0.0)
        goal = GoalConfig(ee_pos=tuple(self.goal_state[:3]), gripper=0.0)
        return GoalConfig(ee_pos=tuple(start), object_poses=poses), [goal]

    def _errors(self) -> tuple[float, float]:
        s = self.ee_state()
        rot = rotation_angle(
            matrix_from_euler_xyz(s[3:6]), matrix_from_euler_xyz(self.goal_state[3:6])
        )
        return float(np.linalg.norm(s[:3] - self.goal_state[:3])), float(rot)

    def _is_success(self) -> bool:
        pos_err, rot_err = self._errors()
        return pos_err < 0.03 and rot_err < 0.2

    def task_distance(self) -> float:
        pos_err, rot_err = self._errors()
        return pos_err + 0.1 * rot_err

    def _task_info(self) -> dict[str, Any]:
        return {"goal_state": self.goal_state.copy(), "subgoal_states": [self.goal_state.copy()]}


class ReachWithObjectEnv(_ObjectTask):
    """The object starts grasped; carry it to a goal position. Success: held, within 4 cm."""

    task_name = "reach_with_object"

    def _sample_episode(self, rng):
        self.object_name = str(rng.choice(self.cfg.objects))
        poses = _object_poses(rng, self.cfg.objects)
        poses.pop(self.object_name)
        start = _start_ee(rng)
        self.goal_object_pos = _sample_offset_goal(rng, start, 0.08, 0.2)
        self.goal_state = _state(self.goal_object_pos, 1.0)
        self.subgoal_states = [self.goal_state]
        held = {"gripper": 1.0, "held_object": self.object_name}
        start_cfg = GoalConfig(ee_pos=tuple(start), object_poses=poses, **held)
        return start_cfg, [GoalConfig(ee_pos=tuple(self.goal_object_pos), **held)]

    def _obj_err(self) -> float:
        return float(np.linalg.norm(self.object_pose(self.object_name)[0] - self.goal_object_pos))

    def _is_success(self) -> bool:
        return self.object_held(self.object_name) and self._obj_err() < 0.04

    def task_distance(self) -> float:
        held = self.object_held(self.object_name)
        return self._obj_err() + (0.0 if held else 0.1 + self._grasp_gap())


class GraspEnv(_ObjectTask):
    """Grasp the object and lift it. Success: held and lifted >= 5 cm above its rest height."""

    task_name = "grasp"

    def _sample_episode(self, rng):
        self.object_name = str(rng.choice(self.cfg.objects))
        poses = _object_poses(rng, self.cfg.objects)
        start = _start_ee(rng)
        obj = poses[self.object_name][0]
        self.goal_object_pos = obj + np.array([0.0, 0.0, _LIFT_GOAL_M])
        self.goal_state = _state(self.goal_object_pos, 1.0)
        approach_states, approach = self._approach(obj)
        if approach:  # then closed on the object, as pick-and-place's "grasped" sub-goal
            approach_states.append(_state(obj, 1.0))
            approach.append(
                GoalConfig(ee_pos=tuple(obj), gripper=1.0, held_object=self.object_name)
            )
        self.subgoal_states = [*approach_states, self.goal_state]
        goal = GoalConfig(
            ee_pos=tuple(self.goal_object_pos), gripper=1.0, held_object=self.object_name
        )
        return GoalConfig(ee_pos=tuple(start), object_poses=poses), [*approach, goal]

    def _is_success(self) -> bool:
        lifted = self.object_pose(self.object_name)[0][2] >= self.rest_z + 0.05
        return lifted and self.object_held(self.object_name)

    def task_distance(self) -> float:
        obj = self.object_pose(self.object_name)[0]
        held = self.object_held(self.object_name)
        grip_err = abs(self.gripper_cmd - float(self._grasp_gap() < 0.015 or held))
        return (
            float(np.linalg.norm(obj - self.goal_object_pos)) + self._grasp_gap() + 0.05 * grip_err
        )


class PickPlaceEnv(_ObjectTask):
    """Move the object to a target on the table and release it (sub-goals: grasped, carried,
    placed). Success: picked up (held, lifted >= 3 cm) at some step, then within 4 cm (xy) of
    the target, resting, gripper open."""

    task_name = "pick_place"

    def _sample_episode(self, rng):
        self.object_name = str(rng.choice(self.cfg.objects))
        while True:
            poses = _object_poses(rng, self.cfg.objects)
            obj = poses[self.object_name][0]
            others = [p[0][:2] for n, p in poses.items() if n != self.object_name]
            target = _sample_points(
                rng, 1, _TABLE_LOW - _PLACE_MARGIN, _TABLE_HIGH + _PLACE_MARGIN, others
            )[0]
            if 0.12 <= np.linalg.norm(target - obj[:2]) <= 0.25:
                break
        z = self.rest_z
        self.place_target = target
        self.goal_object_pos = np.array([target[0], target[1], z])
        held = {"gripper": 1.0, "held_object": self.object_name}
        above = self.goal_object_pos + np.array([0.0, 0.0, _LIFT_GOAL_M])
        release = self.goal_object_pos + np.array([0.0, 0.0, 0.08])
        approach_states, approach = self._approach(obj)
        published = [_state(obj, 1.0), _state(above, 1.0), _state(release, 0.0)]
        self.subgoal_states = [*approach_states, *published]
        self.goal_state = self.subgoal_states[-1]
        placed_pose = {self.object_name: (self.goal_object_pos, poses[self.object_name][1])}
        goals = [
            *approach,
            GoalConfig(ee_pos=tuple(obj), **held),
            GoalConfig(ee_pos=tuple(above), **held),
            GoalConfig(ee_pos=tuple(release), gripper=0.0, object_poses=placed_pose),
        ]
        return GoalConfig(ee_pos=tuple(_start_ee(rng)), object_poses=poses), goals

    picked: bool = False  # held and lifted >= _PICKED_LIFT_M at some step of this episode

    def _render_goals(self, goals) -> None:
        self.picked = True  # every goal state lies past the pick
        super()._render_goals(goals)
        self.picked = False

    def get_sim_state(self) -> np.ndarray:
        """The arm/physics state of :meth:`ArmEnv.get_sim_state` plus the ``picked`` bit."""
        return np.append(super().get_sim_state(), float(self.picked))

    def set_sim_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 1 or state.shape[0] < 1:
            raise ValueError(f"sim state must be a 1-D array, got shape {state.shape}")
        super().set_sim_state(state[:-1])
        self.picked = bool(state[-1] > 0.5)

    def simulate(self, action) -> np.ndarray:
        applied = super().simulate(action)
        if not self.picked and self.object_held(self.object_name):
            lift = self.object_pose(self.object_name)[0][2] - self.rest_z
            self.picked = bool(lift >= _PICKED_LIFT_M)
        return applied

    def _xy_err(self) -> float:
        return float(np.linalg.norm(self.object_pose(self.object_name)[0][:2] - self.place_target))

    def _is_success(self) -> bool:
        z = self.object_pose(self.object_name)[0][2]
        resting = abs(z - self.rest_z) < 0.01 and self.object_speed(self.object_name) < 0.05
        return self.picked and self._xy_err() < 0.04 and resting and self.gripper_cmd < 0.5

    def task_distance(self) -> float:
        obj = self.object_pose(self.object_name)[0]
        if not self.picked:  # shaped like grasp: reach it, close on it, lift it
            held = self.object_held(self.object_name)
            grip_err = abs(self.gripper_cmd - float(self._grasp_gap() < 0.015 or held))
            shortfall = max(0.0, self.rest_z + _PICKED_LIFT_M - float(obj[2]))
            return _NOT_PICKED_COST + self._grasp_gap() + shortfall + 0.05 * grip_err
        dist = float(np.linalg.norm(obj - self.goal_object_pos))
        if self._xy_err() >= 0.04:
            return dist + self._grasp_gap()
        return dist + 0.5 * float(np.linalg.norm(self.ee_state()[:3] - self.goal_state[:3]))

    def _task_info(self) -> dict[str, Any]:
        info = {**super()._task_info(), "place_target": self.place_target.copy()}
        return {**info, "picked": self.picked}
