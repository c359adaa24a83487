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
# The default (DROID / V-JEPA 2-AC end-effector) layout; a dataset whose meta.json names no layout
# has it. ``ACTION_KINDS``: how an action relates to the state (see DatasetMeta.action_kind).
EE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
ACTION_KINDS = ("ee_delta", "delta", "absolute")
# The policies of worldmodel.data.images.fit_frames (kept here so reading meta.json needs no torch).
IMAGE_POLICIES = ("crop", "pad", "resize")

CAMERA_CONVENTION = (
    "MuJoCo camera convention: the camera looks along its local -z axis with +y up. pos_m and "
    "quat_wxyz give the camera pose in the frame of `parent` ('world' or the MuJoCo body it is "
    "mounted on). fovy_deg is the vertical field of view; pixels are square, the principal point "
    "is the image centre, so fy = fx = (height / 2) / tan(fovy / 2)."
)


@dataclass(frozen=True)
class CameraMeta:
    """One camera of the dataset: image size, intrinsics (vertical fov) and mounting pose.

    ``fovy_deg`` is None when the intrinsics are unknown (imported recordings; ``K`` is then
    null in meta.json). ``source_image_size`` is ``(width, height)`` of the recorded frames when
    they were fitted to ``width`` x ``height`` at import (by the dataset's ``image_policy``),
    empty when the frames were stored as recorded.
    """

    name: str
    width: int
    height: int
    fovy_deg: float | None
    parent: str = "world"
    pos_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat_wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    source_image_size: tuple[int, int] | tuple[()] = ()

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"camera name must be a non-empty file stem, got {self.name!r}")
        if self.width < 1 or self.height < 1:
            raise ValueError(
                f"camera {self.name}: width/height must be >= 1, got {self.width}x{self.height}"
            )
        if self.fovy_deg is not None and not 0.0 < self.fovy_deg < 180.0:
            raise ValueError(
                f"camera {self.name}: fovy_deg must be in (0, 180), got {self.fovy_deg}"
            )
        if len(self.pos_m) != 3 or len(self.quat_wxyz) != 4:
            raise ValueError(f"camera {self.name}: pos_m needs 3 and quat_wxyz 4 numbers")
        size = tuple(self.source_image_size)
        if size and (len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size)):
            raise ValueError(
                f"camera {self.name}: source_image_size must be empty or [width, height] "
                f"integers >= 1, got {size}"
            )
        object.__setattr__(self, "source_image_size", size)  # frozen: a list becomes a tuple

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (same for x and y); ValueError when fovy_deg is unknown."""
        if self.fovy_deg is None:
            raise ValueError(f"camera {self.name}: intrinsics unknown (fovy_deg is null)")
        return 0.5 * self.height / math.tan(math.radians(self.fovy_deg) / 2.0)

    def intrinsics(self) -> list[list[float]] | None:
        """3x3 pinhole matrix K (row-major) with the principal point at the image centre; None
        when fovy_deg is unknown."""
        if self.fovy_deg is None:
            return None
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


# The per-dimension statistics DatasetMeta may carry (each empty = unknown, or one float per dim).
ACTION_STATS = ("action_low", "action_high", "action_mean", "action_std")
STATE_STATS = ("state_mean", "state_std")


def default_names(dim: int, prefix: str) -> tuple[str, ...]:
    """Names of a layout that declares none: the end-effector names for 7 dims, else
    ``<prefix>_0 ...``."""
    return EE_NAMES if dim == len(EE_NAMES) else tuple(f"{prefix}_{i}" for i in range(dim))


@dataclass(frozen=True)
class DatasetMeta:
    """Everything in ``meta.json``: what is needed to interpret the episodes.

    The state/action layout (defaults: the 7-D DROID end-effector layout of our simulator data):

    - ``state_dim`` / ``action_dim`` (>= 1) and ``state_names`` / ``action_names`` (one per dim;
      left empty they become ``EE_NAMES`` for 7 dims, else ``state_0 ...`` / ``action_0 ...``);
    - ``action_kind``: ``"ee_delta"`` (7-D ``[dxyz, droll, dpitch, dyaw, dgripper]`` over the 7-D
      state ``[xyz, rpy, gripper]``, rotation delta = extrinsic xyz Euler of R_next R_cur^T),
      ``"delta"`` (next state ~ state + action, per dim, e.g. joint deltas) or ``"absolute"``
      (the action is the commanded next state, e.g. joint position targets);
    - statistics over every imported step (``wm-import``), each ``()`` when unknown:
      ``action_low`` / ``action_high`` (bounds: the 1st / 99th percentile widened by 10% of their
      spread on each side, clipped to the observed min / max; valid actions only),
      ``action_mean`` / ``action_std`` (valid actions), ``state_mean`` / ``state_std`` (all rows;
      a constant dimension has std 0). Simulator data leaves them empty: the bounds of
      :mod:`worldmodel.data.actions` apply;
    - ``image_policy``: how recorded frames were made square (``crop`` / ``pad`` / ``resize``, see
      :func:`worldmodel.data.images.fit_frames`); planning must treat live frames the same way.
    """

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
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    action_kind: str = "ee_delta"
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    action_mean: tuple[float, ...] = ()
    action_std: tuple[float, ...] = ()
    state_mean: tuple[float, ...] = ()
    state_std: tuple[float, ...] = ()
    image_policy: str = "crop"
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
        self._check_layout()

    def _check_layout(self) -> None:
        """Validate dims, names, action kind, statistics and image policy; fill default names."""
        for key in ("state_dim", "action_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        for key, dim, prefix in (
            ("state_names", self.state_dim, "state"),
            ("action_names", self.action_dim, "action"),
        ):
            names = tuple(getattr(self, key)) or default_names(dim, prefix)
            if len(names) != dim or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"{key} must be {dim} non-empty strings (one per dim), got {names}"
                )
            object.__setattr__(self, key, names)  # frozen: fill the default once, here
        if self.action_kind not in ACTION_KINDS:
            raise ValueError(
                f"action_kind must be one of {list(ACTION_KINDS)}, got {self.action_kind!r}"
            )
        if self.action_kind == "ee_delta" and (self.state_dim, self.action_dim) != (7, 7):
            raise ValueError(
                "action_kind 'ee_delta' needs the 7-D end-effector layout (state_dim = action_dim "
                f"= 7), got state_dim={self.state_dim}, action_dim={self.action_dim}"
            )
        for key in (*ACTION_STATS, *STATE_STATS):
            dim = self.action_dim if key.startswith("action") else self.state_dim
            values = tuple(getattr(self, key))
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if values and (
                len(values) != dim or not numbers or not all(map(math.isfinite, values))
            ):
                raise ValueError(
                    f"{key} must be empty (unknown) or {dim} finite numbers, got {values}"
                )
            if key.endswith("_std") and any(v < 0 for v in values):
                raise ValueError(f"{key} must be >= 0, got {values}")
            object.__setattr__(self, key, tuple(float(v) for v in values))
        low, high = self.action_low, self.action_high
        if bool(low) != bool(high) or any(lo > hi for lo, hi in zip(low, high, strict=False)):
            raise ValueError(
                f"action_low/action_high must both be given (low <= high per dim) or both empty, "
                f"got {low} / {high}"
            )
        if self.image_policy not in IMAGE_POLICIES:
            raise ValueError(
                f"image_policy must be one of {list(IMAGE_POLICIES)}, got {self.image_policy!r}"
            )

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
    "action_kind": str,
    "image_policy": str,
}
# Optional top-level lists: names (strings) and per-dim statistics (numbers).
_NAME_LISTS = ("state_names", "action_names")
_NUMBER_LISTS = (*ACTION_STATS, *STATE_STATS)


def _list_field(raw: Mapping[str, Any], key: str, path: Path, item: type, what: str) -> tuple:
    """``raw[key]`` (a JSON list of ``item``) as a tuple, naming the field when it is not."""
    value = raw[key]
    ok = isinstance(value, list) and all(
        isinstance(v, item) and not isinstance(v, bool) for v in value
    )
    if not ok:
        raise _bad_field(path, key, value, f"a list of {what}")
    return tuple(value)


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
        # null: intrinsics unknown (imported recordings)
        "fovy_deg": None
        if raw["fovy_deg"] is None
        else _float_field(raw, "fovy_deg", path, prefix),
        "pos_m": _numbers(raw, "pos_m", 3, (0.0, 0.0, 0.0), path, prefix),
        "quat_wxyz": _numbers(raw, "quat_wxyz", 4, (1.0, 0.0, 0.0, 0.0), path, prefix),
    }
    size = raw.get("source_image_size", [])
    ok = isinstance(size, list) and len(size) in (0, 2)
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise _bad_field(
            path, prefix + "source_image_size", size, "[] or [width, height] (integers >= 1)"
        )
    fields["source_image_size"] = tuple(size)
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
    for key in _NAME_LISTS:
        if key in raw:
            kwargs[key] = _list_field(raw, key, path, str, "strings")
    for key in _NUMBER_LISTS:
        if key in raw:
            kwargs[key] = _list_field(raw, key, path, (int, float), "numbers")
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
