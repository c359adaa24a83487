"""wm-demo runs end to end on a tiny budget and writes its videos."""

from pathlib import Path

import imageio.v2 as imageio

from planning.harness.demo import main


def test_demo_runs_reach_with_state_oracle_and_writes_video(tmp_path, capsys):
    main(["--model", str(tmp_path / "none"), "--tasks", "reach", "--episodes", "1",
          "--samples", "64", "--iterations", "3", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert "no world model" in out and "wm-demo reach: success 1/1" in out
    video = Path(tmp_path / "reach_00.mp4")
    frames = imageio.mimread(video)
    assert len(frames) >= 2 and frames[0].shape[1] == 3 * frames[0].shape[0]
