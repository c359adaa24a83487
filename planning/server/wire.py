"""Wire format of the policy server: msgpack with openpi's numpy encoding, plus request checks.

Arrays travel as maps ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and numpy scalars as ``{b"__npgeneric__": True, b"data": item, b"dtype":
...}``, the encoding of ``openpi_client.msgpack_numpy``, so either side can be openpi's. Object,
void and complex dtypes are refused (never pickle). Decoded arrays are writable copies.

Observation keys follow a preset of :mod:`planning.server.keys` (``ours`` by default); separate
camera images are assembled into the model's view mosaic here.

:func:`unpackb` and :func:`parse_request` raise nothing but :class:`RequestError` on any input
(tests/planning/test_wire_properties.py checks it on random bytes, maps and arrays).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgpack
import numpy as np

from planning.server.keys import CONTROL_KEYS, OBS_KEY_PRESETS, ObsKeys, assemble_views

_REFUSED_KINDS = ("V", "O", "c")


class RequestError(ValueError):
    """A client sent something the server cannot use; the message goes back as an error frame."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"unsupported dtype on the wire: {obj.dtype}")
    if isinstance(obj, np.ndarray):  # tobytes() is C order; 0-d arrays keep their shape ()
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}  # fmt: skip
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            shape = tuple(int(s) for s in obj[b"shape"])
            data = obj[b"data"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise RequestError(f"malformed ndarray on the wire: {exc}") from exc
        if dtype.kind in _REFUSED_KINDS:
            raise RequestError(f"unsupported dtype on the wire: {dtype}")
        if not isinstance(data, bytes) or dtype.itemsize == 0:
            raise RequestError(
                f"malformed ndarray on the wire: {type(data).__name__} data, {dtype}"
            )
        # math.prod of Python ints: an absurd shape cannot overflow into a matching size.
        if any(s < 0 for s in shape) or math.prod(shape) * dtype.itemsize != len(data):
            raise RequestError(f"ndarray data size {len(data)} does not match {shape} {dtype}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if b"__npgeneric__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            if dtype.kind in _REFUSED_KINDS:
                raise RequestError(f"unsupported dtype on the wire: {dtype}")
            return dtype.type(obj[b"data"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, RequestError):
                raise
            raise RequestError(f"malformed numpy scalar on the wire: {exc}") from exc
    return obj


def packb(obj: Any) -> bytes:
    """Serialize dicts/lists/scalars/numpy arrays to msgpack bytes."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes, max_bytes: int | None = None) -> Any:
    """Deserialize msgpack bytes; raise :class:`RequestError` on anything malformed."""
    if max_bytes is not None and len(data) > max_bytes:
        raise RequestError(f"message of {len(data)} bytes exceeds max_message_bytes={max_bytes}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except RequestError:
        raise
    # ValueError covers msgpack's ExtraData/FormatError/StackError/OutOfData; TypeError: a map
    # key that is a list or a map (unhashable).
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(f"message is not valid msgpack: {exc}") from exc


def image_field(msg: dict, key: str, batched: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 image (or (K, H, W, 3) when ``batched``) from ``msg[key]``."""
    return _image(msg[key], repr(key), batched)


def _image(img: Any, label: str, batched: bool = False) -> np.ndarray:
    ndim = 4 if batched else 3
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise RequestError(f"{label} must be a uint8 ndarray, got {type(img).__name__} "
                           f"{getattr(img, 'dtype', '')}")  # fmt: skip
    if batched and img.ndim == 3:
        img = img[None]
    if img.ndim != ndim or img.shape[-1] != 3 or min(img.shape[-3:-1]) < 1:
        raise RequestError(f"{label} must have shape {'(K,' if batched else '('}H,W,3), "
                           f"got {img.shape}")  # fmt: skip
    return img


def state_field(msg: dict, key: str, dim: int | None = 7, batched: bool = False) -> np.ndarray:
    """Finite float32 (dim,) state (or (K, dim) when ``batched``) from ``msg[key]``;
    ``dim=None``: a number or a 1-D array of any size, as a 1-D array (a part of a state)."""
    value = msg[key]
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: refused below
            arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"{key!r} must be numeric, got {type(value).__name__}") from exc
    if dim is None:
        if arr.ndim > 1:
            raise RequestError(f"{key!r} must be a number or a 1-D array, got {arr.shape}")
        arr = arr.reshape(-1)
    else:
        if batched and arr.ndim == 1:
            arr = arr[None]
        want = 2 if batched else 1
        if arr.ndim != want or arr.shape[-1] != dim:
            raise RequestError(f"{key!r} must have shape {'(K, ' if batched else '('}{dim}), "
                               f"got {arr.shape}")  # fmt: skip
    if not np.all(np.isfinite(arr)):
        raise RequestError(f"{key!r} contains NaN or inf")
    return arr


# The keys of the default ("ours") preset, for callers that do not pass ``keys``.
REQUEST_KEYS = (*CONTROL_KEYS, *OBS_KEY_PRESETS["ours"].observation_keys())
IGNORED_KEYS = OBS_KEY_PRESETS["ours"].ignored


class Request(NamedTuple):
    """A validated policy-server request (see planning.server.serve for the key meanings)."""

    reset: bool
    goal_images: np.ndarray | None  # (K, H, W, 3) uint8
    goal_states: np.ndarray | None  # (K, state_dim)
    goal_budgets: list[int] | None
    goal_id: str | None
    image: np.ndarray | None  # (H, W, 3) uint8: the model's views side by side
    state: np.ndarray | None  # (state_dim,)
    timestamp: float | None = None  # capture time of the observation (client clock, s)
    dry_run: bool = False


def _goal_images(
    msg: dict, views: tuple[str, ...], policy: str, max_image_side: int
) -> np.ndarray | None:
    """``goal_image``: one mosaic (H, W, 3) / (K, H, W, 3), or a map {view name: image} of
    the model's views (each (H, W, 3) or (K, H, W, 3)) that the server assembles."""
    if "goal_image" not in msg:
        return None
    value = msg["goal_image"]
    if not isinstance(value, dict):
        images = image_field(msg, "goal_image", batched=True)
        _check_sides([images], ["'goal_image'"], max_image_side)
        return images
    names = sorted(str(k) for k in value)
    if names != sorted(views):
        raise RequestError(f"'goal_image' as a map needs exactly the model's views {list(views)}"
                           f" as keys, got {names}")  # fmt: skip
    images = [_image(value[v], f"'goal_image'[{v!r}]", batched=True) for v in views]
    if len({img.shape[0] for img in images}) != 1:
        raise RequestError(f"'goal_image' views hold different numbers of sub-goals "
                           f"{[img.shape[0] for img in images]}")  # fmt: skip
    _check_sides(images, [f"'goal_image'[{v!r}]" for v in views], max_image_side)
    return assemble_views(images, policy) if images[0].shape[0] else images[0]


def _goal_fields(
    msg: dict, state_dim: int, max_subgoals: int | None, views: tuple[str, ...], policy: str,
    max_image_side: int,
) -> tuple:  # fmt: skip
    images = _goal_images(msg, views, policy, max_image_side)
    if images is not None and images.shape[0] == 0:
        raise RequestError("'goal_image' holds no sub-goal images")
    if images is not None and max_subgoals is not None and images.shape[0] > max_subgoals:
        raise RequestError(
            f"'goal_image' holds {images.shape[0]} sub-goals > max_subgoals={max_subgoals}"
        )
    states = budgets = None
    if ("goal_state" in msg or "goal_budgets" in msg) and images is None:
        raise RequestError("'goal_state'/'goal_budgets' need a 'goal_image' in the same request")
    if "goal_state" in msg:
        states = state_field(msg, "goal_state", state_dim, batched=True)
        if states.shape[0] != images.shape[0]:
            raise RequestError(f"{states.shape[0]} goal states for {images.shape[0]} goal images")
    if "goal_budgets" in msg:
        try:
            raw = np.asarray(msg["goal_budgets"])
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a ragged list
            raise RequestError(f"'goal_budgets' must be {images.shape[0]} integers >= 1") from exc
        if raw.shape != (images.shape[0],) or raw.dtype.kind not in "iu" or raw.min() < 1:
            raise RequestError(f"'goal_budgets' must be {images.shape[0]} integers >= 1, got {raw}")
        budgets = [int(b) for b in raw]
    goal_id = msg.get("goal_id")
    if goal_id is not None and (not isinstance(goal_id, str) or not 0 < len(goal_id) <= 128):
        raise RequestError(f"'goal_id' must be a non-empty string of <= 128 chars, got {goal_id!r}")
    return images, states, budgets, goal_id


def _non_finite(value: Any) -> bool:
    """True when ``value`` is a float (scalar, array or list of them) holding NaN or inf, or a
    map holding one (a ``goal_image`` by view)."""
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, float | np.floating):
        return not math.isfinite(value)
    if isinstance(value, list):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError, OverflowError):  # ragged or mixed: the field check says
            return False
    return (
        isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all()
    )


def _check_sides(images: list[np.ndarray], labels: list[str], max_image_side: int) -> None:
    """Each image's height and width <= ``max_image_side`` (``labels``: how to name them)."""
    for img, label in zip(images, labels, strict=True):
        if max(img.shape[-3:-1]) > max_image_side:
            raise RequestError(
                f"{label} side {max(img.shape[-3:-1])} > max_image_side={max_image_side}"
            )


def _state(msg: dict, keys: tuple[str, ...], state_dim: int) -> np.ndarray:
    """The state: one key's (state_dim,) array, or several keys' values (each a number or a
    1-D array) concatenated in order (e.g. DROID's pose (6) + gripper (1))."""
    if len(keys) == 1:
        return state_field(msg, keys[0], state_dim)
    parts = [state_field(msg, key, dim=None) for key in keys]
    sizes = [p.size for p in parts]
    if sum(sizes) != state_dim:
        names = " + ".join(repr(k) for k in keys)
        raise RequestError(f"{names} hold {' + '.join(map(str, sizes))} = {sum(sizes)} numbers;"
                           f" the model's state is {state_dim}-D")  # fmt: skip
    return np.concatenate(parts).astype(np.float32)


def _timestamp(msg: dict, key: str) -> float | None:
    if key not in msg:
        return None
    value = msg[key]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{key!r} must be a number (seconds), got {type(value).__name__}")
    try:
        stamp = float(value)
    except OverflowError as exc:  # an int beyond float
        raise RequestError(f"{key!r} must be a finite number of seconds") from exc
    if not math.isfinite(stamp):
        raise RequestError(f"{key!r} must be a finite number of seconds")
    return stamp


def _observation(
    msg: dict, keys: ObsKeys, state_dim: int, views: tuple[str, ...], policy: str,
    max_image_side: int,
) -> tuple[np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """(image mosaic, state) of the observation in ``msg``, or (None, None) when it has none.

    The mosaic is ``keys.image`` when sent, else assembled from the camera keys of the
    model's ``views`` (camera keys of other views are accepted and ignored)."""
    cameras = [k for _, k in keys.cameras if k in msg]
    has_image = (keys.image is not None and keys.image in msg) or bool(cameras)
    sent_state = [k for k in keys.state if k in msg]
    if not has_image and not sent_state:
        return None, None
    image_keys = [k for k in (keys.image, *(keys.camera_key(v) for v in views)) if k]
    if not has_image:
        raise RequestError(f"{' or '.join(map(repr, image_keys))} missing: the image and the "
                           f"state must be sent together")  # fmt: skip
    missing_state = [k for k in keys.state if k not in msg]
    if missing_state:
        raise RequestError(f"{' and '.join(map(repr, missing_state))} missing: the image and "
                           f"the state must be sent together")  # fmt: skip
    state = _state(msg, keys.state, state_dim)
    if keys.image is not None and keys.image in msg:
        image = image_field(msg, keys.image)
        _check_sides([image], [repr(keys.image)], max_image_side)
        return image, state
    images, labels = [], []
    for view in views:
        key = keys.camera_key(view)
        if key is None or key not in msg:
            raise RequestError(f"camera {view!r} missing: send {key!r} (the model takes the "
                               f"views {list(views)})")  # fmt: skip
        images.append(image_field(msg, key))
        labels.append(repr(key))
    _check_sides(images, labels, max_image_side)
    return assemble_views(images, policy), state


def parse_request(
    msg: Any,
    state_dim: int = 7,
    max_image_side: int = 1024,
    views: int | tuple[str, ...] = 1,
    max_subgoals: int | None = None,
    keys: ObsKeys | None = None,
    image_policy: str = "crop",
) -> Request:
    """Validate a decoded request dict; raise :class:`RequestError` naming the bad key.

    ``views``: the model's view names (or their number); images with several views must be
    that many square views side by side (``worldmodel.models.views``), or come as one image
    per camera key of ``keys`` (default: the ``ours`` preset), assembled here with
    ``image_policy``. ``max_subgoals``: most images in ``goal_image`` (None: any). A NaN or
    inf anywhere in a float field is refused, in the ignored keys too."""
    keys = keys or OBS_KEY_PRESETS["ours"]
    names = _view_names(views)
    if not isinstance(msg, dict):
        raise RequestError(f"request must be a msgpack map, got {type(msg).__name__}")
    allowed = (*CONTROL_KEYS, *keys.observation_keys())
    unknown = sorted(str(k) for k in msg if k not in allowed and k not in keys.ignored)
    if unknown:
        raise RequestError(
            f"unknown keys {unknown}; allowed: {list(allowed)} (ignored: {list(keys.ignored)})"
        )
    for key, value in msg.items():
        if _non_finite(value):
            raise RequestError(f"{key!r} contains NaN or inf")
    reset, dry_run = msg.get("reset", False), msg.get("dry_run", False)
    for key, flag in (("reset", reset), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise RequestError(f"{key!r} must be a bool, got {flag!r}")
    images, states, budgets, goal_id = _goal_fields(
        msg, state_dim, max_subgoals, names, image_policy, max_image_side
    )
    image, state = _observation(msg, keys, state_dim, names, image_policy, max_image_side)
    n = len(names)
    for img, key in ((images, "goal_image"), (image, "observation/image")):
        if img is not None and n > 1 and img.shape[-2] != n * img.shape[-3]:
            raise RequestError(
                f"{key!r}: the model takes {n} square views side by side, (H, {n}*H, 3);"
                f" got {img.shape[-3:]}"
            )
    stamp = _timestamp(msg, keys.timestamp)
    return Request(reset, images, states, budgets, goal_id, image, state, stamp, dry_run)


def _view_names(views: int | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(views, int):
        return ("exterior",) if views == 1 else tuple(f"view{i}" for i in range(views))
    return tuple(views)
