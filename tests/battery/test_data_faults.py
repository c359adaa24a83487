"""Battery: bad episode datasets on disk (meta.json, steps.npz, videos, mp4 folders) and wm-eval's
episode log. Each case: the specific DatasetError naming the file (and field), no file changed,
and a good dataset still loads and decodes afterwards in the same process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from planning.harness.results import EpisodeLog, EpisodeResult
from worldmodel.data import open_dataset
from worldmodel.data.clips import ClipDataset, Mp4FolderClips
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import DatasetError

EP0 = Path("episodes") / "ep_000000"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid 32 px dataset (2 episodes of 6 frames) and a valid 64 px one (1 episode)."""
    root = tmp_path_factory.mktemp("good")
    write_synthetic_dataset(root / "px32", num_episodes=2, lengths=6, image_size=32)
    write_synthetic_dataset(root / "px64", num_episodes=1, lengths=6, image_size=64)
    return root


def _still_loads(good: Path) -> None:
    """The process keeps working: a good dataset opens, verifies and yields clips."""
    ds = open_dataset(good / "px32", verify_videos=True)
    assert ds.read_clip(1, 0, 3).frames.shape == (3, 32, 32, 3)
    assert len(ClipDataset(good / "px32", num_frames=4)) == 6


def _edit_meta(**changes):
    def damage(root: Path) -> None:
        raw = json.loads((root / "meta.json").read_text())
        raw.update(changes)
        (root / "meta.json").write_text(json.dumps(raw))

    return damage


def _edit_camera(**changes):
    def damage(root: Path) -> None:
        raw = json.loads((root / "meta.json").read_text())
        raw["cameras"][0].update(changes)
        (root / "meta.json").write_text(json.dumps(raw))

    return damage


def _drop_meta_key(key):
    def damage(root: Path) -> None:
        raw = json.loads((root / "meta.json").read_text())
        del raw[key]
        (root / "meta.json").write_text(json.dumps(raw))

    return damage


def _write(rel, data: bytes):
    def damage(root: Path) -> None:
        (root / rel).write_bytes(data)

    return damage


def _steps_with_object_array(root: Path) -> None:
    path = root / EP0 / "steps.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["state"] = np.array([{"x": 1}] * 6, dtype=object)  # loads only with pickle
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _episode_is_a_file(root: Path) -> None:
    shutil.rmtree(root / "episodes" / "ep_000001")
    (root / "episodes" / "ep_000001").write_text("not a folder")


def _meta_is_a_folder(root: Path) -> None:
    (root / "meta.json").unlink()
    (root / "meta.json").mkdir()


def _video_from_64px(root: Path) -> None:
    """The 32 px dataset's first video replaced by a 64 px one of the same length."""
    shutil.copy(root.parent / "px64" / EP0 / "exterior.mp4", root / EP0 / "exterior.mp4")


def _open(root: Path):
    return open_dataset(root)


def _verify(root: Path):
    return open_dataset(root, verify_videos=True)


def _read_clip(root: Path):
    return open_dataset(root).read_clip(0, 0, 2)


# (damage, call, file the message names, pattern naming the field / what was expected)
CASES = {
    "meta_not_json": (_write("meta.json", b"{not json"), _open, "meta.json", "not valid JSON"),
    "meta_not_utf8": (
        _write("meta.json", b"\xff\xfe\x00garbage"), _open, "meta.json", "not valid JSON"
    ),
    "meta_is_a_list": (
        _write("meta.json", b"[1, 2]"), _open, "meta.json", "expected a JSON object, got list"
    ),
    "meta_is_a_folder": (
        _meta_is_a_folder, _open, "meta.json", "missing dataset metadata file"
    ),
    "meta_missing_fps": (_drop_meta_key("fps"), _open, "meta.json", "missing required key 'fps'"),
    "meta_fps_text": (
        _edit_meta(fps="fast"), _open, "meta.json", r"field 'fps' is 'fast' \(str\), expected"
    ),
    "meta_fps_nan": (
        _edit_meta(fps=float("nan")), _open, "meta.json", "field 'fps' is nan.*expected a finite"
    ),
    "meta_image_size_fraction": (
        _edit_meta(image_size=32.5), _open, "meta.json", "field 'image_size' is 32.5"
    ),
    "meta_cameras_not_a_list": (
        _edit_meta(cameras={"exterior": 1}), _open, "meta.json", "field 'cameras' is"
    ),
    "meta_camera_width_text": (
        _edit_camera(width="wide"), _open, "meta.json", r"field 'cameras\[0\]\.width' is 'wide'"
    ),
    "meta_camera_without_height": (
        _edit_camera(height=None), _open, "meta.json", r"field 'cameras\[0\]\.height' is None"
    ),
    "meta_camera_fovy_out_of_range": (
        _edit_camera(fovy_deg=200.0), _open, "meta.json", r"cameras\[0\].*fovy_deg must be in"
    ),
    "meta_video_not_an_object": (
        _edit_meta(video="h264"), _open, "meta.json", "field 'video' is 'h264'"
    ),
    "meta_format_version_bool": (
        _edit_meta(format_version=True), _open, "meta.json", "unknown format_version True"
    ),
    "steps_garbage": (
        _write(EP0 / "steps.npz", b"garbage" * 20), _open, EP0 / "steps.npz", "unreadable npz"
    ),
    "steps_pickled_objects": (
        _steps_with_object_array, _open, EP0 / "steps.npz", "unreadable npz"
    ),
    "episode_is_a_file": (
        _episode_is_a_file, _open, "episodes/ep_000001/steps.npz", "missing per-step table"
    ),
    "video_not_a_video": (
        _write(EP0 / "exterior.mp4", b"not a video" * 40),
        _read_clip,
        EP0 / "exterior.mp4",
        "cannot open video",
    ),
    "video_empty": (_write(EP0 / "exterior.mp4", b""), _verify, EP0 / "exterior.mp4", "cannot"),
    "video_64px_in_32px_dataset_read": (
        _video_from_64px,
        _read_clip,
        EP0 / "exterior.mp4",
        r"frames are 64x64 px but .*meta\.json gives camera 'exterior' width x height 32x32",
    ),
    "video_64px_in_32px_dataset_verify": (
        _video_from_64px, _verify, EP0 / "exterior.mp4", "frames are 64x64 px"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset(good, tmp_path, snapshot, case):
    damage, call, rel, pattern = CASES[case]
    root = shutil.copytree(good / "px32", tmp_path / "px32")
    shutil.copytree(good / "px64", tmp_path / "px64")  # source of the wrong-size video
    damage(root)
    snap = snapshot(tmp_path)
    with pytest.raises(DatasetError, match=pattern) as info:
        call(root)
    assert str(root / rel) in str(info.value)
    snap.assert_unchanged()
    _still_loads(good)


@pytest.mark.parametrize("damage", ["garbage", "empty"])
def test_bad_video_in_mp4_folder(good, tmp_path, snapshot, damage):
    """wm-pretrain on a folder of mp4s: a file that is not a video is named, not a decord error."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(good / "px32" / EP0 / "exterior.mp4", folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"not a video" * 40 if damage == "garbage" else b"")
    snap = snapshot(folder)
    with pytest.raises(DatasetError, match="cannot open video") as info:
        Mp4FolderClips(folder, num_frames=2)
    assert str(folder / "b.mp4") in str(info.value)
    snap.assert_unchanged()
    (folder / "b.mp4").unlink()
    assert Mp4FolderClips(folder, num_frames=2)[0].shape == (2, 32, 32, 3)
    _still_loads(good)


# --- wm-eval's episode log (episodes.jsonl) ------------------------------------------------------


def _result(episode: int) -> EpisodeResult:
    return EpisodeResult(task="reach", method="random", episode=episode, seed=episode,
                         success=False, steps=3, final_distance=0.1,
                         seconds_per_action=[0.01] * 3)  # fmt: skip


def _record(episode: int, fp: str = "fp") -> str:
    from dataclasses import asdict

    return json.dumps({"fingerprint": fp, "result": asdict(_result(episode))})


def test_append_after_torn_last_line_starts_a_new_line(tmp_path, capsys):
    """A killed run leaves a torn last line; the next append must not join it."""
    path = tmp_path / "episodes.jsonl"
    path.write_text(_record(0) + "\n" + _record(1)[:40])  # killed while writing episode 1
    log = EpisodeLog(path)
    assert "skipping unreadable line 2" in capsys.readouterr().out
    assert log.get("reach", "random", 0, "fp") is not None
    log.append(_result(1), "fp")
    log.append(_result(2), "fp")
    lines = path.read_text().split("\n")
    assert lines[0] == _record(0) and lines[1] == _record(1)[:40] and lines[-1] == ""
    for line in lines[2:-1]:  # every line written after the tear is a complete record
        json.loads(line)
    again = EpisodeLog(path)
    assert "skipping unreadable line 2" in capsys.readouterr().out  # the torn line is still warned
    assert [again.get("reach", "random", e, "fp") is not None for e in range(3)] == [True] * 3


BAD_LINES = {
    "torn_json": '{"fingerprint": "fp", "result": {"task"',
    "not_utf8": b"\xff\xfe\x00\x81 garbage",
    "json_list": "[1, 2, 3]",
    "no_fingerprint": json.dumps({"result": json.loads(_record(5))["result"]}),
    "fingerprint_is_a_list": json.dumps({"fingerprint": [1], "result": {}}),
    "unknown_result_field": _record(6).replace('"task"', '"tusk"'),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_episode_log_skips_garbage_lines_with_a_warning(tmp_path, snapshot, capsys, case):
    """Garbage lines in episodes.jsonl are skipped with a warning naming the file and line (the
    episode reruns); reading changes nothing and the good records around them are kept."""
    bad = BAD_LINES[case]
    bad = bad if isinstance(bad, bytes) else bad.encode()
    path = tmp_path / "episodes.jsonl"
    path.write_bytes(_record(0).encode() + b"\n" + bad + b"\n" + _record(1).encode() + b"\n")
    snap = snapshot(tmp_path)
    log = EpisodeLog(path)
    assert f"skipping unreadable line 2 of {path}" in capsys.readouterr().out
    snap.assert_unchanged()
    assert log.get("reach", "random", 0, "fp") and log.get("reach", "random", 1, "fp")
    log.append(_result(2), "fp")
    assert EpisodeLog(path).get("reach", "random", 2, "fp") is not None
