"""kill -9 in the middle of a parallel wm-collect run, then rerun: the dataset completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from envs.collection.collect import CollectConfig, collect, episode_plan
from envs.fake_env import FULL_ENV_ID
from worldmodel.data import open_dataset

SCRIPT = """
import sys
from envs.collection.collect import CollectConfig, collect
cfg = CollectConfig(env=sys.argv[1], expert_factory="envs.fake_env:make_expert",
                    image_size=32, out_dir=sys.argv[2], episodes=int(sys.argv[3]), workers=2,
                    progress=False, env_kwargs={"step_delay_s": 0.03})
collect(cfg)
"""


@pytest.mark.slow
def test_kill_9_then_rerun_completes(tmp_path):
    episodes = 24
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, FULL_ENV_ID, str(tmp_path), str(episodes)]
    )
    ep_dir = tmp_path / "episodes"
    deadline = time.time() + 60
    while time.time() < deadline:
        done = list(ep_dir.glob("ep_??????")) if ep_dir.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "collection finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # orphaned workers notice the dead parent and stop
    before = {p.name for p in ep_dir.glob("ep_??????")}
    assert 3 <= len(before) < episodes
    cfg = CollectConfig(
        env=FULL_ENV_ID,
        expert_factory="envs.fake_env:make_expert",
        image_size=32,
        out_dir=str(tmp_path),
        episodes=episodes,
        progress=False,
        env_kwargs={"step_delay_s": 0.03},
    )
    result = collect(cfg)
    assert result.skipped + len(result.written) == episodes
    assert not list(ep_dir.glob("*.tmp"))
    ds = open_dataset(tmp_path, verify_videos=True)
    assert len(ds) == episodes
    for i in range(episodes):
        assert int(ds.steps(i).extra["seed"]) == episode_plan(cfg, i)[0]
        assert np.all(np.isfinite(ds.steps(i).state))
