"""ClipDataset: a PyTorch map-style dataset over every valid clip of an episode dataset."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from worldmodel.data.episodes import EpisodeDataset, open_dataset


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
        span = (num_frames - 1) * stride
        counts = np.array(
            [max(0, self.episodes.episode_length(i) - span) for i in range(len(self.episodes))],
            dtype=np.int64,
        )
        # Clip j lives in episode e where offsets[e] <= j < offsets[e+1].
        self._offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(episode position, start frame) of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range [0, {len(self)})")
        episode = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return episode, int(index - self._offsets[episode])

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
