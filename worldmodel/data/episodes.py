"""Episode datasets on disk: the format, and a random-access reader built on PyAV.

Format (version 1)
------------------
::

    root/
      meta.json                  dataset metadata (below)
      import_summary.json        what the last wm-import run did (imported datasets only)
      episodes/
        ep_000000/               one directory per complete episode (6-digit index)
          exterior.mp4           one mp4 per camera named in meta.json (``wrist.mp4`` if recorded)
          steps.npz              per-step table, one row per video frame
        ep_000001/
        ep_000002.1234.tmp/      an episode being written (or left by a killed writer): ignored

Videos: H.264 (libx264 through imageio-ffmpeg), ``yuv444p`` chroma, ``crf`` 10 (near lossless;
mean absolute pixel error around 1/255), constant frame rate ``fps``, exactly one video frame per
table row. Frames are RGB, ``image_size`` x ``image_size`` pixels (each camera's own
``width``/``height`` are in meta.json). Decoded with PyAV (:mod:`worldmodel.data.video`) on the
CPU; the writer refuses widths that divide 144 (16, 24, 48, 72 px...), which decord 0.6, still
used by other tools, cannot decode.

``steps.npz`` (``numpy.savez``, uncompressed, loadable with ``allow_pickle=False``), T rows:

==============  =========  ========  =====================================================
field           dtype      shape     meaning
==============  =========  ========  =====================================================
state           float32    (T, S)    state at frame t (S = meta.json state_dim; default 7:
                                     [x, y, z, roll, pitch, yaw, gripper])
action          float32    (T, A)    action applied at frame t, leads to frame t+1; last row 0
                                     (A = meta.json action_dim; default 7)
time_s          float64    (T,)      seconds since reset (t / fps)
action_valid    bool       (T,)      True where ``action`` was applied; False on the last row
is_success      bool       (T,)      the env's success flag at frame t
task_id         int64      ()        evaluation instance passed to reset, -1 for a free seed
==============  =========  ========  =====================================================

Optional fields written by ``wm-collect``: ``seed`` int64 () reset seed, ``expert_mode`` str ()
one of expert/noisy/explore, ``episode_index`` int64 (), ``task_distance`` float32 (T,)
privileged distance to the goal, ``object_pos`` float32 (T, 3) privileged position of the
task object (NaN when the task has none; for probes and oracles, never a model input). Written
by ``wm-import``: ``task`` str () task text, ``source_episode`` int64 (), ``source_row`` int64
(T,) the source table row of each frame, ``task_index`` int64 (T,) (LeRobot), ``source_path``
str () (DROID). Readers keep unknown fields in ``StepTable.extra``.

Conventions (also spelled out as text in meta.json): the layout is data. ``state_dim``,
``action_dim``, ``state_names``, ``action_names`` and ``action_kind`` (``ee_delta``, ``delta`` or
``absolute``, see :class:`~worldmodel.data.meta.DatasetMeta`) say what the columns mean. The
default layout (our simulator data, and any meta.json that names no layout) is the end-effector
pose in the robot base frame, orientation as extrinsic xyz Euler angles (R = Rz(yaw) Ry(pitch)
Rx(roll)), gripper in [0, 1] with 1 closed; the action is the delta actually applied after
clipping to the env's bounds: [dx, dy, dz] metres, [droll, dpitch, dyaw] = extrinsic xyz Euler of
R_next R_cur^T, dgripper.

``meta.json`` keys: ``format`` ("wm-episodes"), ``format_version`` (1), ``fps``, ``image_size``,
``cameras`` (list of {name, width, height, fovy_deg (vertical), K (3x3 pinhole), parent
("world" or the body it is mounted on), pos_m, quat_wxyz (pose in the parent frame, MuJoCo
camera convention: looks along -z, +y up)}), ``env_id``, ``env_version``, ``task``,
``created_by``, ``video`` {codec, pix_fmt, crf, preset}, ``action_dim``, ``state_dim``,
``state_names``, ``action_names``, ``action_kind``, the per-dim statistics ``action_low``,
``action_high``, ``action_mean``, ``action_std``, ``state_mean``, ``state_std`` (empty = unknown),
``image_policy`` (crop / pad / resize), ``action_convention``, ``state_convention``,
``camera_convention`` (text), ``extra`` (e.g. the collection or import config). An imported
camera has ``fovy_deg`` null (``K`` null: intrinsics unknown), ``parent`` "unknown" and
``source_image_size`` [w, h] of the recorded frames.

Atomicity: an episode is written into ``ep_XXXXXX.<pid>.tmp`` and renamed to ``ep_XXXXXX`` once
every file is closed; a directory named ``ep_`` + 6 digits is therefore always complete.

Clips: ``read_clip(i, start, T, stride)`` returns frames ``start, start+stride, ...`` and their
states; ``actions[k]`` leads from clip frame k to k+1 and is the composition of the ``stride``
raw actions in between (see :mod:`worldmodel.data.actions`); the last row leads out of the clip
(zero where the episode ends), composed by the dataset's ``action_kind``.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from worldmodel.data.actions import compose_actions
from worldmodel.data.meta import META_FILE, DatasetMeta, read_meta
from worldmodel.data.steps import STEPS_FILE, StepTable, load_steps
from worldmodel.data.video import decode_frames, open_video
from worldmodel.data.writer import EPISODE_RE, EPISODES_DIR, EpisodeWriter
from worldmodel.errors import DatasetError

__all__ = ["Clip", "DatasetMeta", "EpisodeDataset", "EpisodeWriter", "open_dataset"]


# Open video decoders must not cross a fork (a child that inherited decord's hung in its own
# decord calls with DataLoader fork workers; FFmpeg decoder state is not fork-safe either).
# Before any fork every open dataset closes its readers; they reopen lazily (a few ms each).
_OPEN_DATASETS: weakref.WeakSet[EpisodeDataset] = weakref.WeakSet()


def _close_all_readers() -> None:
    for dataset in list(_OPEN_DATASETS):
        dataset.close()


os.register_at_fork(before=_close_all_readers)


class Clip(NamedTuple):
    """A clip of T frames of one camera with the matching proprioception and actions."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    states: np.ndarray  # (T, state_dim) float32
    actions: np.ndarray  # (T, action_dim) float32, actions[k] leads from frame k to frame k+1


class EpisodeDataset:
    """Random access to the complete episodes of a dataset (see the module docstring).

    Tables are loaded (and validated) at open time; videos are opened lazily (PyAV) and
    kept in a small LRU cache. The object pickles without its open readers, so it can be handed
    to DataLoader worker processes.
    """

    def __init__(self, root: str | os.PathLike, max_open_videos: int = 8) -> None:
        self.root = Path(root)
        self.meta: DatasetMeta = read_meta(self.root)
        ep_root = self.root / EPISODES_DIR
        names = (
            sorted(p.name for p in ep_root.iterdir() if EPISODE_RE.match(p.name))
            if ep_root.is_dir()
            else []
        )
        self.episode_names: list[str] = names
        dims = (self.meta.state_dim, self.meta.action_dim)
        self._tables: list[StepTable] = [load_steps(ep_root / n / STEPS_FILE, *dims) for n in names]
        self._max_open = max_open_videos
        self._pid = os.getpid()
        _OPEN_DATASETS.add(self)
        self._readers: OrderedDict[tuple[int, str], object] = OrderedDict()
        for name in names:
            for cam in self.meta.camera_names:
                path = ep_root / name / f"{cam}.mp4"
                if not path.is_file():
                    raise DatasetError(
                        f"{path}: missing video file for camera {cam!r} "
                        f"(meta.json lists cameras {self.meta.camera_names})"
                    )

    def __len__(self) -> int:
        return len(self.episode_names)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()  # video readers do not pickle; reopen lazily
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _OPEN_DATASETS.add(self)

    def close(self) -> None:
        """Close the cached video readers (they reopen on the next read)."""
        self._readers.clear()

    def episode_dir(self, i: int) -> Path:
        """Directory of the i-th complete episode (sorted by index)."""
        return self.root / EPISODES_DIR / self.episode_names[i]

    def episode_length(self, i: int) -> int:
        """Number of frames (= table rows) of episode i."""
        return len(self._tables[i])

    def steps(self, i: int) -> StepTable:
        """The validated per-step table of episode i."""
        return self._tables[i]

    def _reader(self, i: int, camera: str):
        """Cached video reader of episode i / camera, checked against the table length."""
        if self._pid != os.getpid():  # forked (DataLoader worker): never share decoders
            self._readers, self._pid = OrderedDict(), os.getpid()
        key = (i, camera)
        if key in self._readers:
            self._readers.move_to_end(key)
            return self._readers[key]
        self.meta.camera(camera)  # KeyError naming the known cameras
        path = self.episode_dir(i) / f"{camera}.mp4"
        reader = open_video(path)
        if len(reader) != self.episode_length(i):
            raise DatasetError(
                f"{path}: video has {len(reader)} frames but "
                f"{self.episode_dir(i) / STEPS_FILE} has "
                f"{self.episode_length(i)} rows; expected equal"
            )
        self._readers[key] = reader
        while len(self._readers) > self._max_open:
            self._readers.popitem(last=False)
        return reader

    def read_frames(self, i: int, indices: np.ndarray, camera: str = "exterior") -> np.ndarray:
        """Decode frames ``indices`` of episode i: (len(indices), H, W, 3) uint8.

        Raises:
            DatasetError: the video is missing or corrupt, or its frames are not the size
                meta.json gives the camera (e.g. a 32 px video in a 64 px dataset).
        """
        path = self.episode_dir(i) / f"{camera}.mp4"
        frames = decode_frames(self._reader(i, camera), indices, path)
        cam = self.meta.camera(camera)
        if frames.shape[1:] != (cam.height, cam.width, 3):
            raise DatasetError(
                f"{path}: frames are {frames.shape[2]}x{frames.shape[1]} px but "
                f"{self.root / META_FILE} gives camera {camera!r} width x height "
                f"{cam.width}x{cam.height} (image_size {self.meta.image_size}); expected equal"
            )
        return frames

    def read_episode_frames(self, i: int, camera: str = "exterior") -> np.ndarray:
        """All frames of episode i: (T, H, W, 3) uint8."""
        return self.read_frames(i, np.arange(self.episode_length(i)), camera)

    def read_clip(
        self, i: int, start: int, num_frames: int, stride: int = 1, camera: str = "exterior"
    ) -> Clip:
        """Frames ``start + k*stride`` (k < num_frames) of episode i with states and actions.

        Raises:
            IndexError: the clip does not fit into the episode.
            DatasetError: the video is missing, corrupt, or its frame count differs from the
                table.
        """
        length = self.episode_length(i)
        last = start + (num_frames - 1) * stride
        if num_frames < 1 or stride < 1 or start < 0 or last >= length:
            raise IndexError(
                f"clip start={start} num_frames={num_frames} stride={stride} does "
                f"not fit episode {self.episode_names[i]} of {length} frames"
            )
        idx = start + stride * np.arange(num_frames)
        table = self._tables[i]
        if stride == 1:
            actions = table.action[idx]
        else:
            valid = table.action_valid
            kind = self.meta.action_kind
            actions = np.stack(
                [
                    compose_actions(table.action[t : t + stride], valid[t : t + stride], kind)
                    for t in idx
                ]
            )
        frames = self.read_frames(i, idx, camera)
        return Clip(frames=frames, states=table.state[idx], actions=actions)

    def verify(self, i: int) -> None:
        """Open every video of episode i, check its frame count, decode its last frame and check
        its size against meta.json."""
        for camera in self.meta.camera_names:
            self.read_frames(i, np.array([self.episode_length(i) - 1]), camera)


def open_dataset(root: str | os.PathLike, verify_videos: bool = False) -> EpisodeDataset:
    """Open an episode dataset; with ``verify_videos`` every mp4 is opened and checked.

    Raises:
        DatasetError: missing/invalid meta.json, bad steps.npz, missing mp4, and (with
            ``verify_videos``) corrupt mp4, frame count != table rows or frame size != the
            camera's size in meta.json.
    """
    dataset = EpisodeDataset(root)
    if verify_videos:
        for i in range(len(dataset)):
            dataset.verify(i)
    return dataset
