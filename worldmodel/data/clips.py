"""Fixed-length clips of episodes and videos, all indexed by one function, :func:`clip_windows`.

- :class:`ClipDataset`: every clip of an episode dataset with its states and actions (PyTorch);
  wm-train indexes its clips with the same function (every start, ``hop=1``).
- :class:`EpisodeClips`, :class:`Mp4FolderClips`: frames only, for encoder pretraining, over
  non-overlapping windows; :class:`PreprocessedClips` turns them into normalized float
  (3, T, S, S) tensors so that videos of different sizes batch together.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from worldmodel.data.episodes import EpisodeDataset, open_dataset
from worldmodel.data.video import decode_frames, open_video
from worldmodel.errors import DatasetError
from worldmodel.models.preprocess import PreprocessConfig, Preprocessor


class ClipSource(Protocol):
    """Indexable collection of uint8 (T, H, W, 3) clips."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def clip_windows(
    lengths: Sequence[int] | Mapping[int, int],
    num_frames: int,
    stride: int = 1,
    hop: int | None = 1,
    episodes: Iterable[int] | None = None,
) -> np.ndarray:
    """(M, 2) int64 rows ``(episode, start)`` of every clip of ``num_frames`` frames taken every
    ``stride`` frames that fits inside its episode, starts ``hop`` apart (``None``: clips do not
    overlap, ``hop = num_frames * stride``). ``lengths[e]`` is episode e's frame count;
    ``episodes`` restricts the index to those episodes (all by default), in that order."""
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    span = (num_frames - 1) * stride + 1
    hop = num_frames * stride if hop is None else hop
    chosen = range(len(lengths)) if episodes is None else episodes
    rows = [(e, s) for e in chosen for s in range(0, lengths[e] - span + 1, hop)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


class ClipDataset(Dataset):
    """All clips of ``num_frames`` frames at frame ``stride`` from every episode.

    The index is built from the per-step tables (episode lengths), never by decoding video:
    item ``j`` is ``(episode, start)`` for every ``start`` with
    ``start + (num_frames - 1) * stride < T_episode``. Episodes shorter than one clip add nothing.

    Items are dicts of tensors:
        ``frames`` (T, H, W, 3) uint8, ``states`` (T, 7) float32, ``actions`` (T, 7) float32
        (``actions[k]`` leads from frame k to k+1; see ``EpisodeDataset.read_clip``),
        ``episode`` and ``start`` int64 scalars.
    """

    def __init__(
        self,
        root: str | os.PathLike | EpisodeDataset,
        num_frames: int,
        stride: int = 1,
        camera: str = "exterior",
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.episodes = root if isinstance(root, EpisodeDataset) else open_dataset(root)
        self.episodes.meta.camera(camera)  # KeyError naming the known cameras
        self.num_frames = num_frames
        self.stride = stride
        self.camera = camera
        lengths = [self.episodes.episode_length(i) for i in range(len(self.episodes))]
        self.index = clip_windows(lengths, num_frames, stride)

    def __len__(self) -> int:
        return len(self.index)

    def locate(self, index: int) -> tuple[int, int]:
        """(episode position, start frame) of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range [0, {len(self)})")
        episode, start = self.index[index]
        return int(episode), int(start)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode, start = self.locate(int(index))
        clip = self.episodes.read_clip(episode, start, self.num_frames, self.stride, self.camera)
        return {
            "frames": torch.from_numpy(clip.frames),
            "states": torch.from_numpy(np.ascontiguousarray(clip.states)),
            "actions": torch.from_numpy(np.ascontiguousarray(clip.actions)),
            "episode": torch.tensor(episode, dtype=torch.int64),
            "start": torch.tensor(start, dtype=torch.int64),
        }


class Mp4FolderClips:
    """Clips from every ``*.mp4`` under a folder (recursive), decoded with PyAV.

    A file that is not a video, or one whose frames cannot be decoded, raises DatasetError
    naming it (:func:`worldmodel.data.video.open_video` / ``decode_frames``).
    """

    def __init__(self, root: str | os.PathLike, num_frames: int, stride: int = 1) -> None:
        self.paths = sorted(p for p in Path(root).rglob("*.mp4") if p.is_file())
        if not self.paths:
            raise DatasetError(f"{root}: no .mp4 files found")
        self.num_frames, self.stride = num_frames, stride
        lengths = [len(open_video(path)) for path in self.paths]
        self.index = clip_windows(lengths, num_frames, stride, hop=None)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        video, start = (int(v) for v in self.index[i])
        path = self.paths[video]
        frame_ids = list(range(start, start + self.num_frames * self.stride, self.stride))
        return decode_frames(open_video(path), frame_ids, path)  # (T, H, W, 3) uint8


class EpisodeClips:
    """Clips of one camera from an episode dataset (worldmodel.data contract)."""

    def __init__(
        self, root: str | os.PathLike, num_frames: int, stride: int = 1, camera: str = "exterior"
    ) -> None:
        self.dataset = open_dataset(root)
        self.num_frames, self.stride, self.camera = num_frames, stride, camera
        lengths = [self.dataset.episode_length(i) for i in range(len(self.dataset))]
        self.index = clip_windows(lengths, num_frames, stride, hop=None)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        episode, start = (int(v) for v in self.index[i])
        clip = self.dataset.read_clip(episode, start, self.num_frames, self.stride, self.camera)
        return clip.frames


def is_episode_dataset(root: str | os.PathLike) -> bool:
    """True when ``root`` looks like our episode format (meta.json + episodes/)."""
    return (Path(root) / "meta.json").is_file() and (Path(root) / "episodes").is_dir()


def open_clip_source(
    root: str | os.PathLike, num_frames: int, stride: int = 1, camera: str = "exterior"
) -> ClipSource:
    """An episode dataset when ``root`` is one, otherwise every mp4 below ``root``."""
    if not Path(root).is_dir():
        raise DatasetError(f"data root {root} is not a directory")
    if is_episode_dataset(root):
        from worldmodel.data.meta import read_meta
        from worldmodel.models.views import resolve_views

        (camera,) = resolve_views(camera, read_meta(root).camera_names)[:1]
        return EpisodeClips(root, num_frames, stride, camera)
    return Mp4FolderClips(root, num_frames, stride)


class PreprocessedClips(Dataset):
    """torch Dataset: index -> float32 (3, T, S, S) normalized clip."""

    def __init__(self, source: ClipSource, preprocess: PreprocessConfig) -> None:
        self.source = source
        self.preprocess = Preprocessor(preprocess)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Tensor:
        frames = torch.from_numpy(np.ascontiguousarray(self.source[i]))  # (T, H, W, 3)
        return self.preprocess(frames[None])[0]  # (3, T, S, S)
