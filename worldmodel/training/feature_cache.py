"""Frozen-encoder features of every episode, once: fp16 ``.npy`` files, memory-mapped on read.

Layout: ``root/.wm-cache`` (marker: this folder was created by wm-cache), ``root/meta.json``
(format, encoder identity = hash of weights + preprocessing, N, D, per-episode lengths,
complete flag) and ``root/ep_000000.npy`` of shape (T, N, D) float16. Every file is written to
a temporary name and renamed, so a killed writer leaves no half-written file under a final
name; a reader still checks each file's header and size.

Safety: wm-cache writes only into a new or empty folder, a folder carrying its marker, or a
cache written before the marker existed (resume); ``overwrite=true`` deletes only the files
wm-cache writes, and only in a folder carrying the marker (:func:`remove_cache`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worldmodel.errors import CacheDirError, DatasetError, StaleCacheError
from worldmodel.frozen_encoder import FrozenEncoder

CACHE_FORMAT = "worldmodel-feature-cache"
CACHE_VERSION = 1
META_FILE = "meta.json"
MARKER_FILE = ".wm-cache"
# Every name wm-cache writes into a cache folder, final or temporary: the only files that
# overwrite=true deletes.
_OWN_FILE_RE = re.compile(r"^(\.wm-cache(\.tmp)?|meta\.json(\.tmp)?|ep_\d{6}\.npy(\.tmp\.npy)?)$")


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


def _load_json(path: Path) -> Any:
    """Parsed JSON of ``path``; ValueError (with the reason) if unreadable or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON ({exc})") from exc


def _is_count(value: Any, minimum: int = 1) -> bool:
    return type(value) is int and value >= minimum


def _check_meta(meta: Any, path: Path) -> dict:
    """The parsed cache meta.json, every field the readers use checked (StaleCacheError)."""
    rerun = "rerun wm-cache with overwrite=true"
    if not isinstance(meta, dict):
        raise StaleCacheError(f"{path}: expected a JSON object, got {type(meta).__name__}; {rerun}")
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise StaleCacheError(
            f"{path}: format {meta.get('format')} v{meta.get('version')}, expected "
            f"{CACHE_FORMAT} v{CACHE_VERSION}; {rerun}"
        )
    checks = {
        "encoder_identity": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        "tokens_per_frame": (_is_count, "an integer >= 1"),
        "embed_dim": (_is_count, "an integer >= 1"),
        "complete": (lambda v: isinstance(v, bool), "true or false"),
        "episode_lengths": (
            lambda v: (
                isinstance(v, dict) and all(k.isdigit() and _is_count(n) for k, n in v.items())
            ),
            "an object mapping episode numbers to frame counts >= 1",
        ),
    }
    if meta.get("complete") is True:
        checks["num_episodes"] = (lambda v: _is_count(v, 0), "an integer >= 0")
    for key, (ok, expected) in checks.items():
        if key not in meta:
            raise StaleCacheError(f"{path}: missing field {key!r} ({expected}); {rerun}")
        if not ok(meta[key]):
            raise StaleCacheError(
                f"{path}: field {key!r} is {meta[key]!r}, expected {expected}; {rerun}"
            )
    if meta["complete"]:
        missing = [i for i in range(meta["num_episodes"]) if str(i) not in meta["episode_lengths"]]
        if missing:
            raise StaleCacheError(
                f"{path}: field 'episode_lengths' lacks episodes {missing[:8]} of "
                f"num_episodes={meta['num_episodes']}; {rerun}"
            )
    return meta


def _read_meta(root: Path) -> dict:
    path = root / META_FILE
    if not path.is_file():
        raise DatasetError(f"{root} is not a feature cache (no {META_FILE}); run wm-cache")
    try:
        meta = _load_json(path)
    except ValueError as exc:
        raise StaleCacheError(f"{path}: {exc}; rerun wm-cache with overwrite=true") from exc
    return _check_meta(meta, path)


def _valid_file(path: Path, shape: tuple[int, ...]) -> bool:
    """True when ``path`` is a complete float16 .npy of ``shape``."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return arr.dtype == np.float16 and arr.shape == shape


def _is_old_cache(root: Path) -> bool:
    """True for a cache written before the marker existed: meta.json of the cache format."""
    try:
        meta = _load_json(root / META_FILE)
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT


def _check_marker(root: Path) -> None:
    """CacheDirError unless ``root/.wm-cache`` is wm-cache's marker."""
    path = root / MARKER_FILE
    try:
        marker = _load_json(path)
    except ValueError as exc:
        raise CacheDirError(
            f"{path}: {exc}, expected wm-cache's marker; delete {root} by hand if it is a cache"
        ) from exc
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        raise CacheDirError(
            f"{path}: not wm-cache's marker (expected an object with format {CACHE_FORMAT!r}); "
            f"delete {root} by hand if it is a cache"
        )


def _marker() -> dict:
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "created_by": "wm-cache",
        "note": "wm-cache created this folder; overwrite=true deletes its files only where "
        "this marker is present",
    }


def _claim(root: Path) -> None:
    """Make sure wm-cache may write into ``root``; create and mark it if it is new or empty.

    Raises:
        CacheDirError: ``root`` is a file, or a non-empty folder that is neither a marked cache
            nor a cache written before the marker existed (its files could be overwritten).
    """
    if root.exists() and not root.is_dir():
        raise CacheDirError(f"cache_dir {root} is a file, expected a folder")
    if root.is_dir() and any(root.iterdir()):
        if (root / MARKER_FILE).exists():
            _check_marker(root)
        elif not _is_old_cache(root):
            raise CacheDirError(
                f"cache_dir {root} is not empty and is not a feature cache (no {MARKER_FILE} "
                f"marker, no cache {META_FILE}); wm-cache writes only into a new or empty "
                "folder or one of its caches: choose another cache_dir"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / MARKER_FILE, _marker())


def removable_files(root: str | os.PathLike) -> list[Path]:
    """The files ``overwrite=true`` would delete in the cache folder ``root`` (marker last).

    Raises:
        CacheDirError: ``root`` is a file, has no (valid) marker, or holds anything wm-cache
            does not write; nothing may then be deleted.
    """
    root = Path(root)
    if not root.exists():
        return []
    if not root.is_dir():
        raise CacheDirError(f"cache_dir {root} is a file, expected a folder")
    entries = sorted(root.iterdir())
    if not entries:
        return []
    if not (root / MARKER_FILE).exists():
        if _is_old_cache(root):
            raise CacheDirError(
                f"cache_dir {root} was written by a wm-cache older than the {MARKER_FILE} "
                "marker, so overwrite=true cannot tell its files from yours and deletes "
                f"nothing: check and delete the folder by hand (rm -r {root}), or drop "
                "overwrite=true to resume it"
            )
        raise CacheDirError(
            f"cache_dir {root} is not a feature cache (no {MARKER_FILE} marker); "
            "overwrite=true deletes only folders wm-cache created: choose another cache_dir"
        )
    _check_marker(root)
    foreign = [
        p.name
        for p in entries
        if not (_OWN_FILE_RE.match(p.name) and (p.is_file() or p.is_symlink()))
    ]
    if foreign:
        raise CacheDirError(
            f"cache_dir {root} holds files wm-cache did not write: {foreign[:5]}"
            f"{' ...' if len(foreign) > 5 else ''}; overwrite=true deletes nothing: move them "
            "out or delete the folder by hand"
        )
    return sorted(entries, key=lambda p: p.name == MARKER_FILE)


def remove_cache(root: str | os.PathLike) -> list[Path]:
    """Delete the files of the cache ``root`` (``overwrite=true``); the folder itself stays.

    Every check of :func:`removable_files` runs before the first deletion.
    """
    files = removable_files(root)
    for path in files:
        path.unlink()
    return files


class FeatureCacheWriter:
    """Encodes episodes into a cache folder; resumable (valid episode files are skipped)."""

    def __init__(self, root: str | os.PathLike, encoder: FrozenEncoder, source: dict) -> None:
        self.root = Path(root)
        self.encoder = encoder
        identity = encoder.identity()
        _claim(self.root)
        if (self.root / META_FILE).is_file():
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
            _write_json(self.root / META_FILE, self.meta)

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

    def recorded_name(self, episode: int) -> str | None:
        """The dataset episode (folder name) whose features position ``episode`` holds, as the
        last finished run recorded it; None when unknown (a cache made before names were kept)."""
        names = self.meta.get("episode_names")
        return names.get(str(episode)) if isinstance(names, dict) else None

    def finalize(
        self, num_episodes: int, lengths: list[int], names: list[str] | None = None
    ) -> None:
        """Record all episode lengths (and the dataset's episode names, by position: an import
        that later fills a gap shifts positions, and the names tell) and mark the cache
        complete."""
        if names is not None:
            self.meta["episode_names"] = {str(i): n for i, n in enumerate(names)}
        self.meta["episode_lengths"] = {str(i): n for i, n in enumerate(lengths)}
        self.meta["num_episodes"] = num_episodes
        self.meta["complete"] = True
        _write_json(self.root / META_FILE, self.meta)


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
