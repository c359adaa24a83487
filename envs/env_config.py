"""Typed configuration of the arm envs and of scene configurations (start / goal poses)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.scene import OBJECT_SPECS, SceneConfig
from worldmodel.data.actions import MAX_STEP_ROTATION_RAD, MAX_STEP_TRANSLATION_M

__all__ = ["CAMERAS", "EnvConfig", "GoalConfig"]

CAMERAS = frozenset({"exterior", "wrist"})


@dataclass(frozen=True)
class EnvConfig:
    """Every knob of the arm envs; ``gymnasium.make(id, **fields)`` overrides any of them.

    Attributes:
        image_size: square render size (px) of every camera.
        wrist_camera: also render ``obs["wrist_rgb"]``.
        views: cameras that ``obs["rgb"]`` and the goal images show side by side, each
            ``image_size`` square, in this order: ``("exterior",)`` (default) or
            ``("exterior", "wrist")`` for world models trained on both (``worldmodel.models.views``).
        high_fidelity: shadows, second light, textured table (slower rendering).
        camera_pos, camera_lookat, camera_fovy_deg: exterior camera pose (base frame, m) and FOV.
        objects: objects on the table (subset of ``envs.scene.OBJECT_SPECS``).
        ctrl_dt_s: control period (one action per step).
        physics_dt_s: MuJoCo timestep.
        max_delta_pos_m, max_delta_rot_rad: per-step action bounds (gripper bound is 1).
        workspace_low, workspace_high: box the end-effector target is clipped to (m).
        max_tilt_rad: |roll|, |pitch| limit of the target orientation.
        max_yaw_rad: |yaw| limit of the target orientation.
        home_ee_pos: end-effector position of the rest posture (pointing down).
        num_eval_instances: valid ``options["task_id"]`` are ``0 .. num_eval_instances - 1``.
        settle_s: physics time simulated after placing the start configuration.
        approach_subgoals: grasp and pick_place put two approach images before their published
            sub-goals: hover 8 cm above the object, then at the object, gripper open. Without
            them a greedy planner matches the closed gripper of the grasped image long before
            it reaches the object. False: the published schedule (pick_place: grasped,
            carried, placed; grasp: the goal alone).
    """

    image_size: int = 64
    wrist_camera: bool = False
    views: tuple[str, ...] = ("exterior",)
    high_fidelity: bool = False
    camera_pos: tuple[float, float, float] = (1.1, -0.45, 0.42)
    camera_lookat: tuple[float, float, float] = (0.5, 0.0, 0.21)
    camera_fovy_deg: float = 50.0
    objects: tuple[str, ...] = ("cube", "cup")
    ctrl_dt_s: float = 0.25
    physics_dt_s: float = 0.002
    max_delta_pos_m: float = MAX_STEP_TRANSLATION_M
    max_delta_rot_rad: float = MAX_STEP_ROTATION_RAD
    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.02)
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.5)
    max_tilt_rad: float = 0.5
    max_yaw_rad: float = 1.2
    home_ee_pos: tuple[float, float, float] = (0.45, 0.0, 0.3)
    num_eval_instances: int = 50
    settle_s: float = 0.2
    approach_subgoals: bool = True

    def __post_init__(self) -> None:
        for name in (
            "camera_pos",
            "camera_lookat",
            "workspace_low",
            "workspace_high",
            "home_ee_pos",
        ):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"EnvConfig.{name} must have 3 entries, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "objects", tuple(self.objects))
        views = (self.views,) if isinstance(self.views, str) else tuple(self.views)
        object.__setattr__(self, "views", views)
        if not views or len(set(views)) != len(views) or not set(views) <= CAMERAS:
            raise ValueError(
                f"EnvConfig.views must be distinct names out of {sorted(CAMERAS)}, got {views}"
            )
        if not 16 <= self.image_size <= 2048:
            raise ValueError(f"EnvConfig.image_size must be in [16, 2048], got {self.image_size}")
        if not self.physics_dt_s < self.ctrl_dt_s <= 2.0:
            raise ValueError(
                f"need physics_dt_s < ctrl_dt_s <= 2, got {self.physics_dt_s}, {self.ctrl_dt_s}"
            )
        if self.max_delta_pos_m <= 0 or self.max_delta_rot_rad <= 0:
            raise ValueError("EnvConfig.max_delta_pos_m and max_delta_rot_rad must be > 0")
        if not np.all(np.array(self.workspace_low) < np.array(self.workspace_high)):
            raise ValueError(f"workspace_low {self.workspace_low} must be below workspace_high")
        if not 0 < self.max_tilt_rad < np.pi / 2 or not 0 < self.max_yaw_rad < np.pi:
            raise ValueError("EnvConfig.max_tilt_rad must be in (0, pi/2), max_yaw_rad in (0, pi)")
        if self.num_eval_instances < 1 or self.settle_s < 0:
            raise ValueError("EnvConfig.num_eval_instances must be >= 1 and settle_s >= 0")
        self.scene_config()  # validates objects, camera and timestep

    def scene_config(self) -> SceneConfig:
        """The MJCF-level part of this config."""
        return SceneConfig(
            objects=self.objects,
            physics_dt_s=self.physics_dt_s,
            camera_pos=self.camera_pos,
            camera_lookat=self.camera_lookat,
            camera_fovy_deg=self.camera_fovy_deg,
            wrist_camera=self.wrist_camera or "wrist" in self.views,
            high_fidelity=self.high_fidelity,
            max_image_size=max(256, self.image_size),
        )


@dataclass(frozen=True)
class GoalConfig:
    """A kinematic scene configuration (start or goal) the env can place and render.

    Attributes:
        ee_pos: (3,) end-effector target position (reached by IK).
        ee_euler: (3,) end-effector target orientation (extrinsic xyz).
        gripper: commanded closure in [0, 1].
        object_poses: name -> (pos (3,), quat wxyz (4,)) for objects to move.
        held_object: object put between the finger pads (overrides its pose, fingers touch it).
        held_offset_z_m: height of the held object's origin above the end-effector site.
    """

    ee_pos: tuple[float, float, float]
    ee_euler: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gripper: float = 0.0
    object_poses: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    held_object: str | None = None
    held_offset_z_m: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gripper <= 1.0:
            raise ValueError(f"GoalConfig.gripper must be in [0, 1], got {self.gripper}")
        if self.held_object is not None and self.held_object not in OBJECT_SPECS:
            raise ValueError(f"GoalConfig.held_object {self.held_object!r} is not a known object")
