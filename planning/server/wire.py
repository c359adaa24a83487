"""Wire format of the policy server: msgpack with openpi's numpy encoding, plus request checks.

Arrays travel as maps ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and numpy scalars as ``{b"__npgeneric__": True, b"data": item, b"dtype":
...}``, the encoding of ``openpi_client.msgpack_numpy``, so either side can be openpi's. Object,
void and complex dtypes are refused (never pickle). Decoded arrays are writable copies.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack
import numpy as np

_REFUSED_KINDS = ("V", "O", "c")


class RequestError(ValueError):
    """A client sent something the server cannot use; the message goes back as an error frame."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"unsupported dtype on the wire: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": data.tobytes(), b"dtype": data.dtype.str,
                b"shape": data.shape}  # fmt: skip
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            shape = tuple(int(s) for s in obj[b"shape"])
            data = obj[b"data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestError(f"malformed ndarray on the wire: {exc}") from exc
        if dtype.kind in _REFUSED_KINDS:
            raise RequestError(f"unsupported dtype on the wire: {dtype}")
        if any(s < 0 for s in shape) or int(np.prod(shape)) * dtype.itemsize != len(data):
            raise RequestError(f"ndarray data size {len(data)} does not match {shape} {dtype}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if b"__npgeneric__" in obj:
        try:
            return np.dtype(obj[b"dtype"]).type(obj[b"data"])
        except (KeyError, TypeError, ValueError) as exc:
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
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
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
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
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


def _goal_fields(msg: dict, state_dim: int) -> tuple:
    images = image_field(msg, "goal_image", batched=True) if "goal_image" in msg else None
    states = budgets = None
    if ("goal_state" in msg or "goal_budgets" in msg) and images is None:
        raise RequestError("'goal_state'/'goal_budgets' need a 'goal_image' in the same request")
    if "goal_state" in msg:
        states = state_field(msg, "goal_state", state_dim, batched=True)
        if states.shape[0] != images.shape[0]:
            raise RequestError(f"{states.shape[0]} goal states for {images.shape[0]} goal images")
    if "goal_budgets" in msg:
        raw = np.asarray(msg["goal_budgets"])
        if raw.shape != (images.shape[0],) or raw.dtype.kind not in "iu" or raw.min() < 1:
            raise RequestError(f"'goal_budgets' must be {images.shape[0]} integers >= 1, got {raw}")
        budgets = [int(b) for b in raw]
    goal_id = msg.get("goal_id")
    if goal_id is not None and (not isinstance(goal_id, str) or not 0 < len(goal_id) <= 128):
        raise RequestError(f"'goal_id' must be a non-empty string of <= 128 chars, got {goal_id!r}")
    return images, states, budgets, goal_id


def parse_request(
    msg: Any, state_dim: int = 7, max_image_side: int = 1024, views: int = 1
) -> Request:
    """Validate a decoded request dict; raise :class:`RequestError` naming the bad key.
    ``views`` > 1: images must be that many square views side by side (``worldmodel.models.views``)."""
    if not isinstance(msg, dict):
        raise RequestError(f"request must be a msgpack map, got {type(msg).__name__}")
    unknown = sorted(str(k) for k in msg if k not in REQUEST_KEYS and k not in IGNORED_KEYS)
    if unknown:
        raise RequestError(f"unknown keys {unknown}; allowed: {list(REQUEST_KEYS)}")
    reset = msg.get("reset", False)
    if not isinstance(reset, bool):
        raise RequestError(f"'reset' must be a bool, got {reset!r}")
    images, states, budgets, goal_id = _goal_fields(msg, state_dim)
    has_img, has_state = "observation/image" in msg, "observation/state" in msg
    if has_img != has_state:
        raise RequestError("'observation/image' and 'observation/state' must be sent together")
    image = image_field(msg, "observation/image") if has_img else None
    state = state_field(msg, "observation/state", state_dim) if has_state else None
    for img, key in ((images, "goal_image"), (image, "observation/image")):
        if img is not None and max(img.shape[-3:-1]) > max_image_side:
            raise RequestError(f"{key!r} side {max(img.shape[-3:-1])} > {max_image_side}")
        if img is not None and views > 1 and img.shape[-2] != views * img.shape[-3]:
            raise RequestError(
                f"{key!r}: the model takes {views} square views side by side, (H, {views}*H, 3);"
                f" got {img.shape[-3:]}"
            )
    return Request(reset, images, states, budgets, goal_id, image, state)
