"""Benchmark of wm-import throughput on a generated source dataset of moderate size.

    python demos/bench/bench_import.py [--format lerobot-v3] [--episodes 8] [--length 150]
        [--size 640x480] [--cameras 2] [--codec libsvtav1] [--fps 0] [--image-size 256]

Writes a source dataset in the published layout (:mod:`worldmodel.data.importers.fixtures`;
frames are smooth moving gradients, which compress and decode like camera footage, not flat
test patterns) into a temporary folder, then times :func:`import_dataset` on it: decoding
(PyAV), the table checks, fitting frames to ``image-size`` squares and writing our H.264
episodes. Reported: output frames (steps) per second, and camera frames per second (steps x
cameras: every camera's frame is decoded and re-encoded). Writing the source is not timed.
``--format``: ``lerobot-v3`` (several episodes per parquet / mp4, LeRobot's AV1 by default),
``lerobot-v21`` (one file per episode) or ``droid`` (raw folders; needs 1 to 3 cameras).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from worldmodel.data.importers import fixtures as fx
from worldmodel.data.importers.cli import import_dataset
from worldmodel.data.importers.config import ImportConfig


def gradient_frames(num: int, width: int, height: int, phase: int) -> np.ndarray:
    """(T, H, W, 3) uint8 smooth moving gradients."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num, height, width, 3), np.uint8)
    for t in range(num):
        s = t + phase
        frames[t, ..., 0] = 128 + 100 * np.sin((xx + 3 * s) / 23.0)
        frames[t, ..., 1] = 128 + 100 * np.cos((yy - 2 * s) / 31.0)
        frames[t, ..., 2] = (xx + yy + 4 * s) % 256
    return frames


def write_source(args: argparse.Namespace, root: Path) -> None:
    width, height = (int(v) for v in args.size.split("x"))
    if args.format == "droid":
        keys = ("ext1", "ext2", "wrist")[: args.cameras]
        episodes = fx.ee_episodes(args.episodes, args.length, cameras=keys, size=(8, 8))
    else:
        keys = tuple(f"observation.images.cam{c}" for c in range(args.cameras))
        episodes = fx.make_episodes(args.episodes, args.length, cameras=keys, size=(8, 8))
    for e, ep in enumerate(episodes):
        ep.frames = {
            k: gradient_frames(args.length, width, height, 17 * e + c) for c, k in enumerate(keys)
        }
    if args.format == "lerobot-v3":
        fx.write_lerobot_v30(
            root,
            episodes,
            fps=args.source_fps,
            codec=args.codec,
            episodes_per_file=4,
            episodes_per_video=4,
        )
    elif args.format == "lerobot-v21":
        fx.write_lerobot_v21(root, episodes, fps=args.source_fps, codec=args.codec)
    else:
        fx.write_droid_raw(root, episodes, fps=args.source_fps, codec=args.codec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--format", choices=("lerobot-v3", "lerobot-v21", "droid"), default="lerobot-v3"
    )
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--length", type=int, default=150, help="rows (frames) per episode")
    parser.add_argument("--size", default="640x480", help="source frame WxH")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument(
        "--codec", default="libsvtav1", help="source encoder (see available_encoders)"
    )
    parser.add_argument("--source-fps", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=0.0, help="target rate (0 = source rate)")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        t0 = time.perf_counter()
        write_source(args, src)
        print(f"source written in {time.perf_counter() - t0:.1f} s ({args.format}, {args.codec})")
        cfg = ImportConfig(
            src=str(src),
            out_dir=str(out),
            fps=args.fps,
            image_size=args.image_size,
            on_error="raise",
        )
        result = import_dataset(cfg)
    steps_s = result.frames_per_s
    print(
        f"wm-import {args.format}: {args.episodes} episodes x {args.length} rows, {args.cameras} "
        f"camera(s) {args.size} {args.codec} -> {args.image_size}px, {result.resampling}: "
        f"{result.frames} steps in {result.seconds:.1f} s = {steps_s:.1f} steps/s, "
        f"{steps_s * args.cameras:.1f} camera frames/s, "
        f"{result.source_rows / result.seconds:.1f} source rows/s"
    )


if __name__ == "__main__":
    main()
