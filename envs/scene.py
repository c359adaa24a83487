"""MJCF scene: a 7-DoF arm with the Franka Panda's public kinematics, a parallel gripper, a table,
a cube and a cup, an exterior camera and an optional wrist camera.

The world frame is the robot base frame (table top at z = 0, the arm faces +x). Link offsets
follow the published Panda modified-DH table (Craig convention, frame i-1 -> i is
``RotX(alpha) TransX(a) RotZ(q) TransZ(d)``); geometry is low-poly capsules and boxes.

The end-effector site ``ee`` sits at the tool centre point (0.1034 m past the hand flange,
between the finger pads). Its frame is chosen so that the gripper pointing straight down with
the fingers closing along the world y axis has orientation identity (Euler ``[0, 0, 0]``): x is
world +x, z points *up* away from the fingertips. This keeps the nominal orientation away from
the roll = +-pi wrap of the Euler state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARM_JOINTS",
    "FINGER_MAX_OPENING_M",
    "OBJECT_SPECS",
    "SceneConfig",
    "build_scene_xml",
    "camera_xyaxes",
    "hsv_to_rgb",
]

# Published Panda modified-DH parameters: (a, d, alpha) for joints 1..7 and the flange.
_PANDA_DH = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
)
_FLANGE_D_M = 0.107
_TCP_OFFSET_M = 0.1034
_FINGER_BASE_M = 0.0584
_JOINT_LIMITS = (
    (-2.8973, 2.8973),
    (-1.7628, 1.7628),
    (-2.8973, 2.8973),
    (-3.0718, -0.0698),
    (-2.8973, 2.8973),
    (-0.0175, 3.7525),
    (-2.8973, 2.8973),
)
_LINK_MASS_KG = (2.0, 2.0, 1.5, 1.5, 1.2, 1.0, 0.5)
_ACT_KP = (4000.0, 4000.0, 3000.0, 3000.0, 1500.0, 1200.0, 800.0)
_ACT_FORCE = (150.0, 150.0, 150.0, 150.0, 60.0, 60.0, 60.0)
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_MAX_OPENING_M = 0.04  # per finger; the gap between pads is twice this
# name -> (geom type, size, mass kg, rest height of the body origin above the table)
OBJECT_SPECS = {
    "cube": ("box", (0.0225, 0.0225, 0.0225), 0.06, 0.0225),
    "cup": ("cylinder", (0.026, 0.035, 0.0), 0.08, 0.035),
}


@dataclass(frozen=True)
class SceneConfig:
    """What the generated MJCF contains.

    Attributes:
        objects: names from OBJECT_SPECS present on the table.
        physics_dt_s: simulation timestep.
        camera_pos: exterior camera position (m, base frame).
        camera_lookat: point the exterior camera looks at (m, base frame).
        camera_fovy_deg: vertical field of view of both cameras.
        wrist_camera: add the ``wrist`` camera on the hand.
        high_fidelity: shadows, two lights, textured table; slower to render.
        max_image_size: largest render size (sets the offscreen buffer).
    """

    objects: tuple[str, ...] = ("cube", "cup")
    physics_dt_s: float = 0.002
    camera_pos: tuple[float, float, float] = (1.1, -0.45, 0.42)
    camera_lookat: tuple[float, float, float] = (0.5, 0.0, 0.21)
    camera_fovy_deg: float = 50.0
    wrist_camera: bool = False
    high_fidelity: bool = False
    max_image_size: int = 256

    def __post_init__(self) -> None:
        unknown = [o for o in self.objects if o not in OBJECT_SPECS]
        if unknown or not self.objects or len(set(self.objects)) != len(self.objects):
            raise ValueError(
                f"objects must be distinct names from {list(OBJECT_SPECS)}, got {self.objects}"
            )
        if not 0.0005 <= self.physics_dt_s <= 0.01:
            raise ValueError(f"physics_dt_s must be in [0.0005, 0.01], got {self.physics_dt_s}")
        if not 10.0 <= self.camera_fovy_deg <= 120.0:
            raise ValueError(f"camera_fovy_deg must be in [10, 120], got {self.camera_fovy_deg}")
        if np.allclose(self.camera_pos, self.camera_lookat):
            raise ValueError("camera_pos and camera_lookat must differ")
        if not 16 <= self.max_image_size <= 4096:
            raise ValueError(f"max_image_size must be in [16, 4096], got {self.max_image_size}")


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """RGB (3,) in [0, 1] of an HSV triple in [0, 1]."""
    h, s, v = hsv
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def camera_xyaxes(pos, lookat, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """MuJoCo ``xyaxes`` (6,) of a camera at ``pos`` looking at ``lookat`` (x right, y up)."""
    forward = np.asarray(lookat, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, float))
    if np.linalg.norm(right) < 1e-6:
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    return np.concatenate([right, np.cross(right, forward)])


def _arm_xml(wrist_camera: bool) -> str:
    """Nested bodies link1..link7 -> hand -> fingers, closed with matching end tags."""
    parts, closing = [], []
    for i, (a, d, alpha) in enumerate(_PANDA_DH, start=1):
        pos = (a, -np.sin(alpha) * d, np.cos(alpha) * d)
        quat = (np.cos(alpha / 2), np.sin(alpha / 2), 0.0, 0.0)
        nxt = _PANDA_DH[i] if i < 7 else (0.0, _FLANGE_D_M, 0.0)
        child = (nxt[0], -np.sin(nxt[2]) * nxt[1], np.cos(nxt[2]) * nxt[1])
        lo, hi = _JOINT_LIMITS[i - 1]
        parts.append(
            f'<body name="link{i}" pos="{_fmt(pos)}" quat="{_fmt(quat)}" gravcomp="1">'
            f'<joint name="joint{i}" range="{lo} {hi}" class="arm"/>'
            f'<geom type="cylinder" size="0.055 0.06" mass="{_LINK_MASS_KG[i - 1] / 2}" class="link"/>'
        )
        if np.linalg.norm(child) > 1e-6:
            parts.append(
                f'<geom type="capsule" fromto="0 0 0 {_fmt(child)}" size="0.05" '
                f'mass="{_LINK_MASS_KG[i - 1] / 2}" class="link"/>'
            )
        closing.append("</body>")
    wrist = ""
    if wrist_camera:
        xy = camera_xyaxes((0.09, 0.0, 0.02), (0.0, 0.0, 0.16), up=(1.0, 0.0, 0.0))
        wrist = f'<camera name="wrist" pos="0.09 0 0.02" xyaxes="{_fmt(xy)}" fovy="75"/>'
    pad_z = _TCP_OFFSET_M + 0.01 - 0.02 - _FINGER_BASE_M
    fingers = "".join(
        f'<body name="{side}_finger" pos="0 0 {_FINGER_BASE_M}" gravcomp="1">'
        f'<joint name="{side}_finger_joint" type="slide" axis="0 {sign} 0" class="finger"/>'
        f'<geom type="box" pos="0 {sign * 0.012} 0.012" size="0.01 0.008 0.016" mass="0.02" '
        f'class="finger_body"/>'
        f'<geom name="{side}_pad" type="box" pos="0 {sign * 0.004} {pad_z:.5f}" '
        f'size="0.011 0.004 0.02" mass="0.01" class="pad"/>'
        "</body>"
        for side, sign in (("left", 1), ("right", -1))
    )
    # Site frame: identity when the hand points down with fingers closing along world y.
    hand = (
        f'<body name="hand" pos="0 0 {_FLANGE_D_M}" quat="0.92388 0 0 -0.382683" gravcomp="1">'
        '<geom type="box" pos="0 0 0.03" size="0.025 0.1 0.028" mass="0.7" class="hand"/>'
        '<geom type="cylinder" pos="0 0 -0.01" size="0.045 0.012" mass="0.1" class="link"/>'
        f'<site name="ee" pos="0 0 {_TCP_OFFSET_M}" quat="0 1 0 0" size="0.006" rgba="1 0 0 0"/>'
        f"{wrist}{fingers}</body>"
    )
    return "".join(parts) + hand + "".join(closing)


def _object_xml(name: str) -> str:
    gtype, size, mass, _ = OBJECT_SPECS[name]
    extra = ""
    if name == "cup":  # dark inner disk so the cylinder reads as an open cup
        extra = (
            f'<geom name="cup_inner" type="cylinder" pos="0 0 {size[1]}" size="{size[0] * 0.82} 0.0012" '
            'rgba="0.08 0.08 0.08 1" contype="0" conaffinity="0" mass="0"/>'
        )
    return (
        f'<body name="{name}" pos="0.5 0 0.1"><freejoint name="{name}_free"/>'
        f'<geom name="{name}_geom" type="{gtype}" size="{_fmt(size[:2] if gtype == "cylinder" else size)}" '
        f'mass="{mass}" class="object"/>{extra}</body>'
    )


def build_scene_xml(cfg: SceneConfig) -> str:
    """The MJCF string of the scene described by ``cfg``."""
    shadow = "true" if cfg.high_fidelity else "false"
    shadowsize = 2048 if cfg.high_fidelity else 0
    # low-poly tessellation by default (about 4x faster software rendering); MuJoCo's defaults
    # (28 slices, 16 stacks, 4 quads) in high-fidelity mode.
    slices, stacks, quads = (28, 16, 4) if cfg.high_fidelity else (10, 4, 1)
    buf = max(640, cfg.max_image_size)
    cam_xy = camera_xyaxes(cfg.camera_pos, cfg.camera_lookat)
    table_mat = 'material="table_mat"' if cfg.high_fidelity else 'rgba="0.72 0.6 0.45 1"'
    extra_light = (
        '<light pos="0.6 0.8 1.6" dir="-0.2 -0.5 -1" diffuse="0.35 0.35 0.35" castshadow="true"/>'
        if cfg.high_fidelity
        else ""
    )
    objects = "".join(_object_xml(o) for o in cfg.objects)
    return f"""<mujoco model="wm_panda_table">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.physics_dt_s}" integrator="implicitfast" cone="elliptic" impratio="10">
    <flag multiccd="enable"/>
  </option>
  <visual>
    <global offwidth="{buf}" offheight="{buf}"/>
    <quality shadowsize="{shadowsize}" numslices="{slices}" numstacks="{stacks}" numquads="{quads}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.05 0.05 0.05"/>
  </visual>
  <asset>
    <texture name="table_tex" type="2d" builtin="checker" rgb1="0.75 0.62 0.46"
      rgb2="0.68 0.56 0.41" width="256" height="256"/>
    <material name="table_mat" texture="table_tex" texrepeat="8 8" reflectance="0.05"/>
  </asset>
  <default>
    <default class="arm">
      <joint damping="2" armature="0.1" frictionloss="0.1"/>
    </default>
    <default class="link">
      <geom contype="0" conaffinity="0" rgba="0.92 0.92 0.94 1" group="1"/>
    </default>
    <default class="hand">
      <geom contype="1" conaffinity="1" rgba="0.25 0.25 0.28 1" condim="3" friction="1 0.005 0.0001"/>
    </default>
    <default class="finger">
      <joint range="0 {FINGER_MAX_OPENING_M}" damping="3" armature="0.05"/>
    </default>
    <default class="finger_body">
      <geom contype="1" conaffinity="1" rgba="0.3 0.3 0.33 1" condim="3"/>
    </default>
    <default class="pad">
      <geom contype="1" conaffinity="1" rgba="0.12 0.12 0.12 1" condim="4" friction="2 0.02 0.0001"
        solref="0.005 1" solimp="0.95 0.99 0.001"/>
    </default>
    <default class="object">
      <geom contype="1" conaffinity="1" condim="4" friction="1.5 0.01 0.0001" solref="0.005 1"
        solimp="0.95 0.99 0.001"/>
    </default>
  </default>
  <worldbody>
    <light name="key" pos="0.8 -0.4 1.8" dir="-0.3 0.2 -1" diffuse="0.6 0.6 0.6" castshadow="{shadow}"/>
    {extra_light}
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.3 0.32 0.35 1"
      contype="0" conaffinity="0"/>
    <geom name="table" type="box" pos="0.45 0 -0.02" size="0.75 0.75 0.02" {table_mat}
      contype="1" conaffinity="1" condim="3" friction="0.6 0.005 0.0001" priority="1"/>
    <geom name="base" type="cylinder" pos="0 0 0.06" size="0.08 0.06" rgba="0.92 0.92 0.94 1"
      contype="0" conaffinity="0"/>
    <geom name="link0" type="capsule" fromto="0 0 0.1 0 0 0.27" size="0.06"
      rgba="0.92 0.92 0.94 1" contype="0" conaffinity="0"/>
    <camera name="exterior" pos="{_fmt(cfg.camera_pos)}" xyaxes="{_fmt(cam_xy)}"
      fovy="{cfg.camera_fovy_deg}"/>
    {_arm_xml(cfg.wrist_camera)}
    {objects}
  </worldbody>
  <contact>
    <exclude body1="left_finger" body2="right_finger"/>
  </contact>
  <actuator>
    {"".join(f'<position name="act{i + 1}" joint="joint{i + 1}" kp="{_ACT_KP[i]}" dampratio="1" forcerange="-{_ACT_FORCE[i]} {_ACT_FORCE[i]}" ctrlrange="{_JOINT_LIMITS[i][0]} {_JOINT_LIMITS[i][1]}"/>' for i in range(7))}
    <position name="left_finger_act" joint="left_finger_joint" kp="800" dampratio="1"
      forcerange="-30 30" ctrlrange="0 {FINGER_MAX_OPENING_M}"/>
    <position name="right_finger_act" joint="right_finger_joint" kp="800" dampratio="1"
      forcerange="-30 30" ctrlrange="0 {FINGER_MAX_OPENING_M}"/>
  </actuator>
</mujoco>
"""
