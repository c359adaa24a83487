"""Base gymnasium env: the arm scene, end-effector delta control, cameras and goal rendering.

Control (one ``step`` = ``ctrl_dt_s`` = 0.25 s): the 7-D action is clipped to the action box,
applied to the *measured* end-effector state with :func:`envs.rotations.apply_delta`, the target
is clipped to the workspace box (and tilt/yaw limits), damped-least-squares IK gives joint
targets, and the joint position actuators track a smoothstep interpolation toward them over the
physics substeps. The gripper command ``clip(g + dg, 0, 1)`` drives both finger actuators.
``info["applied_action"]`` is the action that was really commanded after all clipping.

State ``[x, y, z, roll, pitch, yaw, g]``: the ``ee`` site position and extrinsic-xyz Euler
angles in the base frame, and the commanded gripper closure ``g`` (1 = closed). The measured
finger gap is ``info["gripper_gap_m"]``. Task subclasses live in :mod:`envs.tasks`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.env_config import EnvConfig, GoalConfig
from envs.ik import DlsIK
from envs.rotations import (
    apply_delta,
    delta_action,
    euler_xyz_from_matrix,
    matrix_from_euler_xyz,
    rotation_angle,
)
from envs.scene import ARM_JOINTS, FINGER_MAX_OPENING_M, OBJECT_SPECS, build_scene_xml, hsv_to_rgb

__all__ = ["ArmEnv"]

_STANDARD_HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


class ArmEnv(gym.Env):
    """Arm-on-a-table env; subclasses define the task (instances, goals, success, distance)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012
    task_name = "base"

    def __init__(
        self, render_mode: str | None = None, config: EnvConfig | None = None, **overrides
    ):
        try:
            self.cfg = dataclasses.replace(config or EnvConfig(), **overrides)
        except TypeError as err:
            raise ValueError(f"unknown EnvConfig field in {sorted(overrides)}: {err}") from err
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(self.cfg.scene_config()))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._site_id = m.site("ee").id
        self._arm_qadr = np.array([m.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._arm_act = np.array([m.actuator(f"act{i}").id for i in range(1, 8)])
        self._finger_qadr = np.array(
            [m.joint(f"{s}_finger_joint").qposadr[0] for s in ("left", "right")]
        )
        self._finger_act = np.array([m.actuator(f"{s}_finger_act").id for s in ("left", "right")])
        self._pad_geoms = (m.geom("left_pad").id, m.geom("right_pad").id)
        self._obj_qadr = {o: m.joint(f"{o}_free").qposadr[0] for o in self.cfg.objects}
        self._obj_dadr = {o: m.joint(f"{o}_free").dofadr[0] for o in self.cfg.objects}
        self._obj_geom = {o: m.geom(f"{o}_geom").id for o in self.cfg.objects}
        self.n_substeps = round(self.cfg.ctrl_dt_s / self.cfg.physics_dt_s)
        self.ik = DlsIK(m, "ee", ARM_JOINTS, _STANDARD_HOME_Q)
        self.home_q = self.ik.solve(
            _STANDARD_HOME_Q, np.array(self.cfg.home_ee_pos), np.eye(3)
        ).qpos
        self.ik.rest_qpos = self.home_q.copy()
        size = self.cfg.image_size
        self._renderer = mujoco.Renderer(m, size, size)
        self._cameras = (
            ("exterior", "wrist") if self.cfg.scene_config().wrist_camera else ("exterior",)
        )
        img = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        views = gym.spaces.Box(0, 255, (size, size * len(self.cfg.views), 3), np.uint8)
        state_high = np.array([2.0, 2.0, 2.0, np.pi, np.pi, np.pi, 1.0], dtype=np.float32)
        state_low = -state_high
        state_low[6] = 0.0
        spaces = {"rgb": views, "state": gym.spaces.Box(state_low, state_high, dtype=np.float32)}
        if self.cfg.wrist_camera:
            spaces["wrist_rgb"] = img
        self.observation_space = gym.spaces.Dict(spaces)
        p, r = self.cfg.max_delta_pos_m, self.cfg.max_delta_rot_rad
        bound = np.array([p, p, p, r, r, r, 1.0], dtype=np.float32)
        self.action_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        # The env contract (envs/contract.py): control rate, cameras with their own image,
        # what obs["rgb"] shows side by side, how an action moves the state.
        self.metadata = {
            **type(self).metadata,
            "render_fps": 1.0 / self.cfg.ctrl_dt_s,
            "cameras": ("exterior", "wrist") if self.cfg.wrist_camera else ("exterior",),
            "views": self.cfg.views,
            "action_kind": "ee_delta",
        }
        self.goal_sim_states: list[np.ndarray] = []
        self._goal_rgbs: list[np.ndarray] = []
        self.task_id: int | None = None
        self._target: np.ndarray | None = None

    # ----------------------------------------------------------------- state access
    @property
    def gripper_cmd(self) -> float:
        """Commanded gripper closure in [0, 1] (read back from the finger actuator ctrl)."""
        return float(1.0 - self.data.ctrl[self._finger_act[0]] / FINGER_MAX_OPENING_M)

    def gripper_gap_m(self) -> float:
        """Measured distance between the finger pads (m)."""
        return float(self.data.qpos[self._finger_qadr].sum())

    def ee_state(self) -> np.ndarray:
        """(7,) float64 proprioceptive state of the current sim."""
        site = self.data.site(self._site_id)
        euler = euler_xyz_from_matrix(site.xmat.reshape(3, 3))
        return np.concatenate([site.xpos, euler, [self.gripper_cmd]])

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and quaternion wxyz (4,) of an object."""
        adr = self._obj_qadr[name]
        return self.data.qpos[adr : adr + 3].copy(), self.data.qpos[adr + 3 : adr + 7].copy()

    def object_speed(self, name: str) -> float:
        """Linear speed (m/s) of an object."""
        adr = self._obj_dadr[name]
        return float(np.linalg.norm(self.data.qvel[adr : adr + 3]))

    def object_held(self, name: str) -> bool:
        """Both finger pads touch the object and the gripper is commanded closed."""
        if self.gripper_cmd < 0.5:
            return False
        geoms = self.data.contact.geom[: self.data.ncon]
        touching = geoms[np.any(geoms == self._obj_geom[name], axis=1)]
        return all(np.any(touching == pad) for pad in self._pad_geoms)

    def get_sim_state(self) -> np.ndarray:
        """Full integration state (qpos, qvel, ctrl incl. the gripper command, warmstart, time)."""
        state = np.empty(mujoco.mj_stateSize(self.model, _STATE_SPEC))
        mujoco.mj_getState(self.model, self.data, state, _STATE_SPEC)
        return state

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a state from :meth:`get_sim_state` (object colours are not part of it)."""
        state = np.asarray(state, dtype=np.float64)
        expected = mujoco.mj_stateSize(self.model, _STATE_SPEC)
        if state.shape != (expected,):
            raise ValueError(f"sim state must have shape ({expected},), got {state.shape}")
        mujoco.mj_setState(self.model, self.data, state, _STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)

    def render_rgb(self, camera: str = "exterior") -> np.ndarray:
        """(H, W, 3) uint8 image of the current sim from ``camera``."""
        if camera not in self._cameras:
            raise ValueError(f"camera must be one of {self._cameras}, got {camera!r}")
        self._renderer.update_scene(self.data, camera)
        return self._renderer.render().copy()

    def render_views(self) -> np.ndarray:
        """(H, V * W, 3): the cameras of ``cfg.views`` side by side (``obs["rgb"]``)."""
        images = [self.render_rgb(view) for view in self.cfg.views]
        return images[0] if len(images) == 1 else np.concatenate(images, axis=1)

    def render(self) -> np.ndarray | None:
        return self.render_views() if self.render_mode == "rgb_array" else None

    # ----------------------------------------------------------------- configurations
    def place_config(self, cfg: GoalConfig) -> None:
        """Kinematically put the scene into ``cfg`` (zero velocities, ctrl = pose), then forward."""
        q0 = self.data.qpos[self._arm_qadr].copy()
        q = self.ik.solve(q0, np.asarray(cfg.ee_pos), matrix_from_euler_xyz(cfg.ee_euler)).qpos
        self.data.qvel[:] = 0.0
        self.data.qpos[self._arm_qadr] = q
        self.data.ctrl[self._arm_act] = q
        self.data.ctrl[self._finger_act] = FINGER_MAX_OPENING_M * (1.0 - cfg.gripper)
        self.data.qpos[self._finger_qadr] = FINGER_MAX_OPENING_M * (1.0 - cfg.gripper)
        for name, (pos, quat) in cfg.object_poses.items():
            adr = self._obj_qadr[name]
            self.data.qpos[adr : adr + 3] = pos
            self.data.qpos[adr + 3 : adr + 7] = quat
        if cfg.held_object is not None:
            mujoco.mj_kinematics(self.model, self.data)
            site = self.data.site(self._site_id)
            half_width = OBJECT_SPECS[cfg.held_object][1][0]  # cube half side / cup radius
            self.data.qpos[self._finger_qadr] = half_width - 0.0004
            yaw = euler_xyz_from_matrix(site.xmat.reshape(3, 3))[2]
            adr = self._obj_qadr[cfg.held_object]
            self.data.qpos[adr : adr + 3] = site.xpos + np.array([0.0, 0.0, cfg.held_offset_z_m])
            self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def _render_goals(self, goals: list[GoalConfig]) -> None:
        saved = self.get_sim_state()
        self.goal_sim_states, self._goal_rgbs = [], []
        for goal in goals:
            self.place_config(goal)
            self.goal_sim_states.append(self.get_sim_state())
            self._goal_rgbs.append(self.render_views())
            self.set_sim_state(saved)

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        self.task_id = options.get("task_id")
        if self.task_id is None:
            rng = self.np_random
        else:
            k = int(self.task_id)
            if not 0 <= k < self.cfg.num_eval_instances:
                raise ValueError(f"task_id must be in [0, {self.cfg.num_eval_instances}), got {k}")
            rng = np.random.default_rng([zlib.crc32(self.task_name.encode()), k])
        mujoco.mj_resetData(self.model, self.data)
        for name in self.cfg.objects:
            hsv_value = rng.uniform([0.0, 0.55, 0.55], [1.0, 1.0, 0.95])
            self.model.geom_rgba[self._obj_geom[name], :3] = hsv_to_rgb(hsv_value)
        start, goals = self._sample_episode(rng)
        self.data.qpos[self._arm_qadr] = self.home_q
        self.place_config(start)
        mujoco.mj_step(
            self.model, self.data, nstep=round(self.cfg.settle_s / self.cfg.physics_dt_s)
        )
        self._render_goals(goals)
        self._target = None
        return self._observation(), self._info(np.zeros(7))

    def step(self, action):
        applied = self.simulate(action)
        obs = self._observation()
        info = self._info(applied)
        return obs, -float(info["task_distance"]), False, False, info

    def simulate(self, action) -> np.ndarray:
        """Apply one action and run the physics of one control step; no rendering, no info.

        The control part of :meth:`step`, for planners that use the simulator as dynamics
        (the oracle). Returns the (7,) action really commanded after clipping.
        """
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be a finite (7,) array, got {action!r}")
        cur = self.ee_state()
        clipped = np.clip(action, self.action_space.low, self.action_space.high)
        target = apply_delta(self._anchor(cur), clipped)
        target[:3] = np.clip(target[:3], self.cfg.workspace_low, self.cfg.workspace_high)
        tilt, yaw = self.cfg.max_tilt_rad, self.cfg.max_yaw_rad
        target[3:6] = np.clip(target[3:6], [-tilt, -tilt, -yaw], [tilt, tilt, yaw])
        applied = delta_action(cur, target)
        q0 = self.data.ctrl[self._arm_act].copy()
        q1 = self.ik.solve(q0, target[:3], matrix_from_euler_xyz(target[3:6])).qpos
        self._target = target
        f0 = self.data.ctrl[self._finger_act[0]]
        self._track(q0, q1, f0, FINGER_MAX_OPENING_M * (1.0 - target[6]))
        return applied

    def _anchor(self, cur: np.ndarray) -> np.ndarray:
        """Pose the action is applied to: the last target while the arm tracks it (within
        1 cm / 0.05 rad, so a load cannot make the arm creep), else the measured state."""
        if self._target is None:
            return cur
        close = (
            np.linalg.norm(cur[:3] - self._target[:3]) < 0.01
            and rotation_angle(
                matrix_from_euler_xyz(cur[3:6]), matrix_from_euler_xyz(self._target[3:6])
            )
            < 0.05
        )
        return np.concatenate([self._target[:6], cur[6:]]) if close else cur

    def _track(self, q0: np.ndarray, q1: np.ndarray, f0: float, f1: float, chunk: int = 5) -> None:
        """Run the substeps of one control step: arm ctrl follows a smoothstep from q0 to q1 over
        70 % of the step, finger ctrl a linear ramp from f0 to f1 over 40 %."""
        n_move, n_grip = int(0.7 * self.n_substeps), max(1, int(0.4 * self.n_substeps))
        done = 0
        while done < self.n_substeps:
            n = min(chunk, self.n_substeps - done) if done < n_move else self.n_substeps - done
            s = min(1.0, (done + n) / n_move)
            self.data.ctrl[self._arm_act] = q0 + (3 * s**2 - 2 * s**3) * (q1 - q0)
            self.data.ctrl[self._finger_act] = f0 + min(1.0, (done + n) / n_grip) * (f1 - f0)
            mujoco.mj_step(self.model, self.data, nstep=n)
            done += n

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {"rgb": self.render_views(), "state": self.ee_state().astype(np.float32)}
        if self.cfg.wrist_camera:
            obs["wrist_rgb"] = self.render_rgb("wrist")
        return obs

    def _info(self, applied: np.ndarray) -> dict[str, Any]:
        info = {
            "task": self.task_name,
            "task_id": self.task_id,
            "applied_action": applied.astype(np.float32),
            "ee_state": self.ee_state(),
            "gripper_gap_m": self.gripper_gap_m(),
            "goal_rgb": self._goal_rgbs[-1].copy(),
            "subgoal_rgbs": [rgb.copy() for rgb in self._goal_rgbs],
            "is_success": bool(self._is_success()),
            "task_distance": self.task_distance(),
        }
        info.update(self._task_info())
        return info

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None

    # ----------------------------------------------------------------- task hooks
    def _sample_episode(self, rng: np.random.Generator) -> tuple[GoalConfig, list[GoalConfig]]:
        """Start configuration and goal configurations (sub-goals first, final goal last)."""
        raise NotImplementedError

    def _is_success(self) -> bool:
        raise NotImplementedError

    def task_distance(self) -> float:
        """Privileged distance to the goal (m-like units), the oracle planner's cost."""
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        return {}
