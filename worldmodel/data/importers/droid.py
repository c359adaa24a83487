"""Reader of DROID raw episodes, the layout the official V-JEPA 2 DROID loader reads.

Facts checked against facebookresearch/vjepa2 c2963a47 (``app/vjepa_droid/droid.py``) and
droid-dataset/droid 1548722f (``droid/postprocessing/schema.py``, ``util/svo2mp4.py``,
``franka/robot.py``):

- an episode folder holds ``trajectory.h5`` and a metadata ``*.json`` (vjepa2 takes the first
  ``*.json`` it lists; DROID writes ``metadata_<uuid>.json``; we prefer that name, then sort);
- the metadata names each camera's video: ``wrist_mp4_path``, ``ext1_mp4_path``, ``ext2_mp4_path``
  and, derived from the extrinsics, ``left_mp4_path`` / ``right_mp4_path`` (the exterior camera
  with the larger extrinsic y is the left one); the paths are relative to the lab folder, so only
  the part after ``recordings/MP4/`` is used: ``<episode>/recordings/MP4/<serial>.mp4``;
- ``trajectory.h5``: ``observation/robot_state/cartesian_position`` (T, 6: xyz + extrinsic xyz
  Euler), ``gripper_position`` (T,) with 1 = closed, ``joint_positions`` (T, 7);
  ``action/cartesian_position``, ``action/gripper_position``, ``action/joint_position``, ... ;
- video frame i belongs to trajectory row i (vjepa2 indexes both with the same indices); DROID
  records at 15 Hz;
- V-JEPA 2-AC's actions are derived from the state: xyz differences, the extrinsic xyz Euler
  angles of ``R[t+1] R[t]^T`` and the gripper difference (``poses_to_diffs``).

Episodes are found by scanning ``src`` for ``trajectory.h5`` (sorted by relative path); there is
no episode list to write by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from worldmodel.data.importers.common import (
    EpisodeRef,
    SourceEpisode,
    VideoRef,
    parse_spec,
    part_names,
    require,
    select_part,
)
from worldmodel.data.importers.config import ImportConfig
from worldmodel.data.video import probe_video
from worldmodel.errors import DatasetError

TRAJECTORY = "trajectory.h5"
MP4_MARK = "recordings/MP4/"
CAMERA_KEYS = ("left", "right", "wrist", "ext1", "ext2")
DEFAULT_CAMERAS = ("left", "right", "wrist")
DEFAULT_KEY = "cartesian_position+gripper_position"
STATE_GROUP = "observation/robot_state"
ACTION_GROUP = "action"
DROID_FPS = 15.0  # droid/robot_env.py control_hz


def find_episodes(root: Path) -> list[Path]:
    """Every folder under ``root`` holding a trajectory.h5, sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "recordings")  # videos never hold episodes
        if TRAJECTORY in files:
            found.append(Path(folder))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def is_droid(root: Path) -> bool:
    return bool(find_episodes(root)) if root.is_dir() else False


def metadata_file(folder: Path) -> Path:
    """The episode's metadata JSON (``metadata_*.json`` first, then any ``*.json``)."""
    files = sorted(folder.glob("*.json"), key=lambda p: (not p.name.startswith("metadata"), p.name))
    if not files:
        raise DatasetError(f"{folder}: no metadata *.json naming the camera videos")
    return files[0]


def camera_videos(folder: Path) -> tuple[Path, dict[str, Path], str]:
    """(metadata file, {camera key: mp4 path}, task text) of one episode folder."""
    path = metadata_file(folder)
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    videos = {}
    for key in ("wrist", "ext1", "ext2", "left", "right"):
        value = meta.get(f"{key}_mp4_path")
        if isinstance(value, str) and value:
            videos[key] = folder / "recordings" / "MP4" / value.split(MP4_MARK)[-1]
    if "left" not in videos and {"ext1", "ext2"} <= set(videos):
        # Older records: tell left from right by the extrinsic y (DROID's svo2mp4 rule).
        try:
            y1 = float(meta["ext1_cam_extrinsics"][1])
            y2 = float(meta["ext2_cam_extrinsics"][1])
        except (KeyError, TypeError, IndexError, ValueError):
            pass
        else:
            left, right = ("ext1", "ext2") if y1 > y2 else ("ext2", "ext1")
            videos["left"], videos["right"] = videos[left], videos[right]
    return path, videos, str(meta.get("current_task", "") or "")


class DroidSource:
    """A folder tree of DROID raw episodes."""

    format = "droid"

    def __init__(self, root: Path, cfg: ImportConfig) -> None:
        self.h5py = require("h5py")
        self.root = root
        folders = find_episodes(root)
        if not folders:
            raise DatasetError(f"{root}: no DROID episode folders (no {TRAJECTORY} found)")
        self.folders = folders
        lo, hi = cfg.episode_range
        self.refs = [
            EpisodeRef(i, f"episode {i} ({f.relative_to(root).as_posix() or '.'})")
            for i, f in enumerate(folders)
            if i >= lo and (hi is None or i < hi)
        ]
        if cfg.cameras:
            unknown = [k for k in cfg.cameras if k not in CAMERA_KEYS]
            if unknown:
                raise DatasetError(
                    f"{root}: DROID cameras {unknown} unknown; the metadata names {list(CAMERA_KEYS)}"
                )
            self.cameras = dict(cfg.cameras)
        else:
            self.cameras = self._default_cameras()
        self.state_parts = parse_spec(cfg.state_key or DEFAULT_KEY, "state_key")
        self.needs_action = cfg.action_mode == "as_recorded"
        self.action_parts = (
            parse_spec(cfg.action_key or DEFAULT_KEY, "action_key") if self.needs_action else []
        )
        self.fps = float(cfg.source_fps) or self._video_fps()
        self.state_names, self.action_names = self._names()

    def _default_cameras(self) -> dict[str, str]:
        """left, right, wrist as far as the first readable episode's metadata names them."""
        for ref in self.refs:
            try:
                _, videos, _ = camera_videos(self.folders[ref.index])
            except DatasetError:
                continue
            found = {k: k for k in DEFAULT_CAMERAS if k in videos}
            if found:
                return found
        raise DatasetError(
            f"{self.root}: no episode's metadata *.json names a camera video "
            f"({', '.join(k + '_mp4_path' for k in CAMERA_KEYS)})"
        )

    def _video_fps(self) -> float:
        """The source rate: the first readable video's frame rate, else DROID's 15 Hz."""
        for ref in self.refs[:8]:
            try:
                for path in self.video_refs(ref).values():
                    fps = probe_video(path.path).fps
                    if fps > 0:
                        return fps
            except DatasetError:
                continue
        return DROID_FPS

    def _dataset_path(self, name: str, group: str) -> str:
        return name if "/" in name else f"{group}/{name}"

    def _names(self) -> tuple[list[str], list[str]]:
        """Names of the state / action entries, from the first readable trajectory.h5."""
        for ref in self.refs[:8]:
            try:
                with self._open(self.folders[ref.index] / TRAJECTORY) as h5:
                    out = []
                    for parts, group in (
                        (self.state_parts, STATE_GROUP),
                        (self.action_parts, ACTION_GROUP),
                    ):
                        names: list[str] = []
                        for part in parts:
                            shape = h5[self._dataset_path(part.name, group)].shape
                            width = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                            names += part_names(part, width, None)
                        out.append(names)
                    return out[0], out[1]
            except (DatasetError, KeyError):
                continue
        raise DatasetError(
            f"{self.root}: none of the first episodes has a readable trajectory.h5 with the "
            f"fields state_key / action_key name ({', '.join(p.name for p in self.state_parts)})"
        )

    def describe(self) -> dict:
        return {
            "format": "droid raw",
            "path": str(self.root),
            "episodes_found": len(self.folders),
            "fps": self.fps,
            "cameras": self.cameras,
        }

    def video_refs(self, ref: EpisodeRef) -> dict[str, VideoRef]:
        meta_path, videos, _ = camera_videos(self.folders[ref.index])
        out = {}
        for key, view in self.cameras.items():
            if key not in videos:
                raise DatasetError(
                    f"{meta_path}: field '{key}_mp4_path' missing (camera {key!r} wanted)"
                )
            out[view] = VideoRef(videos[key])
        return out

    def _open(self, path: Path):
        if not path.is_file():
            raise DatasetError(f"{path}: missing file")
        try:
            return self.h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"{path}: unreadable HDF5 file: {exc}") from exc

    def _read(self, h5, parts, group: str, path: Path) -> tuple[np.ndarray, str]:
        """Concatenated (T, D) float64 of the h5 datasets ``parts`` (under ``group``)."""
        columns = []
        for part in parts:
            name = self._dataset_path(part.name, group)
            if name not in h5:
                parent = name.rsplit("/", 1)[0]
                have = sorted(h5[parent].keys()) if parent in h5 else []
                raise DatasetError(f"{path}: missing field {name!r}; {parent} has {have}")
            try:
                values = np.asarray(h5[name][()], dtype=np.float64)
            except (OSError, TypeError, ValueError) as exc:
                raise DatasetError(f"{path}: field {name!r} unreadable: {exc}") from exc
            values = values.reshape(len(values), -1) if values.ndim != 1 else values[:, None]
            columns.append((name, select_part(values, part)))
        lengths = {len(v) for _, v in columns}
        if len(lengths) > 1:
            raise DatasetError(
                f"{path}: fields have different row counts: "
                + ", ".join(f"{n} {len(v)}" for n, v in columns)
            )
        return np.concatenate([v for _, v in columns], axis=1), "+".join(n for n, _ in columns)

    def load(self, ref: EpisodeRef) -> SourceEpisode:
        folder = self.folders[ref.index]
        path = folder / TRAJECTORY
        videos = self.video_refs(ref)
        _, _, task = camera_videos(folder)
        try:
            with self._open(path) as h5:
                state, state_name = self._read(h5, self.state_parts, STATE_GROUP, path)
                action, action_name = (
                    self._read(h5, self.action_parts, ACTION_GROUP, path)
                    if self.action_parts
                    else (None, "action")
                )
        except OSError as exc:  # a damaged file can also fail while reading
            raise DatasetError(f"{path}: unreadable HDF5 file: {exc}") from exc
        if action is not None and len(action) != len(state):
            raise DatasetError(
                f"{path}: field {action_name!r} has {len(action)} rows but {state_name!r} has "
                f"{len(state)}"
            )
        return SourceEpisode(
            ref=ref,
            table=path,
            timestamps=np.arange(len(state), dtype=np.float64) / self.fps,
            state=state,
            action=action,
            videos=videos,
            task=task,
            extra={"source_path": np.asarray(folder.relative_to(self.root).as_posix())},
            fields=(state_name, action_name),
        )
