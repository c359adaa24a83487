"""Several cameras as one frame: square views side by side, one encoder, one token grid.

A multi-view frame is a mosaic ``(H, V * H, 3)`` of V square views in a fixed order (e.g.
``exterior`` then ``wrist``). :class:`MultiViewEncoder` cuts it into its views, encodes all of
them in one batch with the same frozen encoder, and lays the token grids side by side, so the
frame's grid is ``(h, V * w)``. Pooling with a kernel that divides ``w`` never mixes views, and
everything downstream (feature cache, predictor, planner, energy) sees an ordinary frame whose
grid is V times as wide. One view is the plain encoder; nothing is wrapped.

Views are named by a ``+``-joined string in configs (``camera=exterior+wrist``), the camera
names of the episode dataset (``worldmodel.data``); the env renders the same mosaic with
``EnvConfig.views``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


def parse_views(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"exterior+wrist"`` (or a sequence of names) -> ``("exterior", "wrist")``."""
    names = tuple(spec.split("+")) if isinstance(spec, str) else tuple(spec)
    names = tuple(n.strip() for n in names)
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"views must be distinct non-empty camera names, got {spec!r}")
    return names


DEFAULT_VIEW = "exterior"


def resolve_views(
    spec: str | tuple[str, ...] | list[str], cameras: tuple[str, ...] | list[str]
) -> tuple[str, ...]:
    """The views to use on a dataset with ``cameras``: ``spec`` parsed, except that the default
    (``"exterior"``) on a dataset with one camera of another name means that camera (a robot
    whose only camera is called ``front`` needs no override)."""
    views = parse_views(spec)
    cameras = tuple(cameras)
    if views == (DEFAULT_VIEW,) and DEFAULT_VIEW not in cameras and len(cameras) == 1:
        return cameras
    return views


def mosaic(images: list[np.ndarray]) -> np.ndarray:
    """Square views (..., H, H, 3) side by side along the width: (..., H, V * H, 3)."""
    return images[0] if len(images) == 1 else np.concatenate(images, axis=-2)


def view_token_mask(
    views: tuple[str, ...], grid: tuple[int, int], selected: tuple[str, ...] | list[str] | str
) -> Tensor:
    """Bool (h * w,) mask of the tokens of a frame's (h, w) grid that belong to ``selected``
    views (the views sit side by side along w, ``w / len(views)`` columns each)."""
    views, selected = parse_views(views), parse_views(selected)
    unknown = sorted(set(selected) - set(views))
    h, w = grid
    if unknown or w % len(views):
        raise ValueError(
            f"views {list(selected)} not all in the frame's views {list(views)}"
            if unknown
            else f"a grid {w} tokens wide cannot hold {len(views)} views side by side"
        )
    per_view = w // len(views)
    view_of_column = torch.arange(w) // per_view  # (w,)
    wanted = torch.tensor([views.index(v) for v in selected])
    columns = torch.isin(view_of_column, wanted)
    return columns.repeat(h)  # row-major (h, w) -> (h * w,)


def read_view_frames(dataset: Any, episode: int, views: tuple[str, ...], indices=None):
    """Frames of ``episode`` (all, or ``indices``) as mosaics of ``views``: (T, H, V*H, 3)."""
    if indices is None:
        indices = np.arange(dataset.episode_length(episode))
    return mosaic([dataset.read_frames(episode, indices, camera=v) for v in views])


class MultiViewEncoder:
    """A frozen encoder (``worldmodel.frozen_encoder.FrozenEncoder`` interface) over view mosaics."""

    def __init__(self, base: Any, views: tuple[str, ...] | str) -> None:
        self.base, self.views = base, parse_views(views)
        if len(self.views) < 2:
            raise ValueError("MultiViewEncoder needs >= 2 views; use the encoder itself for one")
        self._identity: str | None = None

    # the FrozenEncoder attributes the cache, trainer and world model read
    @property
    def embed_dim(self) -> int:
        return self.base.embed_dim

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def preprocess_cfg(self):
        return self.base.preprocess_cfg

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.base.grid
        return h, w * len(self.views)

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.grid
        return h * w

    def encode_frames(self, frames: Tensor | np.ndarray) -> Tensor:
        """(B, H, V*H, 3) uint8 mosaics -> (B, h * V*w, D) float32, views side by side."""
        v = len(self.views)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[2] != v * frames.shape[1]:
            raise ValueError(
                f"expected {v} square views side by side {self.views}, (B, H, {v}*H, 3); got "
                f"{tuple(frames.shape)}"
            )
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        b, side = frames.shape[0], frames.shape[1]
        views = frames.reshape(b, side, v, side, 3).permute(0, 2, 1, 3, 4)  # (B, V, H, H, 3)
        z = self.base.encode_frames(views.reshape(b * v, side, side, 3))  # (B*V, h*w, D)
        h, w = self.base.grid
        z = z.view(b, v, h, w, -1).permute(0, 2, 1, 3, 4)  # (B, h, V, w, D)
        return z.reshape(b, h * v * w, -1)

    def identity(self) -> str:
        """The base encoder's identity combined with the view names (a cache records it)."""
        if self._identity is None:
            h = hashlib.sha256(self.base.identity().encode())
            h.update(json.dumps(list(self.views)).encode())
            self._identity = h.hexdigest()
        return self._identity

    def save(self, folder: str | os.PathLike) -> Path:
        """The base encoder's folder (the views are recorded by whoever wraps it)."""
        return self.base.save(folder)


def with_views(encoder: Any, views: tuple[str, ...] | str) -> Any:
    """``encoder`` itself for one view, else a :class:`MultiViewEncoder` over ``views``."""
    views = parse_views(views)
    return encoder if len(views) == 1 else MultiViewEncoder(encoder, views)
