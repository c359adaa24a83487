"""Frozen-encoder features of every episode, once: fp16 ``.npy`` files, memory-mapped on read.

Layout: ``root/meta.json`` (format, encoder identity = hash of weights + preprocessing, N, D,
per-episode lengths, complete flag) and ``root/ep_000000.npy`` of shape (T, N, D) float16.
Every file is written to a temporary name and renamed, so a killed writer leaves no
half-written file under a final name; a reader still checks each file's header and size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worldmodel.errors import DatasetError, StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder

CACHE_FORMAT = "worldmodel-feature-cache"
CACHE_VERSION = 1


class EpisodeFrames(Protocol):
    """What the cache needs of an episode dataset (worldmodel.data contract)."""

    def __len__(self) -> int: ...

    def read_episode_frames(self, i: int) -> Any: ...


def episode_file(root: Path, episode: int) -> Path:
    return root / f"ep_{episode:06d}.npy"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _read_meta(root: Path) -> dict:
    path = root / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{root} is not a feature cache (no meta.json); run wm-cache")
    meta = json.loads(path.read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise StaleCacheError(f"{path}: format {meta.get('format')} v{meta.get('version')}")
    return meta


def _valid_file(path: Path, shape: tuple[int, ...]) -> bool:
    """True when ``path`` is a complete float16 .npy of ``shape``."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return arr.dtype == np.float16 and arr.shape == shape


class FeatureCacheWriter:
    """Encodes episodes into a cache folder; resumable (valid episode files are skipped)."""

    def __init__(self, root: str | os.PathLike, encoder: FrozenEncoder, source: dict) -> None:
        self.root = Path(root)
        self.encoder = encoder
        self.root.mkdir(parents=True, exist_ok=True)
        identity = encoder.identity()
        if (self.root / "meta.json").is_file():
            self.meta = _read_meta(self.root)
            if self.meta["encoder_identity"] != identity:
                raise StaleCacheError(
                    f"{self.root} holds features of encoder {self.meta['encoder_identity'][:12]}"
                    f", not {identity[:12]}; use another cache_dir or overwrite=true"
                )
        else:
            self.meta = {
                "format": CACHE_FORMAT, "version": CACHE_VERSION, "encoder_identity": identity,
                "encoder": {"embed_dim": encoder.embed_dim, "grid": list(encoder.grid),
                            "preprocess": encoder.preprocess_cfg.to_dict()},
                "tokens_per_frame": encoder.tokens_per_frame, "embed_dim": encoder.embed_dim,
                "dtype": "float16", "source": source, "episode_lengths": {}, "complete": False,
            }  # fmt: skip
            _write_json(self.root / "meta.json", self.meta)

    def _shape(self, length: int) -> tuple[int, int, int]:
        return (length, self.encoder.tokens_per_frame, self.encoder.embed_dim)

    def is_done(self, episode: int, length: int) -> bool:
        return _valid_file(episode_file(self.root, episode), self._shape(length))

    def write(self, episode: int, frames: np.ndarray) -> Path:
        """Encode (T, H, W, 3) uint8 frames and write ``ep_XXXXXX.npy`` atomically."""
        path = episode_file(self.root, episode)
        tmp = path.with_name(path.name + ".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                        shape=self._shape(len(frames)))  # fmt: skip
        step = self.encoder.batch_size
        for start in range(0, len(frames), step):
            z = self.encoder.encode_frames(frames[start : start + step])  # (b, N, D)
            out[start : start + len(z)] = z.cpu().numpy().astype(np.float16)
        out.flush()
        del out
        os.replace(tmp, path)
        self.meta["episode_lengths"][str(episode)] = len(frames)
        return path

    def finalize(self, num_episodes: int, lengths: list[int]) -> None:
        """Record all episode lengths and mark the cache complete."""
        self.meta["episode_lengths"] = {str(i): n for i, n in enumerate(lengths)}
        self.meta["num_episodes"] = num_episodes
        self.meta["complete"] = True
        _write_json(self.root / "meta.json", self.meta)


class FeatureCache:
    """Read side. features(ep) -> read-only np.memmap (T, N, D) float16."""

    def __init__(self, root: str | os.PathLike, encoder_identity: str) -> None:
        self.root = Path(root)
        self.meta = _read_meta(self.root)
        if self.meta["encoder_identity"] != encoder_identity:
            raise StaleCacheError(
                f"{self.root} was made by encoder {self.meta['encoder_identity'][:12]}, "
                f"not {encoder_identity[:12]}; rerun wm-cache"
            )
        if not self.meta.get("complete"):
            raise StaleCacheError(f"{self.root} is incomplete (wm-cache did not finish); rerun")
        self.lengths = [int(self.meta["episode_lengths"][str(i)])
                        for i in range(self.meta["num_episodes"])]  # fmt: skip

    @property
    def tokens_per_frame(self) -> int:
        return int(self.meta["tokens_per_frame"])

    @property
    def embed_dim(self) -> int:
        return int(self.meta["embed_dim"])

    def __len__(self) -> int:
        return len(self.lengths)

    def episode_length(self, episode: int) -> int:
        return self.lengths[episode]

    def features(self, episode: int) -> np.memmap:
        """(T, N, D) float16 memory map of one episode; StaleCacheError if partial or wrong."""
        if not 0 <= episode < len(self):
            raise IndexError(f"episode {episode} not in cache of {len(self)} episodes")
        path = episode_file(self.root, episode)
        shape = (self.lengths[episode], self.tokens_per_frame, self.embed_dim)
        if not _valid_file(path, shape):
            raise StaleCacheError(
                f"{path} is missing, partial or not float16 {shape}; rerun wm-cache"
            )
        return np.load(path, mmap_mode="r")
