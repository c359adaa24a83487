"""fit_frames: the crop / pad / resize policy for frames of any size and aspect (#23)."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodel.data.images import fit_frames


def _frames(h: int, w: int) -> np.ndarray:
    out = np.zeros((2, h, w, 3), np.uint8)
    out[:, :, : w // 2] = 255  # left half white: where it lands tells what the policy did
    return out


def test_crop_keeps_the_centre_square():
    out = fit_frames(_frames(48, 96), 48, "crop")  # centre 48 columns: 24 white, 24 black
    assert out.shape == (2, 48, 48, 3)
    assert out[0, 10, 5, 0] == 255 and out[0, 10, 42, 0] == 0


def test_pad_keeps_the_whole_view_with_black_bars():
    out = fit_frames(_frames(48, 96), 96, "pad")
    assert out.shape == (2, 96, 96, 3)
    assert out[0, 5, 5].max() == 0 and out[0, 90, 5].max() == 0  # bars above and below
    assert out[0, 48, 5, 0] == 255 and out[0, 48, 90, 0] == 0


def test_resize_squashes_and_single_frames_work():
    out = fit_frames(_frames(480, 640)[0], 64, "resize")
    assert out.shape == (64, 64, 3)
    assert out[32, 5, 0] == 255 and out[32, 60, 0] == 0


def test_square_frames_of_the_right_size_are_returned_as_they_are():
    frames = _frames(32, 32)
    assert fit_frames(frames, 32, "pad") is frames


@pytest.mark.parametrize(
    "frames,policy,match",
    [
        (np.zeros((4, 4, 3), np.float32), "crop", "uint8"),
        (np.zeros((4, 4, 3), np.uint8), "stretch", "image_policy must be one of"),
    ],
)
def test_bad_input(frames, policy, match):
    with pytest.raises(ValueError, match=match):
        fit_frames(frames, 8, policy)
