"""The numpy + mp4 example of docs/own-robot.md runs as printed (on inputs made here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldmodel.data.episodes import open_dataset
from worldmodel.data.importers.fixtures import make_frames
from worldmodel.data.video import write_video

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-robot.md"


def test_own_robot_numpy_example_writes_a_dataset(tmp_path, monkeypatch):
    text = DOC.read_text()
    start = text.index("```python", text.index("### Your own numpy + mp4 recordings"))
    code = text[start + len("```python") : text.index("```", start + 9)]
    assert len(code.strip().splitlines()) <= 20
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in ("ep0", "ep1"):  # the user's recordings: 160x120 video, 6-D joints
        np.save(f"{name}_state.npy", rng.random((12, 6), dtype=np.float32))
        np.save(f"{name}_action.npy", rng.random((12, 6), dtype=np.float32))
        write_video(f"{name}.mp4", make_frames(12, 160, 120), fps=10)
    exec(compile(code, str(DOC), "exec"), {})
    data = open_dataset(tmp_path / "data" / "my_arm")
    assert len(data) == 2 and data.meta.state_dim == 6 and data.meta.action_kind == "absolute"
    assert data.read_episode_frames(1, "front").shape == (12, 64, 64, 3)
