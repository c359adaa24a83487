"""Fixed-length video clips for encoder pretraining, from an episode dataset or any mp4 folder.

Both sources index non-overlapping windows of ``num_frames`` frames taken every ``stride`` frames
and return uint8 (T, H, W, 3) clips; :class:`PreprocessedClips` turns them into normalized
float (3, T, S, S) tensors so that videos of different sizes batch together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from worldmodel.errors import DatasetError
from worldmodel.preprocess import PreprocessConfig, Preprocessor


class ClipSource(Protocol):
    """Indexable collection of uint8 (T, H, W, 3) clips."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def _windows(lengths: list[int], num_frames: int, stride: int) -> list[tuple[int, int]]:
    """(video, start) of every non-overlapping window of num_frames frames at ``stride``."""
    span = (num_frames - 1) * stride + 1
    step = num_frames * stride
    return [(v, s) for v, n in enumerate(lengths) for s in range(0, n - span + 1, step)]


class Mp4FolderClips:
    """Clips from every ``*.mp4`` under a folder (recursive), decoded with decord."""

    def __init__(self, root: str | os.PathLike, num_frames: int, stride: int = 1) -> None:
        import decord

        self.paths = sorted(Path(root).rglob("*.mp4"))
        if not self.paths:
            raise DatasetError(f"{root}: no .mp4 files found")
        self.num_frames, self.stride = num_frames, stride
        lengths = []
        for path in self.paths:
            try:
                lengths.append(len(decord.VideoReader(str(path), num_threads=1)))
            except decord.DECORDError as err:
                raise DatasetError(f"{path}: cannot decode video: {err}") from err
        self.index = _windows(lengths, num_frames, stride)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        import decord

        video, start = self.index[i]
        reader = decord.VideoReader(str(self.paths[video]), num_threads=1)
        frame_ids = list(range(start, start + self.num_frames * self.stride, self.stride))
        return reader.get_batch(frame_ids).asnumpy()  # (T, H, W, 3) uint8


class EpisodeClips:
    """Clips of one camera from an episode dataset (worldmodel.data contract)."""

    def __init__(
        self, root: str | os.PathLike, num_frames: int, stride: int = 1, camera: str = "exterior"
    ) -> None:
        from worldmodel.data.episodes import open_dataset

        self.dataset = open_dataset(root)
        self.num_frames, self.stride, self.camera = num_frames, stride, camera
        lengths = [self.dataset.episode_length(i) for i in range(len(self.dataset))]
        self.index = _windows(lengths, num_frames, stride)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        episode, start = self.index[i]
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
