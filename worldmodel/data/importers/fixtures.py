"""Writers of small recordings in the published layouts: LeRobot v2.1, LeRobot v3.0 (several
episodes per parquet and per mp4) and DROID raw. Tests, docs and the import benchmark build their
sources with these; nothing is downloaded.

The layouts follow the sources listed in :mod:`.lerobot` and :mod:`.droid`. Frames carry their
own index so a test can tell which source frame an imported frame came from:
:func:`frame_index_of` reads it back (robust to lossy codecs and to crop / pad / resize).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worldmodel.data.importers.common import require
from worldmodel.data.meta import VideoSpec
from worldmodel.data.video import write_video

# The path templates LeRobot writes into info.json (see the module docstring of .lerobot).
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
# Frame index -> grey level of the frame's centre block (20 levels apart survive AV1 at crf 30).
_LEVEL0, _LEVEL_STEP = 16, 20


@dataclass
class FixtureEpisode:
    """One synthetic episode: per-row state / action, frames per camera key, task text."""

    states: np.ndarray  # (T, Ds) float32
    actions: np.ndarray  # (T, Da) float32
    frames: dict[str, np.ndarray]  # camera key -> (T, H, W, 3) uint8
    task: str = "pick the cube"
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.states)


def make_frames(length: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a random colour background and a centre block whose grey level
    encodes the frame index modulo 12 (see :func:`frame_index_of`)."""
    rng = np.random.default_rng(seed)
    frames = np.empty((length, height, width, 3), np.uint8)
    frames[:] = rng.integers(0, 60, size=3, dtype=np.uint8)
    side = min(width, height) // 2
    top, left = (height - side) // 2, (width - side) // 2
    for i in range(length):
        frames[i, top : top + side, left : left + side] = _LEVEL0 + _LEVEL_STEP * (i % 12)
    return frames


def frame_index_of(frame: np.ndarray) -> int:
    """The frame index (modulo 12) encoded by :func:`make_frames`, read from the centre."""
    h, w = frame.shape[:2]
    centre = frame[h * 3 // 8 : h * 5 // 8, w * 3 // 8 : w * 5 // 8].astype(np.float64).mean()
    return round((centre - _LEVEL0) / _LEVEL_STEP) % 12


def make_episodes(
    num: int,
    length: int | list[int] = 12,
    cameras: tuple[str, ...] = ("observation.images.front",),
    size: tuple[int, int] = (64, 48),
    state_dim: int = 6,
    action_dim: int | None = None,
    seed: int = 0,
) -> list[FixtureEpisode]:
    """``num`` episodes of random-walk states, actions = next state (absolute targets), and
    frames of ``size`` = (width, height) for each camera key."""
    rng = np.random.default_rng(seed)
    lengths = [length] * num if isinstance(length, int) else list(length)
    action_dim = state_dim if action_dim is None else action_dim
    out = []
    for e, n in enumerate(lengths):
        states = np.cumsum(rng.normal(0.0, 0.05, size=(n, state_dim)), axis=0).astype(np.float32)
        actions = np.zeros((n, action_dim), np.float32)
        k = min(state_dim, action_dim)
        actions[:-1, :k] = states[1:, :k]
        actions[-1, :k] = states[-1, :k]
        frames = {
            key: make_frames(n, size[0], size[1], seed=seed * 101 + e * 7 + c)
            for c, key in enumerate(cameras)
        }
        out.append(FixtureEpisode(states, actions, frames, task=f"task {e % 2}"))
    return out


def ee_episodes(
    num: int,
    length: int = 12,
    cameras: tuple[str, ...] = ("observation.images.front",),
    size: tuple[int, int] = (64, 48),
    rotation: str = "euler_xyz",
    seed: int = 0,
) -> list[FixtureEpisode]:
    """End-effector episodes: state ``[xyz, orientation, gripper]`` (orientation as extrinsic
    xyz Euler angles with roll near +-pi so it wraps, or as ``rotvec`` / ``quat_xyzw``), action =
    the commanded next pose (absolute, same layout)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    out = []
    for e in range(num):
        xyz = 0.4 + np.cumsum(rng.normal(0.0, 0.01, size=(length, 3)), axis=0)
        euler = np.cumsum(rng.normal(0.0, 0.05, size=(length, 3)), axis=0)
        euler[:, 0] += np.pi - 0.05  # roll crosses +pi -> -pi, as in DROID
        euler = (euler + np.pi) % (2 * np.pi) - np.pi
        grip = np.clip(np.linspace(0.0, 1.0, length) + rng.normal(0, 0.05, length), 0, 1)[:, None]
        rot = Rotation.from_euler("xyz", euler)
        orient = {
            "euler_xyz": euler,
            "rotvec": rot.as_rotvec(),
            "quat_xyzw": rot.as_quat(),
        }[rotation]
        states = np.concatenate([xyz, orient, grip], axis=1).astype(np.float32)
        actions = np.concatenate([states[1:], states[-1:]]).astype(np.float32)
        frames = {
            key: make_frames(length, size[0], size[1], seed=seed * 101 + e * 7 + c)
            for c, key in enumerate(cameras)
        }
        out.append(FixtureEpisode(states, actions, frames, task="stack the blocks"))
    return out


def _video_spec(crf: int = 18) -> VideoSpec:
    return VideoSpec(codec="libx264", pix_fmt="yuv420p", crf=crf, preset="ultrafast")


def _features(
    episodes: list[FixtureEpisode],
    fps: float,
    codec: str,
    state_names: list[str] | None,
    action_names: list[str] | None,
) -> dict:
    ep = episodes[0]
    feats: dict[str, dict] = {}
    for key, frames in ep.frames.items():
        _, h, w, _ = frames.shape
        feats[key] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": {"libx264": "h264", "libsvtav1": "av1"}.get(codec, codec),
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    feats["observation.state"] = {
        "dtype": "float32",
        "shape": [ep.states.shape[1]],
        "names": state_names,
    }
    feats["action"] = {"dtype": "float32", "shape": [ep.actions.shape[1]], "names": action_names}
    for key, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _frame_table(
    episodes: list[tuple[int, FixtureEpisode]],
    fps: float,
    list_type: str,
    first: int,
    tasks: dict[str, int],
):
    """pyarrow table of the per-frame rows of ``(episode_index, episode)`` pairs."""
    pa = require("pyarrow")
    cols: dict[str, list] = {k: [] for k in ("state", "action", "ts", "fi", "ei", "ti")}
    for ep_index, ep in episodes:
        n = len(ep)
        cols["state"].append(ep.states)
        cols["action"].append(ep.actions)
        cols["ts"].append((np.arange(n) / fps).astype(np.float32))
        cols["fi"].append(np.arange(n, dtype=np.int64))
        cols["ei"].append(np.full(n, ep_index, np.int64))
        cols["ti"].append(np.full(n, tasks[ep.task], np.int64))

    def vectors(arrays: list[np.ndarray]):
        flat = np.concatenate(arrays).astype(np.float32)
        values = pa.array(flat.reshape(-1))
        if list_type == "fixed":  # LeRobot >= 0.4 native: fixed_size_list<float>[N]
            return pa.FixedSizeListArray.from_arrays(values, flat.shape[1])
        offsets = pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values)  # converted from v2.1: list<float>

    total = sum(len(ep) for _, ep in episodes)
    return pa.table(
        {
            "observation.state": vectors(cols["state"]),
            "action": vectors(cols["action"]),
            "timestamp": pa.array(np.concatenate(cols["ts"])),
            "frame_index": pa.array(np.concatenate(cols["fi"])),
            "episode_index": pa.array(np.concatenate(cols["ei"])),
            "index": pa.array(np.arange(first, first + total, dtype=np.int64)),
            "task_index": pa.array(np.concatenate(cols["ti"])),
        }
    )


def _tasks(episodes: list[FixtureEpisode]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ep in episodes:
        out.setdefault(ep.task, len(out))
    return out


def write_lerobot_v21(
    root: str | Path,
    episodes: list[FixtureEpisode],
    fps: float = 30,
    codec: str = "libx264",
    state_names: list[str] | None = None,
    action_names: list[str] | None = None,
    chunks_size: int = 1000,
    robot_type: str = "fixture_arm",
) -> Path:
    """A LeRobot v2.1 dataset: one parquet and one mp4 per camera per episode."""
    pq = require("pyarrow.parquet")
    root = Path(root)
    tasks = _tasks(episodes)
    first = 0
    for e, ep in enumerate(episodes):
        chunk = e // chunks_size
        path = root / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=e)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frame_table([(e, ep)], fps, "list", first, tasks), path)
        first += len(ep)
        for key, frames in ep.frames.items():
            vpath = root / V21_VIDEO_PATH.format(
                episode_chunk=chunk, video_key=key, episode_index=e
            )
            vpath.parent.mkdir(parents=True, exist_ok=True)
            write_video(vpath, frames, fps, _video_spec(), codec=codec)
    info = {
        "codebase_version": "v2.1",
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": first,
        "total_tasks": len(tasks),
        "total_videos": len(episodes) * len(episodes[0].frames),
        "total_chunks": (len(episodes) - 1) // chunks_size + 1,
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": V21_DATA_PATH,
        "video_path": V21_VIDEO_PATH,
        "features": _features(episodes, fps, codec, state_names, action_names),
    }
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    (meta / "episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": e, "tasks": [ep.task], "length": len(ep)}) + "\n"
            for e, ep in enumerate(episodes)
        )
    )
    (meta / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for t, i in tasks.items())
    )
    return root


def write_lerobot_v30(
    root: str | Path,
    episodes: list[FixtureEpisode],
    fps: float = 30,
    codec: str = "libsvtav1",
    episodes_per_file: int = 3,
    episodes_per_video: int = 2,
    state_names: list[str] | None = None,
    action_names: list[str] | None = None,
    task_column: str = "task",
    list_type: str = "fixed",
    robot_type: str = "fixture_arm",
) -> Path:
    """A LeRobot v3.0 dataset: ``episodes_per_file`` episodes per data parquet and
    ``episodes_per_video`` per mp4 (per camera, file indices independent of the data's), episode
    metadata in meta/episodes/, tasks in meta/tasks.parquet (task text in column ``task`` as
    LeRobot >= 0.5 writes it, or ``__index_level_0__`` as 0.4 does)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    root = Path(root)
    tasks = _tasks(episodes)
    cams = list(episodes[0].frames)
    records: list[dict] = []
    first = 0
    for start in range(0, len(episodes), episodes_per_file):
        group = list(enumerate(episodes))[start : start + episodes_per_file]
        file_index = start // episodes_per_file
        path = root / V30_DATA_PATH.format(chunk_index=0, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frame_table(group, fps, list_type, first, tasks), path)
        for e, ep in group:
            records.append(
                {
                    "episode_index": e,
                    "tasks": [ep.task],
                    "length": len(ep),
                    "data/chunk_index": 0,
                    "data/file_index": file_index,
                    "dataset_from_index": first,
                    "dataset_to_index": first + len(ep),
                    "meta/episodes/chunk_index": 0,
                    "meta/episodes/file_index": 0,
                    "stats/action/mean": [float(v) for v in ep.actions.mean(0)],
                }
            )
            first += len(ep)
    for key in cams:
        for start in range(0, len(episodes), episodes_per_video):
            file_index = start // episodes_per_video
            group = episodes[start : start + episodes_per_video]
            offset = 0.0
            for e, ep in enumerate(group, start):
                rec = records[e]
                rec[f"videos/{key}/chunk_index"] = 0
                rec[f"videos/{key}/file_index"] = file_index
                rec[f"videos/{key}/from_timestamp"] = offset
                offset += len(ep) / fps
                rec[f"videos/{key}/to_timestamp"] = offset
            vpath = root / V30_VIDEO_PATH.format(
                video_key=key, chunk_index=0, file_index=file_index
            )
            vpath.parent.mkdir(parents=True, exist_ok=True)
            frames = np.concatenate([ep.frames[key] for ep in group])
            write_video(vpath, frames, fps, _video_spec(30), codec=codec)
    meta = root / "meta"
    (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(records), root / V30_EPISODES_PATH.format(chunk_index=0, file_index=0)
    )
    pq.write_table(
        pa.table({"task_index": list(tasks.values()), task_column: list(tasks)}),
        meta / "tasks.parquet",
    )
    info = {
        "codebase_version": "v3.0",
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": first,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": V30_DATA_PATH,
        "video_path": V30_VIDEO_PATH,
        "features": _features(episodes, fps, codec, state_names, action_names),
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return root


def write_droid_raw(
    root: str | Path,
    episodes: list[FixtureEpisode],
    fps: float = 15,
    codec: str = "libx264",
    lab: str = "FIXTURE_LAB",
) -> list[Path]:
    """DROID raw episode folders ``<lab>/success/<date>/<name>/`` with trajectory.h5 (state =
    the episodes' 7-D ``[xyz, euler xyz, gripper]``, 7-D joints and matching action groups),
    ``metadata_<uuid>.json`` and ``recordings/MP4/<serial>.mp4``. The episodes' camera keys must
    be ``ext1``, ``ext2`` and/or ``wrist``; ext1 is placed at the robot's left (larger y)."""
    h5py = require("h5py")
    root = Path(root)
    serials = {"ext1": "11111111", "ext2": "22222222", "wrist": "33333333"}
    folders = []
    for e, ep in enumerate(episodes):
        name = f"Fri_Jan__{e + 1}_12:00:00_2024"
        rel = Path(lab) / "success" / "2024-01-01" / name
        folder = root / rel
        mp4 = folder / "recordings" / "MP4"
        mp4.mkdir(parents=True, exist_ok=True)
        n = len(ep)
        joints = np.linspace(0.0, 1.0, n * 7, dtype=np.float64).reshape(n, 7)
        with h5py.File(folder / "trajectory.h5", "w") as h5:
            rs = h5.create_group("observation/robot_state")
            rs["cartesian_position"] = ep.states[:, :6].astype(np.float64)
            rs["gripper_position"] = ep.states[:, 6].astype(np.float64)
            rs["joint_positions"] = joints
            act = h5.create_group("action")
            act["cartesian_position"] = ep.actions[:, :6].astype(np.float64)
            act["gripper_position"] = ep.actions[:, 6].astype(np.float64)
            act["joint_position"] = joints
            ext = h5.create_group("observation/camera_extrinsics")
            for key in ep.frames:
                ext[f"{serials[key]}_left"] = np.zeros((n, 6))
        record = {
            "uuid": f"{lab}+{e}",
            "lab": lab,
            "current_task": ep.task,
            "trajectory_length": n,
            "ext1_cam_extrinsics": [0.1, 0.5, 0.4, 0.0, 0.0, 0.0],
            "ext2_cam_extrinsics": [0.1, -0.5, 0.4, 0.0, 0.0, 0.0],
        }
        for key, frames in ep.frames.items():
            record[f"{key}_cam_serial"] = serials[key]
            record[f"{key}_mp4_path"] = f"{rel.as_posix()}/recordings/MP4/{serials[key]}.mp4"
            write_video(mp4 / f"{serials[key]}.mp4", frames, fps, _video_spec(), codec=codec)
        if "ext1" in ep.frames and "ext2" in ep.frames:
            record["left_mp4_path"], record["right_mp4_path"] = (
                record["ext1_mp4_path"],
                record["ext2_mp4_path"],
            )
        (folder / f"metadata_{lab}+{e}.json").write_text(json.dumps(record))
        folders.append(folder)
    return folders
