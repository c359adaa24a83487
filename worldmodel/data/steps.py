"""The per-step table of one episode (``steps.npz``): required fields, validation, load/save."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.errors import DatasetError

STEPS_FILE = "steps.npz"
# The default (end-effector) layout; a dataset's meta.json gives its own state_dim / action_dim.
STATE_DIM = 7
ACTION_DIM = 7

# name -> (dtype, shape with "T" for the episode length and "D" for the dataset's state_dim /
# action_dim from meta.json); checked on load and on write.
REQUIRED_FIELDS: dict[str, tuple[np.dtype, tuple[Any, ...]]] = {
    "state": (np.dtype(np.float32), ("T", "D")),
    "action": (np.dtype(np.float32), ("T", "D")),
    "time_s": (np.dtype(np.float64), ("T",)),
    "action_valid": (np.dtype(np.bool_), ("T",)),
    "is_success": (np.dtype(np.bool_), ("T",)),
    "task_id": (np.dtype(np.int64), ()),
}


@dataclass(frozen=True)
class StepTable:
    """Validated contents of one ``steps.npz``.

    Attributes:
        state: (T, state_dim) float32 proprioception at each frame.
        action: (T, action_dim) float32 action applied at frame t (leads to t+1); last row zero.
        time_s: (T,) float64 seconds since reset.
        action_valid: (T,) bool, False on the last row (no action after the last frame).
        is_success: (T,) bool task success flag reported by the env at each frame.
        task_id: evaluation instance index passed to ``reset`` or -1 for a free seed.
        extra: any further fields (e.g. ``seed``, ``expert_mode``, ``task_distance``).
    """

    state: np.ndarray
    action: np.ndarray
    time_s: np.ndarray
    action_valid: np.ndarray
    is_success: np.ndarray
    task_id: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """All fields as arrays, as stored in the npz."""
        out = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        out["task_id"] = np.asarray(self.task_id, dtype=np.int64)
        out.update(self.extra)
        return out


def _check_field(name: str, value: np.ndarray, length: int, dim: int, where: str) -> None:
    """Raise DatasetError unless ``value`` has the dtype and shape REQUIRED_FIELDS expects."""
    dtype, shape = REQUIRED_FIELDS[name]
    want = tuple(length if s == "T" else dim if s == "D" else s for s in shape)
    if value.dtype != dtype:
        raise DatasetError(f"{where}: field {name!r} has dtype {value.dtype}, expected {dtype}")
    if value.shape != want:
        raise DatasetError(f"{where}: field {name!r} has shape {value.shape}, expected {want}")


def validate_arrays(
    arrays: dict[str, np.ndarray],
    where: str,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
) -> StepTable:
    """Check every required field's dtype/shape and the action conventions; build a StepTable.

    Args:
        arrays: field name -> array (as stored in ``steps.npz``).
        where: file or context named in error messages.
        state_dim, action_dim: the widths of ``state`` / ``action`` (the dataset's meta.json).

    Raises:
        DatasetError: a field is missing, has the wrong dtype/shape, a value is not finite, or
            the last row is marked as a valid action.
    """
    missing = [name for name in REQUIRED_FIELDS if name not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing field(s) {missing}; expected {list(REQUIRED_FIELDS)}")
    state = arrays["state"]
    if state.ndim != 2 or state.shape[0] < 1:
        raise DatasetError(
            f"{where}: field 'state' has shape {state.shape}, expected (T, {state_dim})"
        )
    length = state.shape[0]
    dims = {"state": state_dim, "action": action_dim}
    for name in REQUIRED_FIELDS:
        _check_field(name, arrays[name], length, dims.get(name, 0), where)
    for name in ("state", "action", "time_s"):
        if not np.all(np.isfinite(arrays[name])):
            raise DatasetError(f"{where}: field {name!r} contains NaN or inf")
    if arrays["action_valid"][-1]:
        raise DatasetError(
            f"{where}: action_valid[-1] must be False (no action after the last frame)"
        )
    extra = {k: v for k, v in arrays.items() if k not in REQUIRED_FIELDS}
    return StepTable(
        state=arrays["state"],
        action=arrays["action"],
        time_s=arrays["time_s"],
        action_valid=arrays["action_valid"],
        is_success=arrays["is_success"],
        task_id=int(arrays["task_id"]),
        extra=extra,
    )


def load_steps(
    path: str | os.PathLike, state_dim: int = STATE_DIM, action_dim: int = ACTION_DIM
) -> StepTable:
    """Load and validate a ``steps.npz`` (no pickle) with the dataset's state/action widths.

    Raises:
        DatasetError: missing or unreadable file, or any check of :func:`validate_arrays`.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing per-step table")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable npz ({exc})") from exc
    return validate_arrays(arrays, str(path), state_dim, action_dim)


def save_steps(
    path: str | os.PathLike,
    table: StepTable,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
) -> None:
    """Write a StepTable as an uncompressed npz (validated first against the widths)."""
    validate_arrays(table.arrays(), str(path), state_dim, action_dim)
    with open(path, "wb") as fh:
        np.savez(fh, **table.arrays())


def make_step_table(
    states: np.ndarray,
    actions: np.ndarray,
    fps: float,
    *,
    time_s: np.ndarray | None = None,
    action_valid: np.ndarray | None = None,
    is_success: np.ndarray | None = None,
    task_id: int = -1,
    **extra: Any,
) -> StepTable:
    """Build a StepTable with conventional defaults, converting dtypes.

    Args:
        states: (T, state_dim) states; actions: (T, action_dim) applied actions (last row zero)
            or (T-1, action_dim) (a zero row is appended).
        fps: frame rate, used for the default ``time_s = arange(T) / fps``.
        time_s, action_valid, is_success: (T,) overrides; defaults: valid everywhere but the last
            row, never successful.
        task_id: evaluation instance or -1.
        extra: further per-episode or per-step fields (stored as numpy arrays).
    """
    states = np.asarray(states, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.float32)
    length = states.shape[0]
    if actions.shape[0] == length - 1:
        actions = np.concatenate([actions, np.zeros((1, actions.shape[1]), np.float32)])
    if time_s is None:
        time_s = np.arange(length, dtype=np.float64) / fps
    if action_valid is None:
        action_valid = np.arange(length) < length - 1
    if is_success is None:
        is_success = np.zeros(length, dtype=bool)
    return StepTable(
        state=states,
        action=actions,
        time_s=np.asarray(time_s, dtype=np.float64),
        action_valid=np.asarray(action_valid, dtype=bool),
        is_success=np.asarray(is_success, dtype=bool),
        task_id=int(task_id),
        extra={k: np.asarray(v) for k, v in extra.items()},
    )
