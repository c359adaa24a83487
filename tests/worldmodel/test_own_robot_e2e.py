"""#23 done-when: a LeRobot v3.0 dataset (AV1, 640x480, 30 fps, one camera `front`, 6-D joint
state and action) becomes a model you can plan with, through the documented commands
(wm-import, wm-cache, wm-train as console scripts) and no code of the user's. Tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from planning.mpc import MPCController
from planning.planners import make_planner
from worldmodel.data.importers import fixtures as fx
from worldmodel.data.video import available_encoders
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.world_model import WorldModel

BIN = Path(sys.executable).parent


def _run(script: str, *args: str, cwd: Path) -> None:
    exe = BIN / script
    if not exe.is_file():
        pytest.skip(f"{script} console script not installed (pip install -e '.[import]')")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    out = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


@pytest.mark.parametrize("codec", ["libsvtav1", pytest.param("libx264", marks=pytest.mark.slow)])
def test_lerobot_v30_joint_robot_to_a_model_that_plans(tmp_path, codec):
    if codec not in available_encoders() and codec != "libx264":
        pytest.skip(f"no {codec} encoder in this PyAV build")
    eps = fx.make_episodes(4, length=[20, 18, 22, 20], cameras=("observation.images.front",),
                           size=(640, 480), state_dim=6, seed=5)  # fmt: skip
    src = fx.write_lerobot_v30(tmp_path / "lerobot", eps, fps=30, codec=codec)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "encoder")

    # The commands of docs/own-robot.md, run from another directory.
    _run("wm-import", f"src={src}", f"out_dir={tmp_path / 'data'}", "fps=15", "image_size=64",
         "image_policy=pad", "progress=false", cwd=tmp_path)  # fmt: skip
    _run("wm-cache", f"data_root={tmp_path / 'data'}", f"encoder_dir={tmp_path / 'encoder'}",
         f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path)  # fmt: skip
    _run("wm-train", f"data_root={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}",
         f"encoder_dir={tmp_path / 'encoder'}", f"out_dir={tmp_path / 'run'}",
         "predictor=tiny", "max_steps=3", "batch_size=4", "clip_len=4", "eval_every=3",
         "eval_batches=1", "ckpt_every=3", "warmup_steps=1", "decay_steps=1", "val_fraction=0.25",
         "progress=false", cwd=tmp_path)  # fmt: skip

    model = WorldModel.load(tmp_path / "run" / "world_model")
    layout = model.layout
    assert (layout.state_dim, layout.action_dim, layout.action_kind) == (6, 6, "absolute")
    assert layout.fps == 15 and layout.image_policy == "pad" and model.views == ("front",)
    low, high = np.array(layout.action_low), np.array(layout.action_high)
    assert np.all(low < high)

    # Plan one action from a raw 640x480 camera frame and a 6-D joint state.
    planner = make_planner("cem", dynamics=model, samples=16, top_k=4, iterations=2)
    mpc = MPCController(model, planner)
    goal = eps[0].frames["observation.images.front"][-1]  # (480, 640, 3)
    mpc.set_goal(goal, eps[0].states[-1])
    action, info = mpc.act(eps[0].frames["observation.images.front"][0], eps[0].states[0])
    assert action.shape == (6,) and np.isfinite(info.energy)
    assert np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)
