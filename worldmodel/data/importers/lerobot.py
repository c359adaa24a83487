"""Reader of LeRobot datasets, codebase_version v2.0 / v2.1 and v3.0.

Layout facts checked against LeRobot's source (huggingface/lerobot: tag v0.3.3 b883328e for v2.1,
tag v0.4.4 8fff0fde and main 7427f318 for v3.0; ``lerobot/datasets/utils.py``,
``lerobot_dataset.py``, ``dataset_metadata.py``, ``io_utils.py``):

v2.x (one file per episode)
    ``meta/info.json`` (``codebase_version``, ``fps``, ``chunks_size``, ``features``, and the path
    templates ``data_path`` = ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``
    and ``video_path`` = ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}
    .mp4`` with ``episode_chunk = episode_index // chunks_size``), ``meta/episodes.jsonl`` (one
    ``{"episode_index", "tasks", "length"}`` per line), ``meta/tasks.jsonl`` (``{"task_index",
    "task"}``). v2.0 differs from v2.1 only in its statistics files, which are not read.
v3.0 (several episodes per file)
    ``meta/info.json`` with ``data_path`` = ``data/chunk-{chunk_index:03d}/file-{file_index:03d}
    .parquet`` and ``video_path`` = ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}
    .mp4``; ``meta/episodes/chunk-XXX/file-XXX.parquet`` with one row per episode: ``episode_index``,
    ``length``, ``tasks``, ``data/chunk_index``, ``data/file_index``, ``videos/<key>/chunk_index``,
    ``videos/<key>/file_index``, ``videos/<key>/from_timestamp``, ``videos/<key>/to_timestamp``;
    ``meta/tasks.parquet`` (task text = the pandas index, stored as column ``task`` or
    ``__index_level_0__``; ``task_index`` column).

Frames: row i of an episode is the video frame at ``from_timestamp + timestamp[i]`` (v2.x:
``from_timestamp`` = 0, one mp4 per episode), as LeRobot's ``_query_videos`` reads it. The path
templates are taken from each dataset's own info.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.data.importers.common import (
    ColumnPart,
    EpisodeRef,
    SourceEpisode,
    VideoRef,
    parse_spec,
    part_names,
    require,
    select_part,
)
from worldmodel.data.importers.config import ImportConfig
from worldmodel.errors import DatasetError

INFO_PATH = "meta/info.json"
V2_EPISODES_PATH = "meta/episodes.jsonl"
V2_TASKS_PATH = "meta/tasks.jsonl"
V3_EPISODES_DIR = "meta/episodes"
V3_TASKS_PATH = "meta/tasks.parquet"
V2_VERSIONS = ("v2.0", "v2.1")
V3_VERSIONS = ("v3.0",)
SUPPORTED_VERSIONS = (*V2_VERSIONS, *V3_VERSIONS)
DEFAULT_STATE_KEY = "observation.state"
DEFAULT_ACTION_KEY = "action"


def is_lerobot(root: Path) -> bool:
    return (root / INFO_PATH).is_file()


def view_name(key: str) -> str:
    """Default view name of a camera key: its last dot-separated part, sanitized
    (``observation.images.front`` -> ``front``)."""
    tail = key.rsplit(".", 1)[-1]
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in tail) or "camera"


def resolve_cameras(wanted: dict[str, str], available: list[str], where: str) -> dict[str, str]:
    """{source key: view name}: ``wanted`` checked against ``available``, or every camera."""
    if wanted:
        unknown = [k for k in wanted if k not in available]
        if unknown:
            raise DatasetError(
                f"{where}: cameras {unknown} not in this dataset; its cameras are {available}"
            )
        return dict(wanted)
    out = {key: view_name(key) for key in available}
    views = list(out.values())
    if len(set(views)) != len(views):
        raise DatasetError(
            f"{where}: camera keys {available} give duplicate view names {views}; name them with "
            "cameras={key: view, ...}"
        )
    return out


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON: {exc}") from exc


def _load_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {n} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: line {n} is not a JSON object")
        out.append(record)
    return out


def _feature_names(feature: dict) -> list[str] | None:
    """The ``names`` of an info.json feature: a list, a {"axes": [...]}-style dict, or None."""
    names = feature.get("names")
    if isinstance(names, dict):
        lists = [v for v in names.values() if isinstance(v, list)]
        names = lists[0] if len(lists) == 1 else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def _feature_width(feature: dict) -> int:
    shape = feature.get("shape") or [1]
    return int(math.prod(int(s) for s in shape))


class LeRobotSource:
    """A LeRobot dataset folder, read lazily episode by episode."""

    format = "lerobot"

    def __init__(self, root: Path, cfg: ImportConfig) -> None:
        self.pa = require("pyarrow")
        self.pq = require("pyarrow.parquet")
        self.pc = require("pyarrow.compute")
        self.root = root
        self.info_path = root / INFO_PATH
        info = _load_json(self.info_path)
        if not isinstance(info, dict):
            raise DatasetError(f"{self.info_path}: expected a JSON object")
        self.info = info
        self.version = info.get("codebase_version")
        if self.version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"{self.info_path}: field 'codebase_version' is {self.version!r}; wm-import reads "
                f"LeRobot {list(SUPPORTED_VERSIONS)} (convert older datasets with LeRobot's "
                "conversion scripts)"
            )
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise DatasetError(f"{self.info_path}: missing field {key!r}")
        fps = info["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise DatasetError(f"{self.info_path}: field 'fps' is {fps!r}, expected a number > 0")
        self.fps = float(cfg.source_fps or fps)
        self.features: dict[str, dict] = info["features"]
        video_keys = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        if not video_keys:
            images = [k for k, f in self.features.items() if f.get("dtype") == "image"]
            raise DatasetError(
                f"{self.info_path}: field 'features' has no video feature (dtype 'video'); "
                + (f"image features {images} stored in parquet are not supported" if images else "")
            )
        if not info.get("video_path"):
            raise DatasetError(f"{self.info_path}: missing field 'video_path'")
        self.cameras = resolve_cameras(cfg.cameras, video_keys, f"{self.info_path} (features)")
        self.state_parts = parse_spec(cfg.state_key or DEFAULT_STATE_KEY, "state_key")
        action_key = cfg.action_key or DEFAULT_ACTION_KEY
        self.needs_action = cfg.action_mode != "ee_delta_from_state"
        self.action_parts = parse_spec(action_key, "action_key") if self.needs_action else []
        for part in (*self.state_parts, *self.action_parts):
            if part.name not in self.features:
                known = [k for k, f in self.features.items() if f.get("dtype") != "video"]
                raise DatasetError(
                    f"{self.info_path}: field 'features' has no column {part.name!r} (state_key / "
                    f"action_key); columns: {known}"
                )
        self.state_names = self._names(self.state_parts)
        self.action_names = self._names(self.action_parts)
        self.tasks = self._load_tasks()
        self._episodes = self._load_episodes()
        lo, hi = cfg.episode_range
        self.refs = [
            EpisodeRef(ep, f"episode {ep}")
            for ep in sorted(self._episodes)
            if ep >= lo and (hi is None or ep < hi)
        ]
        self._cache: tuple[Path, Any] | None = None  # the last parquet data file read

    # -- metadata ------------------------------------------------------------------------------

    def _names(self, parts: list[ColumnPart]) -> list[str]:
        names: list[str] = []
        for part in parts:
            feature = self.features[part.name]
            names += part_names(part, _feature_width(feature), _feature_names(feature))
        return names

    def _load_tasks(self) -> dict[int, str]:
        """task_index -> task text (empty when the dataset has no task file)."""
        if self.version in V2_VERSIONS:
            path = self.root / V2_TASKS_PATH
            if not path.is_file():
                return {}
            return {int(r["task_index"]): str(r.get("task", "")) for r in _load_jsonl(path)}
        path = self.root / V3_TASKS_PATH
        if not path.is_file():
            return {}
        table = self._read_parquet(path)
        text_col = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
        if text_col is None or "task_index" not in table.column_names:
            raise DatasetError(
                f"{path}: expected columns 'task_index' and 'task' (or the pandas index "
                f"'__index_level_0__'); has {table.column_names}"
            )
        return dict(
            zip(
                (int(i) for i in table["task_index"].to_pylist()),
                (str(t) for t in table[text_col].to_pylist()),
                strict=True,
            )
        )

    def _load_episodes(self) -> dict[int, dict]:
        """episode_index -> its metadata record (v2: episodes.jsonl; v3: meta/episodes/)."""
        if self.version in V2_VERSIONS:
            path = self.root / V2_EPISODES_PATH
            records = _load_jsonl(path)
            for n, rec in enumerate(records, 1):
                for key in ("episode_index", "length"):
                    if key not in rec:
                        raise DatasetError(f"{path}: line {n} has no field {key!r}")
            return {int(r["episode_index"]): r for r in records}
        files = sorted((self.root / V3_EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(
                f"{self.root / V3_EPISODES_DIR}: no episode metadata files "
                "(expected chunk-XXX/file-XXX.parquet)"
            )
        needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for key in self.cameras:
            needed += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index")]
            needed += [f"videos/{key}/{c}" for c in ("from_timestamp", "to_timestamp")]
        out: dict[int, dict] = {}
        for path in files:
            names = self._schema_names(path)
            missing = [c for c in needed if c not in names]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}")
            columns = needed + (["tasks"] if "tasks" in names else [])
            for rec in self._read_parquet(path, columns).to_pylist():
                out[int(rec["episode_index"])] = rec
        return out

    def describe(self) -> dict:
        """What meta.json's ``extra.source`` records about the source."""
        return {
            "format": f"lerobot {self.version}",
            "path": str(self.root),
            "robot_type": self.info.get("robot_type"),
            "fps": self.fps,
            "total_episodes": self.info.get("total_episodes"),
            "cameras": self.cameras,
            "tasks": {str(k): v for k, v in sorted(self.tasks.items())},
        }

    # -- files ---------------------------------------------------------------------------------

    def _schema_names(self, path: Path) -> list[str]:
        try:
            return list(self.pq.read_schema(path).names)
        except (OSError, self.pa.ArrowException) as exc:
            raise DatasetError(f"{path}: unreadable parquet file: {exc}") from exc

    def _read_parquet(self, path: Path, columns: list[str] | None = None):
        if not path.is_file():
            raise DatasetError(f"{path}: missing file")
        try:
            return self.pq.read_table(path, columns=columns)
        except (OSError, self.pa.ArrowException) as exc:
            raise DatasetError(f"{path}: unreadable parquet file: {exc}") from exc

    def _episode_files(self, ep: int) -> tuple[Path, dict[str, VideoRef]]:
        """The data file and each camera's video (with the episode's offset) of episode ``ep``."""
        rec = self._episodes[ep]
        tmpl_data, tmpl_video = self.info["data_path"], self.info["video_path"]
        try:
            if self.version in V2_VERSIONS:
                chunk = ep // int(self.info.get("chunks_size", 1000))
                data = tmpl_data.format(episode_chunk=chunk, episode_index=ep)
                videos = {
                    view: VideoRef(
                        self.root
                        / tmpl_video.format(episode_chunk=chunk, video_key=key, episode_index=ep)
                    )
                    for key, view in self.cameras.items()
                }
                return self.root / data, videos
            data = tmpl_data.format(
                chunk_index=int(rec["data/chunk_index"]), file_index=int(rec["data/file_index"])
            )
            videos = {}
            for key, view in self.cameras.items():
                path = tmpl_video.format(
                    video_key=key,
                    chunk_index=int(rec[f"videos/{key}/chunk_index"]),
                    file_index=int(rec[f"videos/{key}/file_index"]),
                )
                videos[view] = VideoRef(
                    self.root / path,
                    float(rec[f"videos/{key}/from_timestamp"]),
                    float(rec[f"videos/{key}/to_timestamp"]),
                )
            return self.root / data, videos
        except (KeyError, IndexError, ValueError) as exc:
            raise DatasetError(
                f"{self.info_path}: path template data_path={tmpl_data!r} / video_path="
                f"{tmpl_video!r} cannot be filled for episode {ep}: {exc!r}"
            ) from exc

    def video_refs(self, ref: EpisodeRef) -> dict[str, VideoRef]:
        return self._episode_files(ref.index)[1]

    def _table(self, path: Path, columns: list[str]):
        """Columns of a data file (the last file read is kept: v3.0 files hold many episodes)."""
        if self._cache is not None and self._cache[0] == path:
            return self._cache[1]
        names = self._schema_names(path) if path.is_file() else None
        if names is None:
            raise DatasetError(f"{path}: missing file")
        missing = [c for c in columns if c not in names]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; columns: {names}")
        optional = [c for c in ("frame_index", "task_index") if c in names and c not in columns]
        table = self._read_parquet(path, columns + optional)
        self._cache = (path, table)
        return table

    def _column(self, table, name: str, path: Path) -> np.ndarray:
        """A parquet column as (N, D) float64 (list / fixed_size_list columns or scalars)."""
        pa = self.pa
        col = table.column(name)
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if arr.null_count:
            row = int(np.argmax(np.asarray(arr.is_null())))
            raise DatasetError(f"{path}: field {name!r} is null at row {row}")
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            lengths = np.asarray(self.pc.list_value_length(arr))
            if len(lengths) and np.any(lengths != lengths[0]):
                row = int(np.argmax(lengths != lengths[0]))
                raise DatasetError(
                    f"{path}: field {name!r} has {lengths[row]} values at row {row} but "
                    f"{lengths[0]} at row 0"
                )
            width = int(lengths[0]) if len(lengths) else 0
            values = arr.flatten()
        elif pa.types.is_fixed_size_list(arr.type):
            width, values = arr.type.list_size, arr.flatten()
        elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            width, values = 1, arr
        else:
            raise DatasetError(f"{path}: field {name!r} has type {arr.type}, expected numbers")
        flat = values.to_numpy(zero_copy_only=False).astype(np.float64)
        return flat.reshape(len(arr), width)

    def _vector(self, table, parts: list[ColumnPart], path: Path) -> np.ndarray:
        return np.concatenate(
            [select_part(self._column(table, p.name, path), p) for p in parts], axis=1
        )

    # -- episodes ------------------------------------------------------------------------------

    def load(self, ref: EpisodeRef) -> SourceEpisode:
        """Read episode ``ref`` (its rows; frames are decoded later)."""
        ep = ref.index
        rec = self._episodes[ep]
        data_path, videos = self._episode_files(ep)
        parts = [*self.state_parts, *self.action_parts]
        columns = list(dict.fromkeys(["timestamp", "episode_index", *(p.name for p in parts)]))
        table = self._table(data_path, columns)
        pc = self.pc
        if self.version in V3_VERSIONS:
            table = table.filter(pc.equal(table["episode_index"], ep))
        else:
            others = table.filter(pc.not_equal(table["episode_index"], ep)).num_rows
            if others:
                raise DatasetError(
                    f"{data_path}: field 'episode_index' has {others} rows of other episodes "
                    f"(expected only episode {ep})"
                )
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        where = self.root / (V2_EPISODES_PATH if self.version in V2_VERSIONS else V3_EPISODES_DIR)
        if table.num_rows != int(rec["length"]):
            raise DatasetError(
                f"{data_path}: episode {ep} has {table.num_rows} rows but {where} gives "
                f"length {rec['length']} (field 'length')"
            )
        extra = {}
        if "task_index" in table.column_names:
            extra["task_index"] = np.asarray(table["task_index"].to_numpy(), np.int64)
        tasks = rec.get("tasks") or []
        if not tasks and "task_index" in extra and len(extra["task_index"]):
            tasks = [self.tasks.get(int(extra["task_index"][0]), "")]
        state_name = "+".join(p.name for p in self.state_parts)
        action_name = "+".join(p.name for p in self.action_parts) or "action"
        return SourceEpisode(
            ref=ref,
            table=data_path,
            timestamps=self._column(table, "timestamp", data_path)[:, 0],
            state=self._vector(table, self.state_parts, data_path),
            action=self._vector(table, self.action_parts, data_path) if self.action_parts else None,
            videos=videos,
            task="; ".join(str(t) for t in tasks),
            extra=extra,
            fields=(state_name, action_name),
        )
