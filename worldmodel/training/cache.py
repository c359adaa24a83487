"""wm-cache: encode every episode of a dataset once with the frozen encoder.

``wm-cache data_root=data/reach encoder_dir=runs/pretrain/encoder [cache_dir=...]``; ``encoder_dir`` is
our checkpoint folder, a Hugging Face VJEPA2 folder or a released ``.pt`` file. Resumable:
episodes whose feature file is already complete are skipped.

Under ``torchrun --nproc_per_node N -m worldmodel.training.cache ...`` each rank encodes its
share of the episodes (:mod:`worldmodel.data.shards`); rank 0 writes meta.json; the cache is the
one a single process writes.

Safety: the dataset, the views and the encoder are checked before anything is written or
deleted; the cache folder may not be the dataset folder, a folder above it or inside its
episodes; ``overwrite=true`` deletes only wm-cache's own files in a folder carrying its
``.wm-cache`` marker (see :mod:`worldmodel.training.feature_cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.data.shards import gather, mine, on_rank0, rank_and_world
from worldmodel.errors import CacheDirError, DatasetError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.views import parse_views, read_view_frames, resolve_views, with_views
from worldmodel.training.feature_cache import (
    EpisodeFrames,
    FeatureCacheWriter,
    removable_files,
    remove_cache,
)


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


def check_cache_location(cache_dir: str | os.PathLike, data_root: str | os.PathLike) -> None:
    """Refuse a cache folder that is the dataset folder, a folder above it, or inside the
    dataset's own files (``meta.json``, ``episodes/``): writing there, or deleting it with
    ``overwrite=true``, would touch the dataset. ``<data_root>/features`` (the default) is fine.

    Raises:
        CacheDirError: naming both folders.
    """
    from worldmodel.data.meta import META_FILE
    from worldmodel.data.writer import EPISODES_DIR

    cache, data = Path(cache_dir).resolve(), Path(data_root).resolve()
    if cache == data or cache in data.parents:
        where = "is the dataset folder" if cache == data else "is a folder above the dataset"
        raise CacheDirError(
            f"cache_dir {cache_dir} {where} {data_root}; wm-cache writes (and overwrite=true "
            f"deletes) there, so it refuses: use a folder of its own such as {data_root}/features"
        )
    for own in (data / EPISODES_DIR, data / META_FILE):
        if cache == own or own in cache.parents:
            raise CacheDirError(
                f"cache_dir {cache_dir} lies inside the dataset's {own.name} ({own}); use a "
                f"folder of its own such as {data_root}/features"
            )


def _require_episodes(dataset: EpisodeFrames, where: object) -> None:
    """DatasetError naming the dataset folder when it has no episodes (nothing to cache)."""
    if len(dataset) == 0:
        raise DatasetError(
            f"{where}: the dataset has no complete episodes (expected episodes/ep_XXXXXX "
            "folders); nothing to cache"
        )


def cache_dataset(
    dataset: EpisodeFrames,
    encoder: FrozenEncoder,
    cache_dir: str | Path,
    source: dict,
    camera: str = "exterior",
    progress: bool = True,
) -> Path:
    """Encode all episodes of ``dataset`` into ``cache_dir``; returns the folder.

    Raises:
        DatasetError: the dataset has no episodes (nothing is created).
        CacheDirError: ``cache_dir`` is (in) the dataset or a folder wm-cache did not create.
    """
    root = getattr(dataset, "root", None)  # an EpisodeDataset's folder
    _require_episodes(dataset, root if root is not None else source.get("data_root", "dataset"))
    if root is not None:
        check_cache_location(cache_dir, root)
    rank, world = rank_and_world()  # under torchrun: this rank's share of the episodes
    # rank 0 creates meta.json and the marker; if it is refused, every rank stops
    writer = on_rank0(lambda: FeatureCacheWriter(cache_dir, encoder, source), rank, world)
    if rank != 0:
        writer = FeatureCacheWriter(cache_dir, encoder, source)  # reads them
    known = getattr(dataset, "episode_length", None)  # frame counts without decoding
    names = getattr(dataset, "episode_names", None)  # what each position holds
    lengths: dict[int, int] = {}
    todo = [ep for ep in range(len(dataset)) if mine(ep, rank, world)]
    for ep in tqdm(todo, desc=f"wm-cache rank {rank}" if world > 1 else "wm-cache",
                   disable=not progress or rank != 0):  # fmt: skip
        length = known(ep) if known else writer.meta["episode_lengths"].get(str(ep))
        recorded = writer.recorded_name(ep)
        same = names is None or recorded is None or recorded == names[ep]
        if same and length is not None and writer.is_done(ep, int(length)):
            lengths[ep] = int(length)
            continue  # resumed: a complete, valid feature file
        frames = _frames_of(dataset, ep, camera)  # (T, H, W, 3) uint8
        writer.write(ep, frames)
        lengths[ep] = len(frames)
    everyone = {ep: n for part in gather(lengths, world) for ep, n in part.items()}

    def finalize() -> None:
        missing = sorted(set(range(len(dataset))) - set(everyone))
        if missing:
            raise DatasetError(f"{cache_dir}: episodes {missing[:10]} were not cached by any rank")
        writer.finalize(len(dataset), [everyone[ep] for ep in range(len(dataset))],
                        list(names) if names is not None else None)  # fmt: skip

    on_rank0(finalize, rank, world)
    return Path(cache_dir)


def build_cache(cfg: CacheConfig) -> Path:
    """Open the dataset and encoder named by ``cfg`` and cache every episode.

    Everything that can fail is checked before anything is deleted or written: the dataset
    (meta.json, every table), that it has episodes and the views, the cache folder's place,
    with ``overwrite`` that the old cache folder is wm-cache's own, the encoder, and with
    ``overwrite`` that every video decodes at the size meta.json gives.
    """
    from worldmodel.data.episodes import open_dataset
    from worldmodel.data.meta import META_FILE

    cache_dir = cfg.resolved_cache_dir
    dataset = open_dataset(cfg.data_root)
    _require_episodes(dataset, cfg.data_root)
    views = "+".join(resolve_views(cfg.views, dataset.meta.camera_names))
    for view in parse_views(views):
        if view not in dataset.meta.camera_names:
            raise DatasetError(
                f"{Path(cfg.data_root) / META_FILE}: no camera {view!r} for views={views!r}; "
                f"the dataset has cameras {list(dataset.meta.camera_names)}"
            )
    check_cache_location(cache_dir, cfg.data_root)
    rank, world = rank_and_world()
    if cfg.overwrite:
        removable_files(cache_dir)  # CacheDirError unless the old cache is wm-cache's own
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    if device == "cuda" and world > 1:  # one GPU per rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    encoder = FrozenEncoder.from_checkpoint(
        cfg.encoder_dir, batch_size=cfg.batch_size, device=device
    )
    encoder = with_views(encoder, views)  # views=exterior+wrist: side by side

    def clear() -> None:  # the old cache goes only if every video decodes
        for i in range(len(dataset)):
            dataset.verify(i)  # DatasetError: corrupt video, frame count or size
        remove_cache(cache_dir)

    if cfg.overwrite:
        on_rank0(clear, rank, world)
    source = {"data_root": str(Path(cfg.data_root).resolve()), "camera": views,
              "encoder_path": str(cfg.encoder_dir)}  # fmt: skip
    return cache_dataset(dataset, encoder, cache_dir, source, views)


RENAMED = {"encoder_path": "encoder_dir", "camera": "views"}  # deprecated, one release


def main() -> None:
    """Hydra entry point (config ``configs/cache.yaml``)."""
    run_cli("cache", config_from_mapping, _run, plain_defaults(CacheConfig), RENAMED)


def config_from_mapping(raw: dict) -> CacheConfig:
    """CacheConfig from a plain (Hydra) mapping; ``encoder_path`` and ``camera`` are the
    deprecated names of ``encoder_dir`` and ``views``."""
    return from_mapping(CacheConfig, raw, renamed=RENAMED, where="wm-cache")


def _run(cfg: CacheConfig) -> None:
    out = build_cache(cfg)
    if rank_and_world()[0] == 0:
        print(f"cache written to {out}")


if __name__ == "__main__":
    main()
