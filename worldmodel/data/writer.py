"""EpisodeWriter: writes episodes atomically (temp dir + rename) into an episode dataset."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from worldmodel.data.meta import META_FILE, DatasetMeta, read_meta
from worldmodel.data.steps import STEPS_FILE, StepTable, save_steps
from worldmodel.data.video import check_decodable_width, write_video
from worldmodel.errors import DatasetError

EPISODES_DIR = "episodes"
EPISODE_RE = re.compile(r"^ep_(\d{6})$")
TMP_SUFFIX = ".tmp"
# Fields that must agree when an existing dataset is extended (resume).
_COMPAT_FIELDS = (
    "format_version",
    "fps",
    "image_size",
    "cameras",
    "env_id",
    "action_dim",
    "state_dim",
    "state_names",
    "action_names",
    "action_kind",
    "image_policy",
    "video",
)


def episode_name(index: int) -> str:
    """Directory name of episode ``index``: ``ep_000042``."""
    if not 0 <= index <= 999_999:
        raise ValueError(f"episode index must be in [0, 999999], got {index}")
    return f"ep_{index:06d}"


def check_compatible(old: DatasetMeta, new: DatasetMeta, where: str) -> None:
    """Raise DatasetError naming the first field where ``new`` would not extend ``old``."""
    old_d, new_d = asdict(old), asdict(new)
    for key in _COMPAT_FIELDS:
        if old_d[key] != new_d[key]:
            raise DatasetError(
                f"{where}: existing dataset has {key}={old_d[key]!r} but the writer wants "
                f"{new_d[key]!r}; write to another folder or delete the old dataset"
            )


class EpisodeWriter:
    """Writes episodes into ``root`` and owns ``root/meta.json``.

    On creation ``meta.json`` is written (atomically) if absent; if present it must be compatible
    with ``meta`` (same cameras, sizes, fps, env id, video settings) so resumed collection cannot
    mix datasets.

    Each episode is first written into ``episodes/ep_XXXXXX.<pid>.tmp`` and then renamed to
    ``episodes/ep_XXXXXX``; readers ignore ``*.tmp`` so they never see half an episode.
    """

    def __init__(self, root: str | os.PathLike, meta: DatasetMeta) -> None:
        self.root = Path(root)
        self.meta = meta
        for cam in meta.cameras:
            check_decodable_width(cam.width)
        # Check an existing meta.json before creating anything in its folder.
        existing = (self.root / META_FILE).exists()
        if existing:
            check_compatible(read_meta(self.root), meta, str(self.root / META_FILE))
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        if not existing:
            meta.write(self.root)

    def episode_dir(self, index: int) -> Path:
        """Final directory of episode ``index`` (exists only once the episode is complete)."""
        return self.root / EPISODES_DIR / episode_name(index)

    def is_complete(self, index: int) -> bool:
        """True when episode ``index`` has been fully written (its final dir exists)."""
        return self.episode_dir(index).is_dir()

    def remove_stale_temps(self) -> list[Path]:
        """Delete leftover ``*.tmp`` episode dirs (from killed writers); returns what was removed.

        Only call this when no other writer is working on the same dataset.
        """
        removed = []
        for path in sorted((self.root / EPISODES_DIR).glob(f"*{TMP_SUFFIX}")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
            removed.append(path)
        return removed

    def write(
        self,
        index: int,
        frames: Mapping[str, np.ndarray],
        steps: StepTable,
        overwrite: bool = False,
    ) -> Path:
        """Write one episode atomically.

        Args:
            index: episode index (directory ``ep_{index:06d}``).
            frames: camera name -> (T, H, W, 3) uint8, one entry per camera in ``meta``.
            steps: the per-step table, with T rows.
            overwrite: replace an existing complete episode (else DatasetError).

        Returns:
            The final episode directory.
        """
        final = self.episode_dir(index)
        if final.exists() and not overwrite:
            raise DatasetError(f"{final}: episode already exists")
        self._check_frames(frames, steps, final)
        tmp = final.with_name(f"{final.name}.{os.getpid()}{TMP_SUFFIX}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            for cam in self.meta.cameras:
                write_video(
                    tmp / f"{cam.name}.mp4", frames[cam.name], self.meta.fps, self.meta.video
                )
            save_steps(tmp / STEPS_FILE, steps, self.meta.state_dim, self.meta.action_dim)
            if final.exists() and overwrite:
                shutil.rmtree(final)
            try:
                os.rename(tmp, final)
            except OSError as exc:  # another writer completed it meanwhile (ENOTEMPTY/EEXIST)
                raise DatasetError(f"{final}: episode already exists ({exc})") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _check_frames(
        self, frames: Mapping[str, np.ndarray], steps: StepTable, where: Path
    ) -> None:
        """Every camera present, uint8 (T, H, W, 3) with T = table rows and the camera's size;
        state / action as wide as meta.json's state_dim / action_dim."""
        for name, dim in (("state", self.meta.state_dim), ("action", self.meta.action_dim)):
            arr = getattr(steps, name)
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise DatasetError(
                    f"{where}: field {name!r} has shape {arr.shape}, but meta.json gives "
                    f"{name}_dim {dim}; expected (T, {dim})"
                )
        unknown = set(frames) - set(self.meta.camera_names)
        if unknown:
            raise DatasetError(f"{where}: frames for unknown camera(s) {sorted(unknown)}")
        for cam in self.meta.cameras:
            if cam.name not in frames:
                raise DatasetError(f"{where}: no frames for camera {cam.name!r}")
            arr = frames[cam.name]
            want = (len(steps), cam.height, cam.width, 3)
            if arr.dtype != np.uint8 or arr.shape != want:
                raise DatasetError(
                    f"{where}: camera {cam.name!r} frames are {arr.dtype} "
                    f"{arr.shape}, expected uint8 {want}"
                )
