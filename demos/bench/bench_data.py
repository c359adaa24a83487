"""Benchmark of the data path: collection frames/s (real envs) and decord clip loading frames/s.

    python demos/bench/bench_data.py [--task pick_place] [--episodes 2] [--sizes 64 128 256]

Collection: ``wm-collect`` in one process (workers=1) with the scripted expert, timing env
stepping + rendering + mp4 encoding + writing; frames/s counts recorded frames of the exterior
camera. Loading: random clips (8 frames, stride 1) via ``EpisodeDataset.read_clip`` (decord
``get_batch``), counting decoded frames/s. Rerunnable: every run writes into a fresh temp dir.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from envs.collection.collect import CollectConfig, collect
from worldmodel.data import open_dataset


def bench_collect(task: str, size: int, episodes: int, root: Path) -> float:
    """Frames/s of recording ``episodes`` episodes at ``size`` px into ``root``."""
    cfg = CollectConfig(
        env=task, episodes=episodes, image_size=size, out_dir=str(root), progress=False, workers=1
    )
    result = collect(cfg)
    return result.frames / result.seconds


def bench_load(root: Path, num_clips: int, num_frames: int, rng: np.random.Generator) -> float:
    """Decoded frames/s of ``num_clips`` random clips from the dataset at ``root``."""
    ds = open_dataset(root)
    picks = []
    for _ in range(num_clips):
        ep = int(rng.integers(len(ds)))
        picks.append((ep, int(rng.integers(ds.episode_length(ep) - num_frames + 1))))
    ds.read_clip(*picks[0], num_frames)  # open the first reader outside the timing
    start = time.perf_counter()
    for ep, first in picks:
        ds.read_clip(ep, first, num_frames)
    return num_clips * num_frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--clip-frames", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"task={args.task} episodes={args.episodes} per size, 1 process, cpu_count={os.cpu_count()}"
    )
    print(f"{'px':>5} {'collect frames/s':>17} {'load frames/s':>14} {'mp4 KiB/frame':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"{args.task}_{size}"
            collect_fps = bench_collect(args.task, size, args.episodes, root)
            load_fps = bench_load(root, args.clips, args.clip_frames, rng)
            mp4s = list(root.glob("episodes/*/exterior.mp4"))
            frames = sum(open_dataset(root).episode_length(i) for i in range(len(mp4s)))
            kib = sum(p.stat().st_size for p in mp4s) / 1024 / frames
            print(f"{size:>5} {collect_fps:>17.1f} {load_fps:>14.1f} {kib:>14.2f}")


if __name__ == "__main__":
    main()
