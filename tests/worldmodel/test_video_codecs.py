"""Reading the videos users have: H.264, HEVC and AV1 through read_video / probe_video and the
dataset reader (open_video / decode_frames), time-range reads of multi-episode files, and errors
that name the file or codec."""

from __future__ import annotations

import subprocess

import av
import imageio_ffmpeg
import numpy as np
import pytest

from worldmodel.data import open_dataset
from worldmodel.data import video as video_mod
from worldmodel.data.meta import VideoSpec
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.data.video import (
    PyAVReader,
    UnsupportedCodecError,
    available_encoders,
    decode_frames,
    open_video,
    probe_video,
    read_video,
    write_video,
)
from worldmodel.errors import DatasetError

# One encoder per codec users bring: H.264 (our datasets), HEVC (phones), AV1 (LeRobot).
ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
_AV1_ALTERNATIVES = ("libsvtav1", "libaom-av1", "librav1e")


def encoder_for(codec: str) -> str:
    """The encoder writing ``codec`` on this machine, or skip the test saying which is missing."""
    found = available_encoders()
    names = _AV1_ALTERNATIVES if codec == "av1" else (ENCODERS[codec],)
    for name in names:
        if name in found:
            return name
    pytest.skip(f"no {codec} encoder in this PyAV build (looked for {', '.join(names)})")


CODECS = pytest.mark.parametrize("codec", list(ENCODERS))


def smooth_frames(num: int, height: int, width: int) -> np.ndarray:
    """Smooth moving gradients: lossy codecs keep them within a few grey levels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, ..., 0] = 128 + 90 * np.sin((xx + 2 * t) / (width / 3))
        frames[t, ..., 1] = 128 + 90 * np.cos((yy - t) / (height / 3))
        frames[t, ..., 2] = 40 + 160 * xx / width + 2 * t
    return frames


def write(path, frames, fps, codec, gop=None):
    """Encode frames as ``codec`` (yuv420p: the only pixel format every encoder writes)."""
    write_video(path, frames, fps, VideoSpec(pix_fmt="yuv420p", crf=18), encoder_for(codec), gop)
    return path


@CODECS
@pytest.mark.parametrize(("width", "height", "fps"), [(640, 480, 30.0), (64, 64, 15.0)])
def test_read_video_every_codec(tmp_path, codec, width, height, fps):
    frames = smooth_frames(12, height, width)
    path = write(tmp_path / f"{codec}.mp4", frames, fps, codec)

    info = probe_video(path)
    assert (info.codec, info.width, info.height) == (codec, width, height)
    assert info.fps == pytest.approx(fps)
    assert info.num_frames == 12
    assert info.duration_s == pytest.approx(12 / fps, abs=1e-3)

    got, times = read_video(path)
    assert got.shape == (12, height, width, 3) and got.dtype == np.uint8
    assert times.dtype == np.float64
    np.testing.assert_allclose(times, np.arange(12) / fps, atol=1e-6)
    assert np.abs(got.astype(np.int16) - frames).mean() < 8


@CODECS
def test_time_range_read_of_middle_episode(tmp_path, monkeypatch, codec):
    """LeRobot v3.0 packs episodes into one file: episode 1 (frames 20..44) read by its from/to
    timestamps is exactly frames 20..44 of a whole read, for short and long keyframe intervals;
    with short ones decoding starts near frame 20, not at the file's start."""
    fps, lengths = 15.0, (20, 25, 15)
    frames = smooth_frames(sum(lengths), 64, 64)
    decoded = []  # times of every frame read_video decodes
    real_frame_time = video_mod._frame_time

    def spy(*args):
        decoded.append(real_frame_time(*args))
        return decoded[-1]

    monkeypatch.setattr(video_mod, "_frame_time", spy)
    for gop in (4, None):
        path = write(tmp_path / f"multi_{gop}.mp4", frames, fps, codec, gop=gop)
        whole, whole_t = read_video(path)
        assert len(whole) == sum(lengths)
        start, end = 20 / fps, 45 / fps
        decoded.clear()
        got, times = read_video(path, start, end)
        if gop == 4:
            assert min(decoded) >= 12 / fps  # began at a keyframe shortly before frame 20
        assert len(got) == 25
        np.testing.assert_array_equal(got, whole[20:45])
        np.testing.assert_array_equal(times, whole_t[20:45])
        # Timestamps rounded either way (0.9999999 vs 1.0) select the same frames.
        for eps in (-1e-7, 1e-7):
            np.testing.assert_array_equal(read_video(path, start + eps, end + eps)[1], times)
        # Open-ended ranges: from the middle to the end, and from the start to the middle.
        assert len(read_video(path, start_s=45 / fps)[0]) == 15
        assert len(read_video(path, end_s=start)[0]) == 20
        # A range past the end is empty, not an error.
        assert read_video(path, 100.0, 101.0)[0].shape == (0, 64, 64, 3)


@CODECS
def test_open_video_random_access_every_codec(tmp_path, codec):
    """The dataset reader returns the frames read_video returns."""
    frames = smooth_frames(30, 64, 64)
    path = write(tmp_path / f"{codec}.mp4", frames, 15.0, codec, gop=8)
    whole, _ = read_video(path)
    reader = open_video(path)
    assert len(reader) == 30
    indices = [17, 3, 4, 29, 0, 17, 9, 10, 11, 12]
    got = decode_frames(reader, indices, path)
    assert got.shape == (len(indices), 64, 64, 3)
    np.testing.assert_array_equal(got, whole[indices])
    # Reading on from where the last batch stopped, and going back, both work.
    for ids in ([13, 14], [2]):
        np.testing.assert_array_equal(decode_frames(reader, ids, path), whole[ids])


@CODECS
@pytest.mark.parametrize("gop", [3, None])
def test_pyav_reader_matches_whole_read(tmp_path, codec, gop):
    """PyAVReader (used for HEVC, AV1, open GOPs) returns exactly the frames of a sequential
    decode: short GOPs with B-frames (seeks land on keyframes whose decode time precedes
    earlier frames' presentation time) and the encoder's long default GOP (non-reference frames
    far before the wanted one are skipped)."""
    frames = smooth_frames(80, 64, 64)
    path = write(tmp_path / f"{codec}.mp4", frames, 30.0, codec, gop=gop)
    whole, _ = read_video(path)
    reader = PyAVReader(path)
    rng = np.random.default_rng(0)
    for _ in range(12):
        start = int(rng.integers(0, 73))
        ids = list(range(start, start + 8))
        np.testing.assert_array_equal(reader.get_batch(ids), whole[ids])
    ids = [79, 0, 60, 20, 21, 78]  # any order, far apart
    np.testing.assert_array_equal(reader.get_batch(ids), whole[ids])
    with pytest.raises(IndexError, match="out of range"):
        reader.get_batch([80])


def _encode_pyav(path, frames, fps, encoder, options, gop=8):
    """Encode with encoder options write_video does not expose (open GOPs, widths the writer
    refuses), straight through PyAV."""
    rate = int(fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.codec_context.gop_size = "yuv420p", gop
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


def test_open_video_open_gop_and_narrow_widths(tmp_path):
    """Random access returns the frames a sequential decode returns on our own files, on open
    GOPs (leading pictures reference the GOP before their keyframe; decord 0.6 returned
    neighbouring frames there) and at widths decord could not copy (72 px)."""
    frames = smooth_frames(60, 64, 64)
    ours = tmp_path / "ours.mp4"
    write_video(ours, frames, 15.0, VideoSpec(), gop=8)
    open_gop = _encode_pyav(
        tmp_path / "open_gop.mp4", frames, 15, "libx264", {"x264-params": "open-gop=1:bframes=3"}
    )
    narrow = _encode_pyav(tmp_path / "w72.mp4", smooth_frames(20, 64, 72), 15, "libx264", {})
    indices = [17, 3, 4, 29, 0, 45, 33, 9, 10, 11, 12, 59]
    for path in (ours, open_gop):
        whole, _ = read_video(path)
        np.testing.assert_array_equal(
            decode_frames(open_video(path), indices, path), whole[indices]
        )
    whole, _ = read_video(narrow)
    np.testing.assert_array_equal(
        decode_frames(open_video(narrow), [19, 2], narrow), whole[[19, 2]]
    )


def test_trimmed_video_with_edit_list(tmp_path):
    """A video cut without re-encoding (``ffmpeg -ss 0.5 -c copy``, as phone editors do) keeps
    the frames from the keyframe before the cut, hidden by an edit list: readers show only the
    frames after the cut, and the header's larger frame count is no truncation."""
    frames = smooth_frames(90, 64, 64)
    src = tmp_path / "src.mp4"
    write_video(src, frames, 30.0, VideoSpec(), gop=30)
    cut = tmp_path / "cut.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [ffmpeg, "-v", "error", "-ss", "0.5", "-i", str(src), "-c", "copy", str(cut)], check=True
    )
    assert probe_video(cut).num_frames == 90  # hidden frames included
    got, times = read_video(cut)
    assert len(got) == 75
    np.testing.assert_allclose(times, np.arange(75) / 30.0, atol=1e-6)
    assert np.abs(got.astype(np.int16) - frames[15:]).mean() < 2
    reader = open_video(cut)  # decord counted the 15 hidden frames as frames 0..14
    assert len(reader) == 75
    ids = [0, 40, 1, 74, 20]
    np.testing.assert_array_equal(decode_frames(reader, ids, cut), got[ids])


def test_av1_episode_dataset_reads(tmp_path):
    """An episode dataset whose mp4s are AV1 (decord cannot open them) reads and verifies."""
    encoder = encoder_for("av1")
    write_synthetic_dataset(tmp_path, num_episodes=2, lengths=10, image_size=32)
    originals = {}
    for mp4 in sorted(tmp_path.glob("episodes/*/exterior.mp4")):
        originals[mp4], _ = read_video(mp4)
        write_video(mp4, originals[mp4], 10.0, VideoSpec(pix_fmt="yuv420p", crf=10), encoder)
        assert probe_video(mp4).codec == "av1"
    dataset = open_dataset(tmp_path, verify_videos=True)
    clip = dataset.read_clip(1, 2, 4)
    original = originals[dataset.episode_dir(1) / "exterior.mp4"]
    assert clip.frames.shape == (4, 32, 32, 3)
    assert np.abs(clip.frames.astype(np.int16) - original[2:6]).mean() < 8


# ---------------------------------------------------------------------------------------------
# Errors


def _faststart_copy(src, dst):
    """Remux with the index (moov) in front, so a truncated copy still opens."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    args = ["-v", "error", "-i", str(src), "-c", "copy", "-movflags", "+faststart", "-y"]
    subprocess.run([ffmpeg, *args, str(dst)], check=True)
    return dst


@pytest.fixture
def h264_file(tmp_path):
    return write(tmp_path / "good.mp4", smooth_frames(30, 64, 64), 15.0, "h264")


def _broken_files(tmp_path, good):
    data = good.read_bytes()
    missing = tmp_path / "missing.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file renamed to .mp4\n")
    truncated = tmp_path / "truncated.mp4"  # index at the end: cut off with the second half
    truncated.write_bytes(data[: len(data) // 2])
    return {"missing": missing, "text": text, "truncated": truncated}


@pytest.mark.parametrize("kind", ["missing", "text", "truncated"])
@pytest.mark.parametrize("reader", ["read_video", "probe_video", "open_video"])
def test_broken_file_raises_dataset_error_naming_it(tmp_path, h264_file, kind, reader):
    path = _broken_files(tmp_path, h264_file)[kind]
    fn = {"read_video": read_video, "probe_video": probe_video, "open_video": open_video}[reader]
    with pytest.raises(DatasetError, match=r"missing video file|cannot open video") as err:
        fn(path)
    assert str(path) in str(err.value)


def test_truncated_stream_with_index_in_front(tmp_path, h264_file):
    """A file whose index survived but whose frames were cut off: the header opens, reading
    every frame raises DatasetError naming the file."""
    fast = _faststart_copy(h264_file, tmp_path / "fast.mp4")
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert probe_video(cut).num_frames == 30  # the header still claims every frame
    with pytest.raises(DatasetError, match="truncated") as err:
        read_video(cut)
    assert str(cut) in str(err.value)
    with pytest.raises(DatasetError, match="truncated") as err:
        open_video(cut)
    assert str(cut) in str(err.value)


def test_unsupported_codec_names_the_codec(tmp_path, monkeypatch):
    path = write(tmp_path / "av1.mp4", smooth_frames(6, 64, 64), 15.0, "av1")
    real = video_mod.software_decoder
    # Simulate a PyAV/FFmpeg build without an AV1 decoder.
    monkeypatch.setattr(
        video_mod, "software_decoder", lambda codec: None if codec == "av1" else real(codec)
    )
    for fn in (read_video, probe_video, open_video):
        with pytest.raises(UnsupportedCodecError) as err:
            fn(path)
        message = str(err.value)
        assert "codec 'av1' cannot be decoded" in message and str(path) in message
        available = message.split("available: ")[1].split(" (")[0].split(", ")
        assert "h264" in available and "av1" not in available
        assert err.value.codec == "av1" and isinstance(err.value, DatasetError)


def test_codec_of_stream_without_decoder_is_read_from_ffmpeg(tmp_path):
    """Where PyAV has no decoder it exposes no codec name; the message takes it from ffmpeg."""
    path = write(tmp_path / "hevc.mp4", smooth_frames(4, 64, 64), 15.0, "hevc")
    assert video_mod._codec_without_decoder(path) == "hevc"


def test_write_video_refuses_unknown_encoder_and_pixel_format(tmp_path):
    frames = smooth_frames(2, 64, 64)
    with pytest.raises(ValueError, match=r"encoder 'libnothing' is not available.*libx264"):
        write_video(tmp_path / "a.mp4", frames, 15.0, codec="libnothing")
    encoder = encoder_for("av1")
    if encoder == "libsvtav1":  # SVT-AV1 writes 4:2:0 only
        with pytest.raises(ValueError, match="cannot write pix_fmt 'yuv444p'"):
            write_video(tmp_path / "b.mp4", frames, 15.0, VideoSpec(pix_fmt="yuv444p"), encoder)
