"""What every importer shares: the episode a source reader hands over, column specs, the
resampling rule, action derivation, frame reading with table/video checks, and statistics.

A source reader (:mod:`.lerobot`, :mod:`.droid`) lists :class:`EpisodeRef` s and loads each into a
:class:`SourceEpisode` (the raw table plus where its frames are); :func:`convert_episode` turns that
into our per-step table and square frames, checking everything on the way. Every problem is a
:class:`~worldmodel.errors.DatasetError` naming the file and the field.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

from worldmodel.data.actions import compose_actions, euler_xyz_from_matrix, matrix_from_euler_xyz
from worldmodel.data.images import fit_frames
from worldmodel.data.steps import StepTable, make_step_table
from worldmodel.data.video import TIME_TOLERANCE_FRAMES, probe_video, read_video
from worldmodel.errors import DatasetError

# Decoded source frames held at once per camera (read_video is called window by window), so
# a long 1280x720 episode does not need gigabytes.
DECODE_BUDGET_BYTES = 256 * 2**20
_SPEC_PART = re.compile(r"^(?P<name>.+?)(?:\[(?P<a>-?\d*)(?::(?P<b>-?\d*))?\])?$")


def require(module: str) -> ModuleType:
    """Import an optional dependency of wm-import, with the install hint when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"wm-import needs the optional package {module!r} for this format: "
            "pip install -e '.[import]'"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Column specs: "a+b[0:3]+c[6]"


class ColumnPart(NamedTuple):
    name: str
    index: slice | int | None  # which entries of the column's vector (None: all)


def parse_spec(spec: str, what: str) -> list[ColumnPart]:
    """``"a+b[0:3]+c[6]"`` -> parts (name, slice / index / None)."""
    parts = []
    for raw in spec.split("+"):
        match = _SPEC_PART.match(raw.strip())
        if not raw.strip() or not match:
            raise ValueError(
                f"{what}: cannot parse {raw!r} in {spec!r} (expected name, name[i] or name[a:b])"
            )
        a, b = match.group("a"), match.group("b")
        if a is None:
            index = None
        elif b is None and "[" in raw and ":" not in raw:
            index = int(a)
        else:
            index = slice(int(a) if a else None, int(b) if b else None)
        parts.append(ColumnPart(match.group("name"), index))
    return parts


def select_part(values: np.ndarray, part: ColumnPart) -> np.ndarray:
    """(N, D) column -> (N, k) entries of ``part``; DatasetError for an index or a slice that
    selects nothing of a column that wide."""
    if part.index is None:
        return values
    width = values.shape[1]
    if isinstance(part.index, int) and not -width <= part.index < width:
        raise DatasetError(
            f"column {part.name!r} has {width} entries; [{part.index}] is out of range"
        )
    if isinstance(part.index, slice) and not len(range(width)[part.index]):
        raise DatasetError(f"column {part.name!r} has {width} entries; the slice selects none")
    if isinstance(part.index, int):
        return values[:, part.index : part.index + 1 if part.index != -1 else None]
    return values[:, part.index]


def part_names(part: ColumnPart, width: int, names: list[str] | None) -> list[str]:
    """Names of the entries of ``part`` of a column ``width`` wide: the source's ``names`` when
    they fit, else ``<column>`` (one entry) or ``<column>_<i>``."""
    if not (names and len(names) == width):
        names = [part.name] if width == 1 else [f"{part.name}_{i}" for i in range(width)]
    return [names[i] for i in select_part(np.arange(width)[None], part)[0]]


# ---------------------------------------------------------------------------------------------
# What a source reader hands over


class EpisodeRef(NamedTuple):
    """One source episode: its output index and how messages name it."""

    index: int
    label: str


class VideoRef(NamedTuple):
    """Where one camera's frames of an episode are: frame i at ``start_s + timestamp[i]``."""

    path: Path
    start_s: float = 0.0  # offset of the episode in the file (LeRobot v3.0 from_timestamp)
    end_s: float | None = None  # end of the episode in the file, exclusive (None: file end)


@dataclass
class SourceEpisode:
    """The raw rows of one episode as read from the source (before any conversion)."""

    ref: EpisodeRef
    table: Path  # the file holding the rows (named in errors)
    timestamps: np.ndarray  # (N,) float64 seconds from the episode start
    state: np.ndarray  # (N, Ds) float64
    action: np.ndarray | None  # (N, Da) float64, None when not read
    videos: dict[str, VideoRef]  # view name -> frames
    task: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    fields: tuple[str, str] = ("state", "action")  # source names of state / action (errors)


class ImportPlan(NamedTuple):
    """How source rows become our steps (decided once per import)."""

    source_fps: float
    fps: float  # target rate
    stride: int  # > 0: keep every stride-th row; 0: nearest-timestamp resampling
    action_mode: str  # as_recorded | ee_delta_from_state
    action_kind: str  # ee_delta | delta | absolute
    state_rotation: str  # euler_xyz | rotvec | quat_xyzw | quat_wxyz (ee_delta only)
    image_size: int
    image_policy: str
    tolerance_s: float  # video frame time vs table timestamp


def plan_rate(source_fps: float, fps: float, where: str) -> tuple[float, int]:
    """(target fps, stride): stride k when the source rate is k times the target, else 0
    (nearest-timestamp resampling). Upsampling is refused."""
    if fps <= 0 or abs(fps - source_fps) <= 1e-6 * source_fps:
        return float(source_fps), 1
    if fps > source_fps:
        raise DatasetError(
            f"{where}: fps={fps} is above the source rate {source_fps} Hz; wm-import only keeps "
            "or drops rows (pick fps <= the source rate)"
        )
    ratio = source_fps / fps
    k = round(ratio)
    return float(fps), (k if abs(ratio - k) <= 1e-6 * ratio else 0)


def select_rows(timestamps: np.ndarray, layout: ImportPlan) -> np.ndarray:
    """Indices of the source rows kept at the target rate (see :func:`plan_rate`)."""
    if layout.stride:
        return np.arange(0, len(timestamps), layout.stride)
    # Nearest-timestamp resampling: for target times t0, t0 + 1/fps, ... up to the last row,
    # the row closest in time; a tie (e.g. 15 -> 10 Hz: every other target lies half-way between
    # two rows) goes to the earlier row, with a margin for timestamps stored as float32. A row
    # nearest to two targets (a gap in the source) is kept once.
    t = timestamps - timestamps[0]
    targets = np.arange(0.0, t[-1] + 0.5 / layout.fps, 1.0 / layout.fps)
    right = np.clip(np.searchsorted(t, targets), 1, len(t) - 1)
    left = right - 1
    tie = 1e-4 / layout.fps
    earlier = np.abs(t[left] - targets) <= np.abs(t[right] - targets) + tie
    return np.unique(np.where(earlier, left, right))


# ---------------------------------------------------------------------------------------------
# States and actions


def pose_to_euler_state(state: np.ndarray, rotation: str, where: str) -> np.ndarray:
    """A pose state ``[xyz, orientation, gripper]`` -> ``[xyz, roll, pitch, yaw, gripper]``
    (extrinsic xyz Euler angles, R = Rz(yaw) Ry(pitch) Rx(roll))."""
    width = {"euler_xyz": 7, "rotvec": 7, "quat_xyzw": 8, "quat_wxyz": 8}[rotation]
    if state.shape[1] != width:
        raise DatasetError(
            f"{where}: an end-effector pose state with state_rotation={rotation} needs {width} "
            f"values [x, y, z, orientation, gripper] per row, got {state.shape[1]}"
        )
    if rotation == "euler_xyz":
        return state
    from scipy.spatial.transform import Rotation

    rot = state[:, 3:-1]
    if rotation == "rotvec":
        mats = Rotation.from_rotvec(rot).as_matrix()
    else:
        quat = rot if rotation == "quat_xyzw" else rot[:, [1, 2, 3, 0]]
        norms = np.linalg.norm(quat, axis=1)
        if np.any(norms < 1e-6):
            row = int(np.argmax(norms < 1e-6))
            raise DatasetError(f"{where}: row {row} has a zero quaternion")
        mats = Rotation.from_quat(quat).as_matrix()
    return np.concatenate([state[:, :3], euler_xyz_from_matrix(mats), state[:, -1:]], axis=1)


def ee_delta_from_states(states: np.ndarray) -> np.ndarray:
    """(T, 7) ``[xyz, rpy, gripper]`` -> (T-1, 7) DROID / V-JEPA 2-AC deltas: ``xyz[t+1]-xyz[t]``,
    extrinsic xyz Euler angles of ``R[t+1] R[t]^T`` (no 2 pi jumps where roll wraps),
    ``g[t+1]-g[t]``."""
    rots = matrix_from_euler_xyz(states[:, 3:6])
    delta_rot = rots[1:] @ np.swapaxes(rots[:-1], -1, -2)
    return np.concatenate(
        [
            states[1:, :3] - states[:-1, :3],
            euler_xyz_from_matrix(delta_rot),
            states[1:, 6:7] - states[:-1, 6:7],
        ],
        axis=1,
    )


def aggregate_actions(action: np.ndarray, rows: np.ndarray, kind: str) -> np.ndarray:
    """Recorded actions of the source rows -> one action per kept row.

    Kept row j's action covers source rows ``rows[j] .. rows[j+1]-1`` (the actions applied
    between two kept frames), composed by ``kind`` (:func:`compose_actions`); the last kept row
    gets zeros (no action after the last frame).
    """
    out = np.zeros((len(rows), action.shape[1]), np.float64)
    for j in range(len(rows) - 1):
        seg = action[rows[j] : rows[j + 1]]
        out[j] = seg[0] if len(seg) == 1 else compose_actions(seg, np.ones(len(seg), bool), kind)
    return out


def _check_rows(episode: SourceEpisode) -> None:
    """Timestamps strictly increasing; state/action finite; naming the file, field and row."""
    ts = episode.timestamps
    where = f"{episode.table} ({episode.ref.label})"
    if len(ts) < 2:
        raise DatasetError(f"{where}: episode has {len(ts)} rows; need at least 2")
    if not np.all(np.isfinite(ts)):
        raise DatasetError(
            f"{where}: field 'timestamp' has NaN/inf at row {int(np.argmin(np.isfinite(ts)))}"
        )
    steps = np.diff(ts)
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 1
        raise DatasetError(
            f"{where}: field 'timestamp' is not strictly increasing at row {row} "
            f"({ts[row - 1]:.6f} s then {ts[row]:.6f} s)"
        )
    arrays = ((episode.fields[0], episode.state), (episode.fields[1], episode.action))
    for name, values in arrays:
        if values is None:
            continue
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise DatasetError(
                f"{where}: field {name!r} has NaN/inf in {len(rows)} row(s), first row "
                f"{int(rows[0])}"
            )


# ---------------------------------------------------------------------------------------------
# Frames


def read_camera(
    video: VideoRef,
    times: np.ndarray,
    keep: np.ndarray,
    layout: ImportPlan,
    table: Path,
) -> np.ndarray:
    """Decode one camera's frames of an episode, check one frame per table row at the row's
    timestamp, and return the kept rows' frames fitted to ``image_size`` squares.

    Args:
        video: the file and the episode's place in it.
        times: (N,) row timestamps from the episode start.
        keep: indices of the rows to return.
        table: the table file (named in errors).

    Raises:
        DatasetError: the video is missing/corrupt, has fewer or more frames than the table has
            rows, or a frame's time is off its row's timestamp by more than the tolerance.
    """
    info = probe_video(video.path)
    fps = info.fps or layout.source_fps
    tol = layout.tolerance_s or TIME_TOLERANCE_FRAMES / fps
    expected = video.start_s + times
    # The file's last frame starts one period before its end: does it end before the last row?
    ends_early = info.duration_s is not None and info.duration_s - 1.0 / fps + tol < expected[-1]
    window = max(8, DECODE_BUDGET_BYTES // max(1, info.width * info.height * 3))
    out = []
    n = len(times)
    for a in range(0, n, window):
        b = min(n, a + window)
        # Windows split half-way between rows, so a frame off its row's time by up to half a
        # period (within timestamp_tolerance_s) lands in its row's window, not the next one;
        # read_video treats its bounds with a quarter-frame tolerance, added here so that the
        # effective split is the midpoint itself.
        shift = TIME_TOLERANCE_FRAMES / fps
        start = (expected[a - 1] + expected[a]) / 2 + shift if a else (video.start_s or None)
        end = (expected[b - 1] + expected[b]) / 2 + shift if b < n else video.end_s
        frames, got = read_video(video.path, start_s=start, end_s=end)
        want = expected[a:b]
        if len(got) != len(want):
            short = len(got) < len(want) and (
                ends_early or (b == n and (not len(got) or got[-1] < want[-1] - tol))
            )
            _frame_count_error(video, table, (a, b, n), got, want, end, short)
        off = np.abs(got - want)
        if np.any(off > tol):
            k = int(np.argmax(off > tol))
            raise DatasetError(
                f"{video.path}: frame {a + k} of the episode is at {got[k]:.4f} s but row {a + k} "
                f"of {table} (field 'timestamp') says {want[k]:.4f} s (tolerance {tol:.4f} s); "
                "frames are missing or out of step with the table"
            )
        sel = keep[(keep >= a) & (keep < b)] - a
        if len(sel):
            out.append(fit_frames(frames[sel], layout.image_size, layout.image_policy))
    return np.concatenate(out)


def _frame_count_error(video, table, rows, got, want, end, short: bool) -> None:
    """DatasetError for a window of rows ``a .. b-1`` (of ``n``) whose decoded frame count
    differs from its table rows."""
    a, b, n = rows
    span = f"{want[0]:.3f}-{(end if end is not None else want[-1]):.3f} s"
    if len(got) > len(want):
        what = "the video has more frames than its table has rows"
    else:
        what = "the video is shorter than its table" if short else "frames are missing"
    raise DatasetError(
        f"{video.path}: {len(got)} video frames in {span} but {table} has {len(want)} rows there "
        f"(rows {a}-{b - 1} of {n}, field 'timestamp'); {what}"
    )


# ---------------------------------------------------------------------------------------------
# One episode, end to end


def convert_episode(
    episode: SourceEpisode, layout: ImportPlan, cameras: list[str]
) -> tuple[StepTable, dict[str, np.ndarray]]:
    """Source rows and videos -> our StepTable and {view: (T, S, S, 3) uint8} frames."""
    _check_rows(episode)
    where = f"{episode.table} ({episode.ref.label})"
    rows = select_rows(episode.timestamps, layout)
    if len(rows) < 2:
        raise DatasetError(
            f"{where}: only {len(rows)} row(s) at {layout.fps} Hz; need at least 2 for an action"
        )
    state = episode.state
    if layout.action_kind == "ee_delta":
        state = pose_to_euler_state(
            state, layout.state_rotation, f"{where}: field {episode.fields[0]!r}"
        )
    kept_state = state[rows]
    if layout.action_mode == "ee_delta_from_state":
        action = np.concatenate([ee_delta_from_states(kept_state), np.zeros((1, 7))])
    else:
        action = aggregate_actions(episode.action, rows, layout.action_kind)
    frames = {}
    for view in cameras:
        if view not in episode.videos:
            raise DatasetError(f"{where}: no video for camera {view!r}")
        frames[view] = read_camera(
            episode.videos[view], episode.timestamps, rows, layout, episode.table
        )
    times = episode.timestamps[rows] - episode.timestamps[rows[0]]
    extra = {
        k: (v[rows] if np.ndim(v) == 1 and len(v) == len(episode.timestamps) else v)
        for k, v in episode.extra.items()
    }
    table = make_step_table(
        kept_state,
        action,
        layout.fps,
        time_s=times,
        task=np.asarray(episode.task),
        source_episode=np.asarray(episode.ref.index, np.int64),
        source_row=rows.astype(np.int64),
        **extra,
    )
    return table, frames


# ---------------------------------------------------------------------------------------------
# Statistics of the imported steps


def layout_stats(tables: list[StepTable]) -> dict[str, tuple[float, ...]]:
    """Per-dim statistics for DatasetMeta over every step of ``tables``.

    Bounds: the 1st / 99th percentile of the valid actions widened by 10% of their spread on each
    side and clipped to the observed min / max (robust to a few outliers, never outside what was
    recorded). Means / stds: valid actions; all state rows.
    """
    if not tables:
        return {}
    actions = np.concatenate([t.action[t.action_valid] for t in tables]).astype(np.float64)
    states = np.concatenate([t.state for t in tables]).astype(np.float64)
    out: dict[str, tuple[float, ...]] = {
        "state_mean": tuple(states.mean(0).tolist()),
        "state_std": tuple(states.std(0).tolist()),
    }
    if len(actions):
        q01, q99 = np.percentile(actions, [1.0, 99.0], axis=0)
        spread = q99 - q01
        low = np.maximum(actions.min(0), q01 - 0.1 * spread)
        high = np.minimum(actions.max(0), q99 + 0.1 * spread)
        # A dim that rarely moves (a gripper that changes in < 1 % of steps) collapses the
        # percentiles: its bounds are then what was observed, and a dim that never moved gets
        # a small symmetric box around its value so the planner's box stays valid (low < high).
        thin = high - low <= 1e-6 * np.maximum(1.0, np.abs(actions).max(0))
        low[thin], high[thin] = actions.min(0)[thin], actions.max(0)[thin]
        flat = high - low <= 1e-9
        pad = np.maximum(1e-3, 1e-3 * np.abs(low[flat]))
        low[flat], high[flat] = low[flat] - pad, high[flat] + pad
        out["action_low"] = tuple(low.tolist())
        out["action_high"] = tuple(high.tolist())
        out["action_mean"] = tuple(actions.mean(0).tolist())
        out["action_std"] = tuple(actions.std(0).tolist())
    return out
