"""Dataset-level metadata (``meta.json``) of an episode dataset: typed, validated, versioned.

See :mod:`worldmodel.data.episodes` for the full on-disk format.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worldmodel.errors import DatasetError

FORMAT_NAME = "wm-episodes"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
META_FILE = "meta.json"

ACTION_CONVENTION = (
    "7-D end-effector delta in the robot base (world) frame: [dx, dy, dz] in metres, "
    "[droll, dpitch, dyaw] in radians = extrinsic xyz Euler angles of R_next @ R_cur.T, "
    "dgripper (gripper target = clip(g + dg, 0, 1)). action[t] is the action actually applied "
    "(after clipping to the action bounds) at frame t and leads to frame t+1; the last row is "
    "zero with action_valid False."
)
STATE_CONVENTION = (
    "7-D end-effector state in the robot base (world) frame: [x, y, z] in metres, "
    "[roll, pitch, yaw] in radians = extrinsic xyz Euler angles of the EE orientation "
    "(R = Rz(yaw) Ry(pitch) Rx(roll)), gripper in [0, 1] with 1 = closed. state[t] is measured "
    "at frame t."
)
CAMERA_CONVENTION = (
    "MuJoCo camera convention: the camera looks along its local -z axis with +y up. pos_m and "
    "quat_wxyz give the camera pose in the frame of `parent` ('world' or the MuJoCo body it is "
    "mounted on). fovy_deg is the vertical field of view; pixels are square, the principal point "
    "is the image centre, so fy = fx = (height / 2) / tan(fovy / 2)."
)


@dataclass(frozen=True)
class CameraMeta:
    """One camera of the dataset: image size, intrinsics (vertical fov) and mounting pose."""

    name: str
    width: int
    height: int
    fovy_deg: float
    parent: str = "world"
    pos_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat_wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"camera name must be a non-empty file stem, got {self.name!r}")
        if self.width < 1 or self.height < 1:
            raise ValueError(
                f"camera {self.name}: width/height must be >= 1, got {self.width}x{self.height}"
            )
        if not 0.0 < self.fovy_deg < 180.0:
            raise ValueError(
                f"camera {self.name}: fovy_deg must be in (0, 180), got {self.fovy_deg}"
            )
        if len(self.pos_m) != 3 or len(self.quat_wxyz) != 4:
            raise ValueError(f"camera {self.name}: pos_m needs 3 and quat_wxyz 4 numbers")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (same for x and y)."""
        return 0.5 * self.height / math.tan(math.radians(self.fovy_deg) / 2.0)

    def intrinsics(self) -> list[list[float]]:
        """3x3 pinhole matrix K (row-major) with the principal point at the image centre."""
        f = self.focal_px
        return [[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]]


@dataclass(frozen=True)
class VideoSpec:
    """How the mp4 files are encoded (libx264 via imageio-ffmpeg)."""

    codec: str = "libx264"
    pix_fmt: str = "yuv444p"
    crf: int = 10
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.pix_fmt not in ("yuv444p", "yuv420p"):
            raise ValueError(f"pix_fmt must be yuv444p or yuv420p, got {self.pix_fmt!r}")


@dataclass(frozen=True)
class DatasetMeta:
    """Everything in ``meta.json``: what is needed to interpret the episodes."""

    fps: float
    image_size: int
    cameras: tuple[CameraMeta, ...]
    env_id: str = ""
    env_version: str = ""
    task: str = ""
    created_by: str = "worldmodel.data"
    video: VideoSpec = field(default_factory=VideoSpec)
    action_dim: int = 7
    state_dim: int = 7
    action_convention: str = ACTION_CONVENTION
    state_convention: str = STATE_CONVENTION
    camera_convention: str = CAMERA_CONVENTION
    extra: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if not self.cameras:
            raise ValueError("cameras must name at least one camera")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        if self.format_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"format_version {self.format_version} not in {SUPPORTED_VERSIONS}")

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Names of the recorded cameras; each episode has ``<name>.mp4``."""
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraMeta:
        """The camera called ``name`` (KeyError listing the known names otherwise)."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"no camera {name!r}; dataset has {self.camera_names}")

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (adds ``format`` and per-camera intrinsics K)."""
        out = asdict(self)
        out["extra"] = dict(self.extra)
        out["format"] = FORMAT_NAME
        for cam_dict, cam in zip(out["cameras"], self.cameras, strict=True):
            cam_dict["K"] = cam.intrinsics()
        return out

    def write(self, root: str | os.PathLike) -> Path:
        """Write ``root/meta.json`` atomically (temp file + rename)."""
        path = Path(root) / META_FILE
        tmp = path.with_name(f"{META_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def _bad_field(path: Path, name: str, value: Any, expected: str) -> DatasetError:
    """DatasetError naming the file, the field, its value and what was expected."""
    return DatasetError(
        f"{path}: field {name!r} is {value!r} ({type(value).__name__}), expected {expected}"
    )


def _int_field(raw: Mapping[str, Any], key: str, path: Path, prefix: str = "") -> int:
    """``raw[key]`` as an int >= 1 (an integral float such as 64.0 is accepted)."""
    value = raw[key]
    ok = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )
    if not ok or value < 1:
        raise _bad_field(path, prefix + key, value, "an integer >= 1")
    return int(value)


def _float_field(raw: Mapping[str, Any], key: str, path: Path, prefix: str = "") -> float:
    """``raw[key]`` as a finite float > 0 (JSON also admits NaN and Infinity)."""
    value = raw[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise _bad_field(path, prefix + key, value, "a finite number > 0")
    return float(value)


def _numbers(raw: Mapping[str, Any], key: str, count: int, default: tuple, path: Path, prefix: str):
    """``raw[key]`` (or ``default``) as a tuple of ``count`` finite floats."""
    value = raw.get(key, default)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != count
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise _bad_field(path, prefix + key, value, f"a list of {count} finite numbers")
    return tuple(float(v) for v in value)


# Optional top-level keys and the JSON type each must have.
_OPTIONAL_TYPES: dict[str, type] = {
    "env_id": str,
    "env_version": str,
    "task": str,
    "created_by": str,
    "action_convention": str,
    "state_convention": str,
    "camera_convention": str,
    "extra": dict,
    "video": dict,
}


def _camera(raw: Any, k: int, path: Path) -> CameraMeta:
    """One entry of ``cameras``, each field type-checked and named in errors."""
    prefix = f"cameras[{k}]."
    if not isinstance(raw, dict):
        raise _bad_field(path, f"cameras[{k}]", raw, "an object with name, width, height, fovy_deg")
    for key in ("name", "width", "height", "fovy_deg"):
        if key not in raw:
            raise DatasetError(f"{path}: missing required key {prefix + key!r}")
    if not isinstance(raw["name"], str) or not raw["name"] or "/" in raw["name"]:
        raise _bad_field(path, prefix + "name", raw["name"], "a non-empty file stem")
    parent = raw.get("parent", "world")
    if not isinstance(parent, str):
        raise _bad_field(path, prefix + "parent", parent, "a string")
    fields = {
        "width": _int_field(raw, "width", path, prefix),
        "height": _int_field(raw, "height", path, prefix),
        "fovy_deg": _float_field(raw, "fovy_deg", path, prefix),
        "pos_m": _numbers(raw, "pos_m", 3, (0.0, 0.0, 0.0), path, prefix),
        "quat_wxyz": _numbers(raw, "quat_wxyz", 4, (1.0, 0.0, 0.0, 0.0), path, prefix),
    }
    try:
        return CameraMeta(name=raw["name"], parent=parent, **fields)
    except ValueError as exc:  # fovy_deg out of (0, 180)
        raise DatasetError(f"{path}: invalid {prefix[:-1]}: {exc}") from exc


def _from_dict(raw: Mapping[str, Any], path: Path) -> DatasetMeta:
    """Build a DatasetMeta from parsed JSON, naming the file and the field on any problem."""
    if "format_version" not in raw:
        raise DatasetError(f"{path}: missing 'format_version' (expected {FORMAT_VERSION})")
    if type(raw["format_version"]) is not int or raw["format_version"] not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{path}: unknown format_version {raw['format_version']!r}; this reader supports "
            f"{SUPPORTED_VERSIONS}"
        )
    for key in ("fps", "image_size", "cameras"):
        if key not in raw:
            raise DatasetError(f"{path}: missing required key {key!r}")
    for key, kind in _OPTIONAL_TYPES.items():
        if key in raw and not isinstance(raw[key], kind):
            raise _bad_field(
                path, key, raw[key], f"a JSON {'object' if kind is dict else 'string'}"
            )
    if not isinstance(raw["cameras"], list) or not raw["cameras"]:
        raise _bad_field(path, "cameras", raw["cameras"], "a non-empty list of cameras")
    kwargs = {k: v for k, v in raw.items() if k in set(DatasetMeta.__dataclass_fields__)}
    kwargs["fps"] = _float_field(raw, "fps", path)
    kwargs["image_size"] = _int_field(raw, "image_size", path)
    for key in ("action_dim", "state_dim"):
        if key in raw:
            kwargs[key] = _int_field(raw, key, path)
    kwargs["cameras"] = tuple(_camera(c, k, path) for k, c in enumerate(raw["cameras"]))
    try:
        kwargs["video"] = VideoSpec(**raw.get("video", {}))
    except (TypeError, ValueError) as exc:  # unknown keys, crf out of range or not a number
        raise DatasetError(f"{path}: field 'video' is invalid: {exc}") from exc
    try:
        return DatasetMeta(**kwargs)
    except (TypeError, ValueError) as exc:  # duplicate camera names, bad fovy, ...
        raise DatasetError(f"{path}: invalid metadata: {exc}") from exc


def read_meta(root: str | os.PathLike) -> DatasetMeta:
    """Read and validate ``root/meta.json``.

    Raises:
        DatasetError: the file is missing, is not JSON, or has a missing/unknown format version
            or missing/invalid fields.
    """
    path = Path(root) / META_FILE
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing dataset metadata file (expected {META_FILE} in the dataset root)"
        )
    try:
        text = path.read_text()
    except OSError as exc:  # permissions, I/O error
        raise DatasetError(f"{path}: cannot read dataset metadata: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (not UTF-8 text): {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return _from_dict(raw, path)
