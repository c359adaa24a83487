"""ImportConfig: the typed, validated settings of ``wm-import`` (``configs/import.yaml`` only
overrides these defaults, the command line overrides both)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from worldmodel.data.meta import ACTION_KINDS, IMAGE_POLICIES
from worldmodel.data.video import check_decodable_width

FORMATS = ("auto", "lerobot", "droid")
ACTION_MODES = ("", "as_recorded", "ee_delta_from_state")
# How an end-effector pose state stores its orientation (ee_delta_from_state reads it):
# euler_xyz [x y z roll pitch yaw g] (DROID), rotvec [x y z wx wy wz g] (LeRobot's ee.* names),
# quaternions [x y z q q q q g] in either order.
STATE_ROTATIONS = ("euler_xyz", "rotvec", "quat_xyzw", "quat_wxyz")
ON_ERROR = ("skip", "raise")
_VIEW_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_RANGE = re.compile(r"^\s*(\d*)\s*(?::\s*(\d*)\s*)?$")


def flatten_cameras(raw: Mapping | str | None) -> dict[str, str]:
    """``cameras`` as {source key: view name}.

    Accepts a mapping (Hydra splits dotted keys such as ``observation.images.front`` into nested
    mappings; they are joined back with dots) or a string ``"key=view,key2=view2"``.
    """
    if not raw:
        return {}
    if isinstance(raw, str):
        out = {}
        for item in raw.split(","):
            key, sep, view = item.partition("=")
            if not sep or not key.strip() or not view.strip():
                raise ValueError(
                    f"ImportConfig.cameras: {item!r} is not 'source_key=view_name' "
                    "(e.g. cameras=observation.images.front=front,observation.images.wrist=wrist)"
                )
            out[key.strip()] = view.strip()
        return out
    out: dict[str, str] = {}

    def walk(prefix: str, node: Mapping) -> None:
        for key, value in node.items():
            full = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                walk(full, value)
            else:
                out[full] = str(value)

    walk("", raw)
    return out


def parse_range(text: str) -> tuple[int, int | None]:
    """``"a:b"`` -> (a, b) half-open, ``"a:"`` / ``":b"`` open ends, ``"a"`` -> (a, a+1),
    ``""`` -> (0, None): all."""
    match = _RANGE.match(text or "")
    if not match:
        raise ValueError(
            f"ImportConfig.episodes must look like '0:20', '5:', ':10' or '3', got {text!r}"
        )
    lo_s, hi_s = match.group(1), match.group(2)
    lo = int(lo_s) if lo_s else 0
    if ":" not in (text or ""):
        return (lo, lo + 1) if lo_s else (0, None)
    return lo, int(hi_s) if hi_s else None


@dataclass(frozen=True)
class ImportConfig:
    """Settings of ``wm-import src=<folder> out_dir=<episodes folder>``.

    Attributes:
        src: the source folder: a LeRobot dataset root (``meta/info.json``) or a folder tree of
            DROID raw episodes (``.../trajectory.h5`` with ``recordings/MP4/*.mp4``).
        out_dir: the episode dataset to write (see :mod:`worldmodel.data.episodes`).
        format: ``auto`` (detect), ``lerobot`` or ``droid``.
        cameras: source camera key -> our view name; empty = every camera, named by the last
            dot-separated part of its key (``observation.images.front`` -> ``front``). DROID keys
            are ``left``, ``right``, ``wrist``, ``ext1``, ``ext2`` (default: left, right, wrist).
        state_key, action_key: the columns (LeRobot) or trajectory.h5 datasets (DROID) holding
            state and action; ``a+b`` concatenates, ``a[0:3]`` / ``a[6]`` slice. Empty: LeRobot
            ``observation.state`` / ``action``; DROID ``cartesian_position+gripper_position``
            (under ``observation/robot_state`` and ``action``).
        action_mode: ``as_recorded`` (keep the recorded action column) or
            ``ee_delta_from_state`` (derive the 7-D DROID / V-JEPA 2-AC end-effector delta from an
            absolute pose state). Empty: LeRobot ``as_recorded``, DROID ``ee_delta_from_state``.
        action_kind: what a recorded action means, for ``as_recorded``: ``absolute`` (default:
            commanded next state, e.g. joint targets), ``delta`` (next state ~ state + action) or
            ``ee_delta`` (already our 7-D end-effector delta). ``ee_delta_from_state`` implies
            ``ee_delta``.
        state_rotation: how the pose state stores orientation when the result is ``ee_delta``
            (the state is converted to ``[x y z roll pitch yaw gripper]``): ``euler_xyz``,
            ``rotvec``, ``quat_xyzw`` or ``quat_wxyz``.
        state_names, action_names: names of the stored dims (empty: from the source's feature
            names, else ``<column>_<i>``; the 7-D end-effector names for ``ee_delta``).
        fps: target control rate (0 = the source rate). A source rate that is an integer multiple
            keeps every k-th row (stride); otherwise the row nearest each target time is kept.
            Recorded actions in between are composed (see ``docs/own-robot.md``).
        source_fps: override the source rate (0: LeRobot ``info.json`` fps; DROID: the video's).
        episodes: source episode range ``a:b`` (LeRobot episode_index; DROID: position in the
            sorted folder scan); also the output episode indices.
        image_size: side of the square frames written; image_policy: ``crop`` / ``pad`` /
            ``resize`` (see :func:`worldmodel.data.images.fit_frames`).
        timestamp_tolerance_s: how far a video frame's time may be from its table row's timestamp
            (0 = a quarter of the source frame period).
        on_error: an episode with bad data (NaN rows, missing frames, an unreadable file):
            ``skip`` it and list it in the summary, or ``raise``.
        overwrite: replace an earlier wm-import output in ``out_dir`` (only folders wm-import
            wrote are touched).
        progress: show a tqdm progress bar.
    """

    src: str = ""
    out_dir: str = ""
    format: str = "auto"
    cameras: Mapping[str, str] = field(default_factory=dict)
    state_key: str = ""
    action_key: str = ""
    action_mode: str = ""
    action_kind: str = ""
    state_rotation: str = "euler_xyz"
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    fps: float = 0.0
    source_fps: float = 0.0
    episodes: str = ""
    image_size: int = 256
    image_policy: str = "crop"
    timestamp_tolerance_s: float = 0.0
    on_error: str = "skip"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.src or not self.out_dir:
            raise ValueError("ImportConfig.src and ImportConfig.out_dir must be set")
        object.__setattr__(self, "cameras", flatten_cameras(self.cameras))
        views = list(self.cameras.values())
        bad = [v for v in views if not _VIEW_NAME.match(v)]
        if bad or len(set(views)) != len(views):
            raise ValueError(
                f"ImportConfig.cameras: view names must be unique and made of letters, digits, "
                f"'_' or '-', got {views}"
            )
        checks = (
            ("format", self.format, FORMATS),
            ("action_mode", self.action_mode, ACTION_MODES),
            ("action_kind", self.action_kind, ("", *ACTION_KINDS)),
            ("state_rotation", self.state_rotation, STATE_ROTATIONS),
            ("image_policy", self.image_policy, IMAGE_POLICIES),
            ("on_error", self.on_error, ON_ERROR),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(
                    f"ImportConfig.{name} must be one of {list(allowed)}, got {value!r}"
                )
        if self.action_mode == "ee_delta_from_state" and self.action_kind not in ("", "ee_delta"):
            raise ValueError(
                "ImportConfig.action_kind: ee_delta_from_state derives 'ee_delta' actions, got "
                f"{self.action_kind!r}"
            )
        for name in ("fps", "source_fps", "timestamp_tolerance_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"ImportConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"ImportConfig.image_size must be >= 16, got {self.image_size}")
        try:
            check_decodable_width(self.image_size)
        except ValueError as exc:
            raise ValueError(f"ImportConfig.image_size: {exc}") from exc
        parse_range(self.episodes)
        object.__setattr__(self, "state_names", tuple(self.state_names))
        object.__setattr__(self, "action_names", tuple(self.action_names))

    @property
    def episode_range(self) -> tuple[int, int | None]:
        return parse_range(self.episodes)
