"""Wire format of the policy server: msgpack with openpi's numpy encoding, plus request checks.

Arrays travel as maps ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and numpy scalars as ``{b"__npgeneric__": True, b"data": item, b"dtype":
...}``, the encoding of ``openpi_client.msgpack_numpy``, so either side can be openpi's. Object,
void and complex dtypes are refused (never pickle). Decoded arrays are writable copies.

:func:`unpackb` and :func:`parse_request` raise nothing but :class:`RequestError` on any input
(tests/planning/test_wire_properties.py checks it on random bytes, maps and arrays).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgpack
import numpy as np

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
    img = msg[key]
    ndim = 4 if batched else 3
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise RequestError(f"{key!r} must be a uint8 ndarray, got {type(img).__name__} "
                           f"{getattr(img, 'dtype', '')}")  # fmt: skip
    if batched and img.ndim == 3:
        img = img[None]
    if img.ndim != ndim or img.shape[-1] != 3 or min(img.shape[-3:-1]) < 1:
        raise RequestError(f"{key!r} must have shape {'(K,' if batched else '('}H,W,3), "
                           f"got {img.shape}")  # fmt: skip
    return img


def state_field(msg: dict, key: str, dim: int = 7, batched: bool = False) -> np.ndarray:
    """Finite float32 (dim,) state (or (K, dim) when ``batched``) from ``msg[key]``."""
    value = msg[key]
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: refused below
            arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"{key!r} must be numeric, got {type(value).__name__}") from exc
    if batched and arr.ndim == 1:
        arr = arr[None]
    want = 2 if batched else 1
    if arr.ndim != want or arr.shape[-1] != dim:
        raise RequestError(f"{key!r} must have shape {'(K, ' if batched else '('}{dim}), "
                           f"got {arr.shape}")  # fmt: skip
    if not np.all(np.isfinite(arr)):
        raise RequestError(f"{key!r} contains NaN or inf")
    return arr


REQUEST_KEYS = (
    "reset", "goal_image", "goal_state", "goal_budgets", "goal_id",
    "observation/image", "observation/state",
)  # fmt: skip
IGNORED_KEYS = ("prompt", "observation/wrist_image")


class Request(NamedTuple):
    """A validated policy-server request (see planning.server.serve for the key meanings)."""

    reset: bool
    goal_images: np.ndarray | None  # (K, H, W, 3) uint8
    goal_states: np.ndarray | None  # (K, state_dim)
    goal_budgets: list[int] | None
    goal_id: str | None
    image: np.ndarray | None  # (H, W, 3) uint8
    state: np.ndarray | None  # (state_dim,)


def _goal_fields(msg: dict, state_dim: int, max_subgoals: int | None) -> tuple:
    images = image_field(msg, "goal_image", batched=True) if "goal_image" in msg else None
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
    """True when ``value`` is a float (scalar, array or list of them) holding NaN or inf."""
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


def parse_request(
    msg: Any,
    state_dim: int = 7,
    max_image_side: int = 1024,
    views: int = 1,
    max_subgoals: int | None = None,
) -> Request:
    """Validate a decoded request dict; raise :class:`RequestError` naming the bad key.

    ``views`` > 1: images must be that many square views side by side
    (``worldmodel.models.views``); ``max_subgoals``: most images in ``goal_image`` (None: any).
    A NaN or inf anywhere in a float field is refused, in the ignored keys too."""
    if not isinstance(msg, dict):
        raise RequestError(f"request must be a msgpack map, got {type(msg).__name__}")
    unknown = sorted(str(k) for k in msg if k not in REQUEST_KEYS and k not in IGNORED_KEYS)
    if unknown:
        raise RequestError(f"unknown keys {unknown}; allowed: {list(REQUEST_KEYS)}")
    for key, value in msg.items():
        if _non_finite(value):
            raise RequestError(f"{key!r} contains NaN or inf")
    reset = msg.get("reset", False)
    if not isinstance(reset, bool):
        raise RequestError(f"'reset' must be a bool, got {reset!r}")
    images, states, budgets, goal_id = _goal_fields(msg, state_dim, max_subgoals)
    has_img, has_state = "observation/image" in msg, "observation/state" in msg
    if has_img != has_state:
        raise RequestError("'observation/image' and 'observation/state' must be sent together")
    image = image_field(msg, "observation/image") if has_img else None
    state = state_field(msg, "observation/state", state_dim) if has_state else None
    for img, key in ((images, "goal_image"), (image, "observation/image")):
        if img is not None and max(img.shape[-3:-1]) > max_image_side:
            raise RequestError(
                f"{key!r} side {max(img.shape[-3:-1])} > max_image_side={max_image_side}"
            )
        if img is not None and views > 1 and img.shape[-2] != views * img.shape[-3]:
            raise RequestError(
                f"{key!r}: the model takes {views} square views side by side, (H, {views}*H, 3);"
                f" got {img.shape[-3:]}"
            )
    return Request(reset, images, states, budgets, goal_id, image, state)
