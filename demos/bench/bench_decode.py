"""Benchmark of video decoding: decord vs PyAV frames/s on the same H.264 file.

    python demos/bench/bench_decode.py [--frames 200] [--sizes 64x64 256x256 640x480] [--gop 2]

For each size one H.264 file is written the way our datasets are (``write_video`` defaults:
libx264, yuv444p, crf 10, preset veryfast, libx264's default keyframe interval of 250 frames),
from smooth synthetic frames. Both libraries then decode that same file in the same run:

* sequential: open the file and decode every frame (an importer or a full-episode read);
* clips (open reader): random 8-frame clips (stride 1) from a reader opened once, as
  ``EpisodeDataset.read_clip`` does with its cached readers during training;
* clips (open per clip): the same clips, opening the file for every clip, as ``Mp4FolderClips``
  does; the ``open_video + decode_frames`` row opens per clip the way the datasets read.

A last check decodes random frames of an open-GOP HEVC file (x265's default) with both
libraries and counts frames that differ from a sequential decode: decord 0.6 returns
neighbouring frames there. Together with the clip numbers (PyAV ahead on our own files at every
size) this is why ``open_video`` reads every file with PyAV.

decord runs with ``num_threads=1`` (what ``open_video`` uses) and PyAV through
``worldmodel.data.video.PyAVReader`` with one decoder thread, so both are single-threaded;
DataLoader workers supply the parallelism. ``read_video`` (PyAV with FFmpeg's automatic
threading) is shown as an extra row. Each number is the best of ``--repeats`` runs; the ratio
is PyAV / decord (above 1: PyAV is faster). ``--gop`` re-runs with a shorter keyframe interval
(LeRobot writes ``g=2``), where PyAV's seeks land close to every clip.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import decord
import numpy as np

from worldmodel.data.meta import VideoSpec
from worldmodel.data.video import (
    PyAVReader,
    available_encoders,
    decode_frames,
    open_video,
    read_video,
    write_video,
)


def synthetic_frames(num: int, height: int, width: int) -> np.ndarray:
    """Smooth moving gradients (compress like camera footage, unlike noise)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, ..., 0] = 128 + 100 * np.sin((xx + 3 * t) / 23.0)
        frames[t, ..., 1] = 128 + 100 * np.cos((yy - 2 * t) / 31.0)
        frames[t, ..., 2] = (xx + yy + 4 * t) % 256
    return frames


def best_fps(*fns: Callable[[], int], repeats: int) -> list[float]:
    """Best frames/s of ``repeats`` calls of each ``fn`` (returning the frames it decoded),
    the functions taking turns so that a load change on shared cores hits both alike."""
    best = [0.0] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            frames = fn()
            best[k] = max(best[k], frames / (time.perf_counter() - start))
    return best


def bench_file(path: Path, starts: list[int], clip: int, repeats: int) -> list[tuple]:
    """(case, decord frames/s, PyAV frames/s) rows for one file."""

    def decord_reader() -> decord.VideoReader:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)

    def decord_all() -> int:
        reader = decord_reader()
        return len(reader.get_batch(list(range(len(reader)))).asnumpy())

    def pyav_all() -> int:
        reader = PyAVReader(path)
        n = len(reader.get_batch(list(range(len(reader)))))
        reader.close()
        return n

    def read_video_all() -> int:
        return len(read_video(path)[0])

    dec, pav = decord_reader(), PyAVReader(path)

    def decord_clips() -> int:
        return sum(len(dec.get_batch(list(range(s, s + clip))).asnumpy()) for s in starts)

    def pyav_clips() -> int:
        return sum(len(pav.get_batch(list(range(s, s + clip)))) for s in starts)

    def decord_clips_open() -> int:
        return sum(
            len(decord_reader().get_batch(list(range(s, s + clip))).asnumpy()) for s in starts
        )

    def pyav_clips_open() -> int:
        total = 0
        for s in starts:
            reader = PyAVReader(path)
            total += len(reader.get_batch(list(range(s, s + clip))))
            reader.close()
        return total

    def routed_clips_open() -> int:
        return sum(
            len(decode_frames(open_video(path), list(range(s, s + clip)), path)) for s in starts
        )

    # Both libraries must return the same frames (same FFmpeg decoder, same RGB conversion).
    a = dec.get_batch(list(range(starts[0], starts[0] + clip))).asnumpy().astype(np.int16)
    b = pav.get_batch(list(range(starts[0], starts[0] + clip))).astype(np.int16)
    diff = float(np.abs(a - b).mean())
    rows = [
        ("sequential (all frames)", *best_fps(decord_all, pyav_all, repeats=repeats)),
        (f"clips {clip}f (open reader)", *best_fps(decord_clips, pyav_clips, repeats=repeats)),
        (
            f"clips {clip}f (open per clip)",
            *best_fps(decord_clips_open, pyav_clips_open, repeats=repeats),
        ),
        ("read_video (auto threads)", None, *best_fps(read_video_all, repeats=repeats)),
        ("open_video + decode_frames", None, *best_fps(routed_clips_open, repeats=repeats)),
    ]
    pav.close()
    print(f"  decord vs PyAV mean |pixel difference| on one clip: {diff:.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["64x64", "256x256", "640x480"], help="WxH")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gop", type=int, nargs="*", default=[], help="extra keyframe intervals")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    starts = [int(s) for s in rng.integers(0, args.frames - args.clip_frames + 1, args.clips)]
    print(
        f"{args.frames} frames per file, {args.clips} random clips of {args.clip_frames} frames, "
        f"best of {args.repeats}, cpu_count={os.cpu_count()}, decord {decord.__version__}"
    )
    header = (
        f"{'size':>8} {'gop':>5}  {'case':<28} {'decord f/s':>11} {'PyAV f/s':>10} {'ratio':>6}"
    )
    table = [header, "-" * len(header)]
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            frames = synthetic_frames(args.frames, height, width)
            for gop in [None, *args.gop]:
                path = Path(tmp) / f"{size}_{gop}.mp4"
                write_video(path, frames, 30.0, VideoSpec(), gop=gop)
                print(f"{size} gop={gop or 'default'}: {path.stat().st_size / 1e6:.2f} MB")
                for case, dec, pav in bench_file(path, starts, args.clip_frames, args.repeats):
                    ratio = f"{pav / dec:6.2f}" if dec and pav else "     -"
                    dec_s = f"{dec:11.0f}" if dec else f"{'-':>11}"
                    pav_s = f"{pav:10.0f}" if pav else f"{'-':>10}"
                    table.append(f"{size:>8} {gop or 250:>5}  {case:<28} {dec_s} {pav_s} {ratio}")
    print("\n".join(table))
    check_open_gop(args.clip_frames)


def check_open_gop(clip: int) -> None:
    """Count random-access frames that differ from a sequential decode on open-GOP HEVC."""
    if "libx265" not in available_encoders():
        print("open-GOP check skipped: no libx265 encoder in this PyAV build")
        return
    frames = synthetic_frames(120, 256, 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hevc.mp4"
        write_video(path, frames, 30.0, VideoSpec(pix_fmt="yuv420p"), codec="libx265", gop=8)
        whole, _ = read_video(path)
        ids = [int(i) for i in np.random.default_rng(0).permutation(120)[:40]]
        dec = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        pav = PyAVReader(path)
        for name, got in (
            ("decord", dec.get_batch(ids).asnumpy()),
            ("PyAV", pav.get_batch(ids)),
        ):
            wrong = sum(not np.array_equal(g, whole[i]) for g, i in zip(got, ids, strict=True))
            print(f"open-GOP HEVC (x265, gop 8): {name} returns {wrong} of {len(ids)} frames wrong")


if __name__ == "__main__":
    main()
