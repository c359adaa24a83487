"""mp4 writing (imageio-ffmpeg, libx264) and reading (decord) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import decord
import imageio_ffmpeg
import numpy as np

from worldmodel.data.meta import VideoSpec
from worldmodel.errors import DatasetError

# decord raises RuntimeError on open failures and DECORDError on decode failures.
_DECORD_ERRORS = (RuntimeError, decord.DECORDError)
# decord 0.6 mis-copies frames whose width divides 144 (2, 4, ..., 48, 72 px; measured on widths
# 2..400): get_batch fails with "DECORDArrayCopyFromTo: The size must exactly match".
_DECORD_BAD_WIDTH_DIVIDES = 144


def check_decodable_width(width: int) -> None:
    """Raise ValueError for frame widths decord cannot read back (e.g. 16, 24, 48, 72)."""
    if _DECORD_BAD_WIDTH_DIVIDES % width == 0:
        raise ValueError(
            f"frame width {width} px cannot be decoded by decord 0.6 (widths dividing "
            f"{_DECORD_BAD_WIDTH_DIVIDES} fail); use e.g. 32, 64, 96, 128 or 256"
        )


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, spec: VideoSpec | None = None
) -> None:
    """Encode frames into an mp4 with exactly one video frame per input frame.

    Args:
        path: output file (``.mp4``).
        frames: (T, H, W, 3) uint8 RGB.
        fps: constant frame rate written into the container.
        spec: codec settings (yuv444p keeps colour edges sharp; yuv420p needs even H and W).
    """
    spec = spec if spec is not None else VideoSpec()
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"{path}: frames must be uint8 (T,H,W,3), got {frames.dtype} {frames.shape}"
        )
    num, height, width, _ = frames.shape
    if num < 1:
        raise ValueError(f"{path}: need at least one frame")
    check_decodable_width(width)
    if spec.pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"{path}: yuv420p needs even sizes, got {width}x{height}")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec=spec.codec,
        pix_fmt_in="rgb24",
        pix_fmt_out=spec.pix_fmt,
        quality=None,
        bitrate=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-crf", str(spec.crf), "-preset", spec.preset],
    )
    writer.send(None)  # start the generator (launches ffmpeg)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def open_video(path: str | os.PathLike, num_threads: int = 1) -> decord.VideoReader:
    """Open an mp4 with decord on the CPU.

    Raises:
        DatasetError: the file is missing or decord cannot parse it (corrupt or truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing video file")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except _DECORD_ERRORS as exc:
        raise DatasetError(
            f"{path}: cannot open video (corrupt or truncated mp4?): "
            f"{str(exc).splitlines()[0][:200]}"
        ) from exc


def decode_frames(
    reader: decord.VideoReader, indices: list[int] | np.ndarray, path: str | os.PathLike
) -> np.ndarray:
    """Decode frames at ``indices`` (random access) as (len(indices), H, W, 3) uint8.

    Raises:
        DatasetError: decoding failed (damaged stream), naming ``path``.
    """
    try:
        return reader.get_batch([int(i) for i in indices]).asnumpy()
    except _DECORD_ERRORS as exc:
        raise DatasetError(
            f"{path}: cannot decode frames {list(indices)[:8]}... "
            f"(corrupt mp4?): {str(exc).splitlines()[0][:200]}"
        ) from exc
