"""Video files: writing (libx264 through imageio-ffmpeg; HEVC / AV1 through PyAV) and reading.

Reading has two entry points:

* :func:`probe_video` / :func:`read_video`: any file a user has (H.264, HEVC, AV1, VP9 ... in mp4,
  mkv or webm), decoded with PyAV, optionally only a time range of it. LeRobot v3.0 packs many
  episodes into one mp4 and locates each by ``from``/``to`` timestamps; :func:`read_video` seeks
  to the keyframe before ``start_s`` instead of decoding from the file's start.
* :func:`open_video` / :func:`decode_frames`: random access by frame index for our own episode
  datasets and mp4 folders (training clips), through :class:`PyAVReader` (why not decord:
  :func:`open_video`).

Every failure is a :class:`~worldmodel.errors.DatasetError` naming the file; a stream whose codec
has no decoder in this PyAV/FFmpeg build raises :class:`UnsupportedCodecError`, which names the
codec and the codecs that can be decoded.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import imageio_ffmpeg
import numpy as np
from av.video.reformatter import VideoReformatter

from worldmodel.data.meta import VideoSpec
from worldmodel.errors import DatasetError

# decord 0.6 mis-copies frames whose width divides 144 (2, 4, ..., 48, 72 px; measured on widths
# 2..400): get_batch fails with "DECORDArrayCopyFromTo: The size must exactly match".
_DECORD_BAD_WIDTH_DIVIDES = 144

# read_video compares frame times with start_s / end_s with this tolerance, as a fraction of the
# frame period: timestamps are rounded to the container's time base (0.9999999 s instead of 1.0 s)
# and LeRobot's from/to timestamps are sums of such rounded values. A quarter period absorbs the
# rounding and can never confuse two neighbouring frames (they are a whole period apart).
TIME_TOLERANCE_FRAMES = 0.25
# Frame rate assumed for the tolerance when a stream declares none.
_FALLBACK_FPS = 30.0

# _RGB_NOTE: frames are converted to RGB through one VideoReformatter per reader: PyAV 18's
# frame.to_ndarray(format="rgb24") sets up a new swscale context for every frame, which made it
# 10x slower at 64 px (2k vs 19k frames/s) for the same pixels (checked equal, also to decord's).

# Software decoders to look for, per codec. FFmpeg's native "av1" decoder only drives hardware
# decoders; without one it fails on the first frame, so AV1 needs dav1d or libaom.
_DECODER_CANDIDATES = {"av1": ("libdav1d", "libaom-av1")}
# Codec of each decoder that wraps an external library, for PyAV versions without
# Codec.canonical_name.
_WRAPPER_DECODERS = {
    "libdav1d": "av1",
    "libaom-av1": "av1",
    "libvpx": "vp8",
    "libvpx-vp9": "vp9",
    "libopenh264": "h264",
}
# Codecs listed in the "available: ..." part of an unsupported-codec message.
_COMMON_CODECS = ("h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "mjpeg", "prores", "ffv1")
# Encoders write_video can use besides libx264, by the codec they produce.
_PYAV_ENCODERS = ("libx264", "libx265", "libsvtav1", "libaom-av1", "librav1e")
_ENCODER_CODEC = {
    "libx264": "h264",
    "libx265": "hevc",
    "libsvtav1": "av1",
    "libaom-av1": "av1",
    "librav1e": "av1",
}
# VideoSpec.preset holds an x264/x265 preset name; the AV1 encoders take a speed number.
_AV1_SPEED_OPTIONS = {
    "libsvtav1": {"preset": "10"},
    "libaom-av1": {"cpu-used": "8", "row-mt": "1"},
    "librav1e": {"speed": "10"},
}


class VideoInfo(NamedTuple):
    """What :func:`probe_video` reads from a file's header (no frame is decoded)."""

    codec: str  # FFmpeg codec name: "h264", "hevc", "av1", "vp9", ...
    width: int
    height: int
    fps: float  # average frame rate; 0.0 when the container declares none
    # From the header; None when the container does not store it. A file trimmed without
    # re-encoding counts frames its edit list hides, so read_video may return fewer.
    num_frames: int | None
    duration_s: float | None  # of the video stream; None when unknown


class UnsupportedCodecError(DatasetError):
    """A video stream's codec has no (software) decoder in this PyAV/FFmpeg build."""

    def __init__(self, path: str | os.PathLike, codec: str) -> None:
        self.path, self.codec = Path(path), codec
        super().__init__(
            f"{path}: codec {codec!r} cannot be decoded by this PyAV/FFmpeg build; "
            f"available: {', '.join(decodable_codecs()) or 'none'} (re-encode the video, e.g. "
            f"ffmpeg -i IN -c:v libx264 -crf 10 OUT.mp4, or install a PyAV build that "
            f"decodes {codec})"
        )


# ---------------------------------------------------------------------------------------------
# Codec lookup


def software_decoder(codec: str) -> str | None:
    """Name of the FFmpeg decoder this PyAV build has for ``codec`` (e.g. "av1" -> "libdav1d"),
    or None when it cannot decode it in software."""
    for name in _DECODER_CANDIDATES.get(codec, (codec,)):
        try:
            av.codec.Codec(name, "r")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        return name
    return None


def decodable_codecs() -> list[str]:
    """The common video codecs this PyAV build can decode (subset of h264, hevc, av1, vp9...)."""
    return [c for c in _COMMON_CODECS if software_decoder(c) is not None]


def available_encoders() -> dict[str, str]:
    """Encoders :func:`write_video` can use on this machine, mapped to the codec they produce,
    e.g. ``{"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1"}``."""
    found = {}
    for name in _PYAV_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        found[name] = _ENCODER_CODEC[name]
    return found


# ---------------------------------------------------------------------------------------------
# Writing


def check_decodable_width(width: int) -> None:
    """Raise ValueError for frame widths decord cannot read back (e.g. 16, 24, 48, 72).

    This package reads with PyAV, which has no such limit; the writer keeps refusing them so
    that datasets stay readable by decord-based tools (and by versions before PyAV)."""
    if _DECORD_BAD_WIDTH_DIVIDES % width == 0:
        raise ValueError(
            f"frame width {width} px cannot be decoded by decord 0.6 (widths dividing "
            f"{_DECORD_BAD_WIDTH_DIVIDES} fail); use e.g. 32, 64, 96, 128 or 256"
        )


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    spec: VideoSpec | None = None,
    codec: str | None = None,
    gop: int | None = None,
) -> None:
    """Encode frames into a video file with exactly one video frame per input frame.

    Args:
        path: output file (``.mp4``; ``.mkv`` also works for the PyAV encoders).
        frames: (T, H, W, 3) uint8 RGB.
        fps: constant frame rate written into the container.
        spec: codec settings (yuv444p keeps colour edges sharp; yuv420p needs even H and W).
        codec: encoder overriding ``spec.codec``: ``libx264`` (imageio-ffmpeg, the format of our
            datasets) or any of :func:`available_encoders` (PyAV): ``libx265`` (HEVC),
            ``libsvtav1`` / ``libaom-av1`` / ``librav1e`` (AV1). AV1 encoders take no x264
            preset name; a fast speed setting is used instead.
        gop: keyframe interval in frames (None: the encoder's default, 250 for libx264). Short
            GOPs make random access cheaper (LeRobot writes ``g=2``) and files larger.

    Raises:
        ValueError: bad frames, an encoder this machine lacks, or a pixel format the encoder
            cannot write (libsvtav1 writes yuv420p only).
    """
    spec = spec if spec is not None else VideoSpec()
    codec = codec if codec is not None else spec.codec
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
    if gop is not None and gop < 1:
        raise ValueError(f"{path}: gop must be >= 1, got {gop}")
    if codec == "libx264":
        _write_imageio(path, frames, fps, spec, gop)
    else:
        _write_pyav(path, frames, fps, spec, codec, gop)


def _write_imageio(
    path: str | os.PathLike, frames: np.ndarray, fps: float, spec: VideoSpec, gop: int | None
) -> None:
    """libx264 through the ffmpeg binary of imageio-ffmpeg (how every dataset so far was made)."""
    _, height, width, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out=spec.pix_fmt,
        quality=None,
        bitrate=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-crf", str(spec.crf), "-preset", spec.preset]
        + (["-g", str(gop)] if gop is not None else []),
    )
    writer.send(None)  # start the generator (launches ffmpeg)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def _write_pyav(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    spec: VideoSpec,
    codec: str,
    gop: int | None,
) -> None:
    """HEVC / AV1 (or H.264) through the encoders bundled with PyAV."""
    encoders = available_encoders()
    if codec not in encoders:
        raise ValueError(
            f"{path}: encoder {codec!r} is not available on this machine; available: "
            f"{', '.join(encoders) or 'none'}"
        )
    formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    if formats and spec.pix_fmt not in formats:
        raise ValueError(
            f"{path}: encoder {codec!r} cannot write pix_fmt {spec.pix_fmt!r}; it writes "
            f"{', '.join(f for f in formats if f in ('yuv420p', 'yuv444p')) or formats}"
        )
    _, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    options = {"crf": str(spec.crf)}
    if codec in _AV1_SPEED_OPTIONS:
        options.update(_AV1_SPEED_OPTIONS[codec])
    else:
        options["preset"] = spec.preset
    if codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints its settings to stderr
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings unless told errors only
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
            stream.time_base = 1 / rate  # pts = frame index: one video frame per input frame
            if gop is not None:
                stream.codec_context.gop_size = gop
            for i, frame in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                vf.pts = i
                container.mux(stream.encode(vf))
            container.mux(stream.encode(None))  # flush delayed frames
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: encoding with {codec} failed: {_ffmpeg_message(exc)}") from exc


# ---------------------------------------------------------------------------------------------
# Probing and reading with PyAV


def _codec_without_decoder(path: Path) -> str:
    """Codec name of the first video stream when PyAV has no decoder for it (PyAV then exposes
    no codec context): read from the stream line ``ffmpeg -i`` prints."""
    try:
        out = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stderr
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(r"Stream #\S+.*?: Video: ([\w-]+)", out)
    return match.group(1) if match else "unknown"


def _codec_name(codec: av.codec.Codec) -> str:
    """FFmpeg's codec name ("av1") of a decoder, which may be a wrapper library ("libdav1d").
    Newer PyAV exposes it as ``canonical_name`` (18.1 does, 14.0 does not)."""
    name = getattr(codec, "canonical_name", None)
    return name or _WRAPPER_DECODERS.get(codec.name, codec.name)


def _ffmpeg_message(exc: Exception) -> str:
    """FFmpeg's own text of a PyAV error, without the errno and file name PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _open_container(path: Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV; DatasetError naming it when missing or not a media file."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing video file")
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise DatasetError(
            f"{path}: cannot open video (not a video file, or a truncated or corrupt "
            f"container): {_ffmpeg_message(exc)}"
        ) from exc


def _video_stream(container: av.container.InputContainer, path: Path):
    """First video stream, checked to have a software decoder (UnsupportedCodecError if not)."""
    if not container.streams.video:
        raise DatasetError(f"{path}: contains no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise UnsupportedCodecError(path, _codec_without_decoder(path))
    codec = _codec_name(stream.codec_context.codec)
    if software_decoder(codec) is None or stream.codec_context.name == "av1":
        # No decoder at all, or only FFmpeg's hardware-only native AV1 decoder.
        raise UnsupportedCodecError(path, codec)
    return stream


def _stream_info(stream) -> VideoInfo:
    """VideoInfo of an opened video stream."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = (
        float(stream.duration * stream.time_base)
        if stream.duration is not None and stream.time_base
        else None
    )
    if duration is None and stream.container.duration is not None:
        duration = stream.container.duration / av.time_base
    return VideoInfo(
        codec=_codec_name(stream.codec_context.codec),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        fps=fps,
        num_frames=int(stream.frames) or None,
        duration_s=duration,
    )


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Codec, size, frame rate, frame count and duration of the first video stream.

    Raises:
        DatasetError: missing file, not a video, or a truncated / corrupt container.
        UnsupportedCodecError: no decoder for the stream's codec in this build (names it).
    """
    path = Path(path)
    with _open_container(path) as container:
        return _stream_info(_video_stream(container, path))


def _frame_time(frame, stream, index: int, fps: float) -> float:
    """Presentation time of a decoded frame in seconds (frame index / fps when it has no pts)."""
    if frame.pts is not None and stream.time_base:
        return float(frame.pts * stream.time_base)
    return index / fps


def read_video(
    path: str | os.PathLike, start_s: float | None = None, end_s: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every frame whose presentation time t satisfies ``start_s <= t < end_s``.

    Both bounds are compared with a tolerance of :data:`TIME_TOLERANCE_FRAMES` (a quarter) of the
    frame period, so a frame stamped 0.9999999 s counts as 1.0 s: it is read for
    ``start_s=1.0`` and not for ``end_s=1.0``. With ``start_s`` the reader seeks to the keyframe
    at or before it rather than decoding from the file's start.

    Args:
        path: any container/codec this PyAV build decodes (H.264, HEVC, AV1 in mp4, mkv...).
        start_s: first time to read in seconds (None: from the first frame).
        end_s: end of the range in seconds, exclusive (None: to the last frame).

    Returns:
        frames (T, H, W, 3) uint8 RGB and their presentation times (T,) float64 seconds, as
        stored in the file (LeRobot's ``timestamp`` convention).

    Raises:
        DatasetError: missing file, not a video, truncated or corrupt file (naming it).
        UnsupportedCodecError: the stream's codec cannot be decoded here (naming the codec).
    """
    path = Path(path)
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        info = _stream_info(stream)
        fps = info.fps or _FALLBACK_FPS
        tol = TIME_TOLERANCE_FRAMES / fps
        lo = -np.inf if start_s is None else start_s - tol
        hi = np.inf if end_s is None else end_s - tol
        stream.thread_type = "AUTO"  # frame + slice threads: whole-range reads are sequential
        seek = start_s is not None and start_s > tol
        frames, times, eof = _decode_range(container, stream, path, lo, hi, fps, seek)
        if seek:
            # Did the demuxer land after start_s (a missing index entry)? Then the first frame
            # read comes a whole period or more after lo, or none comes although the range lies
            # inside the stream: decode again from the start.
            past_end = info.duration_s is not None and start_s >= info.duration_s - tol
            if (times[0] >= lo + 1.0 / fps) if times else not (eof and past_end):
                frames, times, eof = _decode_range(
                    container, stream, path, lo, hi, fps, False, True
                )
        _check_complete(path, stream, times, eof, end_s, fps)
    if not frames:
        return np.zeros((0, info.height, info.width, 3), np.uint8), np.zeros(0, np.float64)
    return np.stack(frames), np.asarray(times, np.float64)


def _decode_range(
    container,
    stream,
    path: Path,
    lo: float,
    hi: float,
    fps: float,
    seek: bool,
    rewind: bool = False,
):
    """Frames with lo <= t < hi in presentation order, and whether the stream ended first.

    ``seek``: start at the keyframe at or before ``lo``; ``rewind``: start at the beginning again
    after an earlier pass over the same container."""
    frames: list[np.ndarray] = []
    times: list[float] = []
    rgb = VideoReformatter()  # one conversion context for all frames (see _RGB_NOTE)
    try:
        if seek:
            container.seek(int(lo / stream.time_base), stream=stream, backward=True)
        elif rewind:
            container.seek(0, backward=True, any_frame=False)
        for k, frame in enumerate(container.decode(stream)):
            t = _frame_time(frame, stream, k, fps)
            if t >= hi:
                return frames, times, False
            if t >= lo:
                frames.append(rgb.reformat(frame, format="rgb24").to_ndarray())
                times.append(t)
    except av.error.FFmpegError as exc:
        raise DatasetError(
            f"{path}: cannot decode frames (corrupt or truncated video?): {_ffmpeg_message(exc)}"
        ) from exc
    return frames, times, True


def _check_complete(path: Path, stream, times: list[float], eof: bool, end_s, fps) -> None:
    """DatasetError when the stream ended before the frames its header promises (truncated).

    Compared with the video stream's own duration (not the container's, which an audio track
    can extend, nor the header's frame count, which includes frames an edit list hides), with
    two frame periods of slack for variable frame rates.
    """
    if not eof or stream.duration is None or not stream.time_base:
        return
    stream_start = float((stream.start_time or 0) * stream.time_base)
    stream_end = stream_start + float(stream.duration * stream.time_base)
    due_until = stream_end if end_s is None else min(stream_end, end_s)
    last = times[-1] if times else None
    if last is not None and last + 2.0 / fps < due_until:
        raise DatasetError(
            f"{path}: frames end at {last:.3f} s but the stream's header gives "
            f"{stream_end:.3f} s (truncated or corrupt video)"
        )


# ---------------------------------------------------------------------------------------------
# Random access by frame index (datasets, training clips)


class FrameIndex(NamedTuple):
    """Packet-level index of a video stream (demuxed, not decoded)."""

    codec: str
    pts: tuple[int, ...]  # presentation timestamps of the shown frames, sorted: frame k has pts[k]
    key_pts: tuple[int, ...]  # timestamps of the keyframes (seek points), sorted


# PyAVReader skips decoding frames no other frame references (non-reference B-frames, about half
# of libx264's frames) while the wanted frame is more than this many frames ahead: 1.3-1.5x
# faster random access on long GOPs. The margin exceeds any encoder's reordering delay, so the
# wanted frame is never among them; should it be, the read is retried without skipping.
_SKIP_MARGIN = 16
# Decoders that honour a skip_frame change between frames. libdav1d (AV1) does not: after one
# NONREF stretch it returned frames with timestamps of no frame, even after a seek.
_SKIP_DECODERS = ("h264", "hevc")

# Frame indices of recently opened files, keyed by (path, size, mtime): Mp4FolderClips opens a
# file for every clip, and demuxing a long file in Python costs more than decoding a clip.
_INDEX_CACHE: OrderedDict[tuple[str, int, int], FrameIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 256


def _scan_packets(container, stream, path: Path) -> FrameIndex:
    """Demux every packet of ``stream``: frame timestamps and keyframes.

    Packets an edit list hides (a video trimmed without re-encoding starts at the keyframe before
    the cut; FFmpeg flags the frames before the cut as discarded) are decoded but never shown:
    they are seek points, not frames.
    """
    shown, key_pts = [], []
    packets = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue  # the flush packet at the end
            packets += 1
            if not packet.is_discard:
                shown.append(packet.pts)
            if packet.is_keyframe:
                key_pts.append(packet.pts)
    except av.error.FFmpegError as exc:
        raise DatasetError(
            f"{path}: cannot read packets (corrupt video?): {_ffmpeg_message(exc)}"
        ) from exc
    if stream.frames and packets < stream.frames:
        raise DatasetError(
            f"{path}: holds {packets} of the {stream.frames} frames its header lists "
            f"(truncated or corrupt video)"
        )
    if not shown:
        raise DatasetError(f"{path}: video stream has no frames")
    return FrameIndex(
        codec=_codec_name(stream.codec_context.codec),
        pts=tuple(sorted(shown)),
        key_pts=tuple(sorted(key_pts)) or (min(shown),),
    )


class PyAVReader:
    """Random access to the frames of a video by index with PyAV (see :func:`open_video`).

    ``len(reader)`` frames, ``get_batch(indices)`` decodes some (the interface of the
    ``decord.VideoReader`` it replaces). Frame k is the k-th shown frame in presentation order;
    the index is built from packet timestamps (demuxing only, no decoding; cached per file).
    Reading seeks to the keyframe at or before the first wanted frame and decodes forward,
    continuing without a new seek when no keyframe lies between the last frame decoded and the
    next wanted one. Correct for open GOPs (x265's default), where decord 0.6 returns
    neighbouring frames, and for trimmed files (edit lists), where decord also returns the
    hidden frames.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.path = Path(path)
        self._container = _open_container(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            # One decoder thread by default: training parallelism comes from DataLoader
            # workers, and frame threads delay every seek.
            self._stream.codec_context.thread_count = num_threads
            stat = self.path.stat()
            key = (str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)
            index = _INDEX_CACHE.get(key)
            if index is None:
                index = _scan_packets(self._container, self._stream, self.path)
                _INDEX_CACHE[key] = index
                while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                    _INDEX_CACHE.popitem(last=False)
            _INDEX_CACHE.move_to_end(key)
        except BaseException:
            self._container.close()
            raise
        self.index = index
        self._pts, self._key_pts = index.pts, index.key_pts
        self._index_of = {p: i for i, p in enumerate(index.pts)}
        self._rgb = VideoReformatter()  # one conversion context for all frames (see _RGB_NOTE)
        self._pos: int | None = None  # index of the last frame decoded; None: must seek
        self._frames = None  # the decode generator positioned after frame self._pos

    def __len__(self) -> int:
        return len(self._pts)

    def close(self) -> None:
        self._container.close()

    def _key_slot(self, target: int) -> int:
        """Position in ``self._key_pts`` of the last keyframe at or before frame ``target``."""
        return max(bisect.bisect_right(self._key_pts, self._pts[target]) - 1, 0)

    def _seek_to(self, key_pts: int) -> None:
        """Position the decoder at the keyframe with timestamp ``key_pts``."""
        self._container.seek(key_pts, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._pos = None

    def _decode_until(self, target: int, start: int, skip: bool) -> np.ndarray | None:
        """Decode forward from frame ``start`` (the current position) to frame ``target``; None if
        it never comes out (the stream ended, the demuxer landed after it, or it was skipped).

        With ``skip``, frames no other frame references are not decoded while ``target`` is more
        than :data:`_SKIP_MARGIN` frames ahead (see there)."""
        ctx = self._stream.codec_context

        skip = skip and ctx.name in _SKIP_DECODERS

        def set_skip(pos: int) -> None:
            ctx.skip_frame = "NONREF" if skip and target - pos > _SKIP_MARGIN else "DEFAULT"

        set_skip(start)
        try:
            for frame in self._frames:
                if frame.pts is None or frame.pts not in self._index_of:
                    continue  # hidden by an edit list, or a leading picture of an open GOP
                self._pos = self._index_of[frame.pts]
                if self._pos == target:
                    return self._rgb.reformat(frame, format="rgb24").to_ndarray()
                if self._pos > target:
                    break
                set_skip(self._pos)
        finally:
            ctx.skip_frame = "DEFAULT"
        self._pos = None
        return None

    def _read(self, target: int) -> np.ndarray:
        """Frame ``target``: continue decoding when no keyframe lies between the current position
        and it, else seek to the keyframe before it."""
        slot = self._key_slot(target)
        pos = self._pos
        if pos is not None and pos < target and self._key_pts[slot] <= self._pts[pos]:
            frame = self._decode_until(target, pos, skip=True)
            if frame is not None:
                return frame
        # Seek to the keyframe before target. Should the wanted frame not come out, retry without
        # skipping frames, then from the keyframe before that one (the demuxer may land after
        # target: its index is in decode-time order, which B-frames shift), then from the first.
        attempts = [(slot, True), (slot, False), (max(slot - 1, 0), False), (0, False)]
        for slot_try, skip in dict.fromkeys(attempts):
            key_pts = self._key_pts[slot_try]
            self._seek_to(key_pts)
            frame = self._decode_until(target, bisect.bisect_left(self._pts, key_pts), skip)
            if frame is not None:
                return frame
        raise DatasetError(
            f"{self.path}: frame {target} of {len(self)} could not be decoded (corrupt or "
            f"truncated video?)"
        )

    def get_batch(self, indices: list[int]) -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) as (len, H, W, 3) uint8 RGB."""
        n = len(self)
        for i in indices:
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: frame {i} out of range [0, {n})")
        try:
            got = {target: self._read(target) for target in sorted(set(indices))}
        except av.error.FFmpegError as exc:
            self._pos = None
            raise DatasetError(
                f"{self.path}: cannot decode frame (corrupt video?): {_ffmpeg_message(exc)}"
            ) from exc
        return np.stack([got[i] for i in indices])


def open_video(path: str | os.PathLike, num_threads: int = 1) -> PyAVReader:
    """Open a video for random access by frame index (see :func:`decode_frames`).

    Every codec is read through :class:`PyAVReader`. decord 0.6, used here before, was slower
    on our own files' random-access clips (``demos/bench/bench_decode.py``: PyAV 1.1-2.5x the
    clips/s at 64-640 px), returns wrong frames on open GOPs and trimmed files, and cannot open
    AV1. Both return identical pixels on our H.264 files, so feature caches stay valid.

    Raises:
        DatasetError: the file is missing, not a video, or corrupt / truncated.
        UnsupportedCodecError: this PyAV/FFmpeg build cannot decode its codec (names the codec).
    """
    return PyAVReader(path, num_threads)


def decode_frames(
    reader: PyAVReader, indices: list[int] | np.ndarray, path: str | os.PathLike
) -> np.ndarray:
    """Decode frames at ``indices`` (random access, any order) as (len(indices), H, W, 3) uint8.

    ``path`` stays in the signature for its callers; the reader names its own file in errors.

    Raises:
        DatasetError: decoding failed (damaged stream), naming the file.
        IndexError: an index outside the video.
    """
    return reader.get_batch([int(i) for i in indices])
