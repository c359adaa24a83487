"""wm-cache: encode every episode of a dataset once with the frozen encoder.

``wm-cache data_root=data/reach encoder_dir=runs/pretrain/encoder [cache_dir=...]``; ``encoder_dir`` is
our checkpoint folder, a Hugging Face VJEPA2 folder or a released ``.pt`` file. Resumable:
episodes whose feature file is already complete are skipped.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.views import parse_views, read_view_frames, with_views
from worldmodel.training.feature_cache import EpisodeFrames, FeatureCacheWriter


@dataclass(frozen=True)
class CacheConfig:
    """Inputs of wm-cache; cache_dir defaults to ``<data_root>/features``."""

    data_root: str = ""
    encoder_dir: str = ""
    cache_dir: str = ""
    views: str = "exterior"  # or several views side by side: "exterior+wrist"
    batch_size: int = 64
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        parse_views(self.views)  # ValueError on a malformed view list
        if not self.data_root or not self.encoder_dir:
            raise ValueError("CacheConfig.data_root and CacheConfig.encoder_dir must be set")
        if self.batch_size <= 0:
            raise ValueError(f"CacheConfig.batch_size must be > 0, got {self.batch_size}")

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.data_root) / "features"


def _frames_of(dataset: EpisodeFrames, episode: int, camera: str) -> np.ndarray:
    views = parse_views(camera)
    if len(views) > 1:  # a mosaic of the views side by side (worldmodel.models.views)
        return read_view_frames(dataset, episode, views)
    out = (
        dataset.read_episode_frames(episode)
        if camera == "exterior"
        else dataset.read_episode_frames(episode, camera=camera)
    )
    frames = getattr(out, "frames", out)  # a Clip-like object or the array itself
    return np.asarray(frames)


def cache_dataset(
    dataset: EpisodeFrames,
    encoder: FrozenEncoder,
    cache_dir: str | Path,
    source: dict,
    camera: str = "exterior",
    progress: bool = True,
) -> Path:
    """Encode all episodes of ``dataset`` into ``cache_dir``; returns the folder."""
    writer = FeatureCacheWriter(cache_dir, encoder, source)
    lengths = []
    for ep in tqdm(range(len(dataset)), desc="wm-cache", disable=not progress):
        known = writer.meta["episode_lengths"].get(str(ep))
        if known is not None and writer.is_done(ep, known):
            lengths.append(int(known))
            continue
        frames = _frames_of(dataset, ep, camera)  # (T, H, W, 3) uint8
        writer.write(ep, frames)
        lengths.append(len(frames))
    writer.finalize(len(dataset), lengths)
    return Path(cache_dir)


def build_cache(cfg: CacheConfig) -> Path:
    """Open the dataset and encoder named by ``cfg`` and cache every episode."""
    from worldmodel.data.episodes import open_dataset

    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    encoder = FrozenEncoder.from_checkpoint(
        cfg.encoder_dir, batch_size=cfg.batch_size, device=device
    )
    encoder = with_views(encoder, cfg.views)  # camera=exterior+wrist: views side by side
    cache_dir = cfg.resolved_cache_dir
    if cfg.overwrite and cache_dir.exists():
        shutil.rmtree(cache_dir)
    source = {"data_root": str(Path(cfg.data_root).resolve()), "camera": cfg.views,
              "encoder_path": str(cfg.encoder_dir)}  # fmt: skip
    return cache_dataset(open_dataset(cfg.data_root), encoder, cache_dir, source, cfg.views)


RENAMED = {"encoder_path": "encoder_dir", "camera": "views"}  # deprecated, one release


def main() -> None:
    """Hydra entry point (config ``configs/cache.yaml``)."""
    run_cli("cache", config_from_mapping, _run, plain_defaults(CacheConfig), RENAMED)


def config_from_mapping(raw: dict) -> CacheConfig:
    """CacheConfig from a plain (Hydra) mapping; ``encoder_path`` and ``camera`` are the
    deprecated names of ``encoder_dir`` and ``views``."""
    return from_mapping(CacheConfig, raw, renamed=RENAMED, where="wm-cache")


def _run(cfg: CacheConfig) -> None:
    print(f"cache written to {build_cache(cfg)}")


if __name__ == "__main__":
    main()
