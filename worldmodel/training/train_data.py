"""wm-train data: episode split, clip windows, resumable shuffled order, predictor inputs.

Clips are windows of ``clip_len`` consecutive frames inside one episode. The split into train and
validation is by episode. :class:`EpisodeSource` turns a batch of (episode, start) references into
predictor inputs, from cached frozen features or by encoding decoded frames on the fly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from worldmodel.data.clips import clip_windows
from worldmodel.errors import StaleCacheError
from worldmodel.models.latents import layer_norm
from worldmodel.models.layout import Layout
from worldmodel.models.predictor import ACPredictor
from worldmodel.models.views import read_view_frames, resolve_views, with_views
from worldmodel.training.train_config import TrainConfig


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split of episode indices into (train, val); val gets >= 1 episode."""
    if num_episodes < 2:
        raise ValueError(f"need >= 2 episodes for a train/val split, got {num_episodes}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = min(num_episodes - 1, max(1, round(val_fraction * num_episodes)))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def window_refs(source, episodes: list[int], clip_len: int) -> np.ndarray:
    """(M, 2) int array of (episode, start) for every clip of ``clip_len`` consecutive frames
    that fits inside one of ``episodes`` (:func:`worldmodel.data.clips.clip_windows`)."""
    lengths = {ep: source.episode_length(ep) for ep in episodes}
    refs = clip_windows(lengths, clip_len, episodes=episodes)
    if not len(refs):
        raise ValueError(f"no episode among {episodes[:5]}... has >= clip_len={clip_len} frames")
    return refs


class ClipSampler:
    """Global batches from a per-epoch seeded permutation; state = (epoch, cursor)."""

    def __init__(self, refs: np.ndarray, batch_size: int, seed: int) -> None:
        self.refs, self.batch_size, self.seed = refs, batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.refs))

    def next_batch(self) -> np.ndarray:
        """(batch_size, 2) refs; wraps into the next epoch's permutation when needed."""
        picked = []
        while len(picked) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation()
            take = min(self.batch_size - len(picked), len(self._order) - self.cursor)
            picked.extend(self._order[self.cursor : self.cursor + take].tolist())
            self.cursor += take
        return self.refs[picked]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation()


class EpisodeSource:
    """Clips of an episode dataset as predictor inputs: cached features or on-the-fly encoding.

    ``features(ep)`` (cached mode) returns (T, h*w, D) arrays; otherwise frames are decoded and
    encoded with ``encoder.encode_frames`` in one call per batch.
    """

    def __init__(
        self,
        dataset,
        encoder,
        features: Callable[[int], np.ndarray] | None = None,
        views: tuple[str, ...] = ("exterior",),
    ):
        """``views``: the cameras of a frame, side by side (``worldmodel.models.views``); the encoder
        must take their mosaics (``with_views``)."""
        self.dataset, self.encoder, self.features = dataset, encoder, features
        self.views = tuple(views)
        self.num_episodes = len(dataset)
        self.feature_dim, self.grid = int(encoder.embed_dim), tuple(encoder.grid)
        self.layout = Layout.from_meta(dataset.meta)  # dims, action kind, bounds, rate

    def episode_length(self, ep: int) -> int:
        return self.dataset.episode_length(ep)

    def _latents(self, refs: list, clip_len: int, device: torch.device) -> Tensor:
        """(B, T, h*w, D) float32 frozen features of the clips."""
        if self.features is not None:
            feats = [
                np.asarray(self.features(ep)[st : st + clip_len], np.float32) for ep, st in refs
            ]
            return torch.from_numpy(np.stack(feats)).to(device)
        frames = np.stack(
            [read_view_frames(self.dataset, ep, self.views, np.arange(st, st + clip_len))
             for ep, st in refs]
        )  # fmt: skip
        b = frames.shape[0]  # frames: (B, T, H, W, 3)
        z = self.encoder.encode_frames(frames.reshape(b * clip_len, *frames.shape[2:]))
        return z.to(device).float().view(b, clip_len, *z.shape[1:])  # (B, T, h*w, D)

    def batch(self, refs: np.ndarray, clip_len: int, predictor: ACPredictor, device):
        """-> z (B, T, N, D) pooled + layer-normed, actions (B, T, A), states (B, T, S)."""
        refs = refs.tolist()
        windows = [(self.dataset.steps(ep), st) for ep, st in refs]
        states = np.stack([tab.state[st : st + clip_len] for tab, st in windows])  # (B, T, S)
        actions = np.stack([tab.action[st : st + clip_len] for tab, st in windows])  # (B, T, A)
        z = layer_norm(predictor.pool(self._latents(refs, clip_len, torch.device(device))))
        as_tensor = lambda x: torch.from_numpy(x).to(device, torch.float32)  # noqa: E731
        return z, as_tensor(actions), as_tensor(states)

    def save_world_model(self, predictor: ACPredictor, folder: Path) -> None:
        """Frozen encoder + trained predictor as a WorldModel folder."""
        from worldmodel.world_model import WorldModel

        meta = self.dataset.meta
        first = self.views[0]  # the camera whose pose the model records (the first view)
        camera = asdict(meta.camera(first)) if first in meta.camera_names else None
        WorldModel(self.encoder, predictor, camera, views=self.views, layout=self.layout).save(
            folder
        )


def check_cache_matches(cache, dataset, cache_dir: str) -> None:
    """Raise StaleCacheError unless the cache holds every episode of ``dataset`` at its length."""
    if len(cache) != len(dataset):
        raise StaleCacheError(
            f"{cache_dir}: cache has {len(cache)} episodes, dataset {len(dataset)}; rerun wm-cache"
        )
    recorded = cache.meta.get("episode_names")
    names = getattr(dataset, "episode_names", None)
    if isinstance(recorded, dict) and names is not None:
        moved = [i for i, n in enumerate(names) if recorded.get(str(i)) != n]
        if moved:
            raise StaleCacheError(
                f"{cache_dir}: position {moved[0]} holds the features of "
                f"{recorded.get(str(moved[0]))}, the dataset's episode there is "
                f"{names[moved[0]]} (episodes were added or removed); rerun wm-cache"
            )
    for ep in range(len(dataset)):
        if cache.episode_length(ep) != dataset.episode_length(ep):
            raise StaleCacheError(
                f"{cache_dir}: episode {ep} has {cache.episode_length(ep)} cached frames, "
                f"dataset {dataset.episode_length(ep)}; rerun wm-cache"
            )


def build_source(cfg: TrainConfig, device: torch.device | str = "cpu") -> EpisodeSource:
    """Dataset + frozen encoder (+ feature cache in cached mode) from the config's paths."""
    from worldmodel.data.episodes import open_dataset
    from worldmodel.frozen_encoder import FrozenEncoder

    if not cfg.data_root or not cfg.encoder_dir:
        raise ValueError("TrainConfig.data_root and TrainConfig.encoder_dir are required")
    if cfg.mode == "cached" and not cfg.cache_dir:
        raise ValueError("TrainConfig.cache_dir is required in mode='cached'")
    dataset = open_dataset(cfg.data_root)
    views = resolve_views(cfg.views, dataset.meta.camera_names)
    for view in views:
        dataset.meta.camera(view)  # KeyError naming the dataset's cameras
    encoder = with_views(FrozenEncoder.load(cfg.encoder_dir, device=device), views)
    if cfg.mode == "on_the_fly":
        return EpisodeSource(dataset, encoder, views=views)
    from worldmodel.training.feature_cache import FeatureCache

    cache = FeatureCache(cfg.cache_dir, encoder.identity())
    check_cache_matches(cache, dataset, cfg.cache_dir)
    return EpisodeSource(dataset, encoder, features=cache.features, views=views)
