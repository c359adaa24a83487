"""wm-demo's entry function on a tiny budget: the oracle fallback places the object."""

from pathlib import Path

import imageio.v2 as imageio

from planning.harness.demo import run_demo


def test_run_demo_pick_place_with_oracle_fallback(tmp_path, capsys):
    summary = run_demo(tmp_path / "no_model", ["pick_place"], 1, 24, 2, tmp_path, image_size=32)
    out = capsys.readouterr().out
    assert "no world model" in out and "simulator oracle" in out
    wins, times = summary["pick_place"]
    assert wins == 1 and 1 <= len(times) <= 60 and all(t > 0 for t in times)
    assert "wm-demo pick_place: success 1/1, seconds per action median" in out
    frames = imageio.mimread(Path(tmp_path / "pick_place_00.mp4"))
    assert len(frames) == len(times) + 1 and frames[0].shape[1] == 3 * frames[0].shape[0]
