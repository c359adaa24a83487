"""#23 done-when: a LeRobot v3.0 dataset (AV1, 640x480, 30 fps, one camera `front`, 6-D joint
state and action), likewise a v2.1 dataset and DROID raw episodes, become a model you can plan
with through the documented commands (wm-import, wm-cache, wm-train as console scripts) and no
code of the user's. Tiny sizes."""

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


def _source(kind: str, root: Path):
    """(source folder, first episode's frames, states, expected dims/kind/views) per format."""
    if kind == "droid":  # 15 Hz, 3 cameras, absolute pose -> the published ee_delta (default)
        eps = fx.ee_episodes(3, length=20, cameras=("ext1", "ext2", "wrist"), size=(96, 64))
        fx.write_droid_raw(root, eps, fps=15)
        return root, eps[0].frames["ext1"], eps[0].states, (7, 7, "ee_delta")
    codec = {"v30_av1": "libsvtav1", "v30_h264": "libx264", "v21": "libx264"}[kind]
    eps = fx.make_episodes(4, length=[20, 18, 22, 20], cameras=("observation.images.front",),
                           size=(640, 480), state_dim=6, seed=5)  # fmt: skip
    write = fx.write_lerobot_v21 if kind == "v21" else fx.write_lerobot_v30
    write(root, eps, fps=30, codec=codec)
    return root, eps[0].frames["observation.images.front"], eps[0].states, (6, 6, "absolute")


@pytest.mark.parametrize(
    "kind", ["v30_av1", "v21", "droid", pytest.param("v30_h264", marks=pytest.mark.slow)]
)
def test_recordings_to_a_model_that_plans(tmp_path, kind):
    """LeRobot v3.0 (AV1 640x480 30 fps, camera `front`, 6-D joints), v2.1, DROID raw."""
    if kind == "v30_av1" and "libsvtav1" not in available_encoders():
        pytest.skip("no AV1 encoder (libsvtav1) in this PyAV build")
    src, frames, states, (s_dim, a_dim, kind_) = _source(kind, tmp_path / "recordings")
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "encoder")

    # The commands of docs/own-robot.md, run from another directory.
    view = "exterior" if kind == "droid" else "front"
    extra = ["cameras={left:exterior,wrist:wrist}", "fps=5"] if kind == "droid" else ["fps=15"]
    _run("wm-import", f"src={src}", f"out_dir={tmp_path / 'data'}", *extra, "image_size=64",
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
    assert (layout.state_dim, layout.action_dim, layout.action_kind) == (s_dim, a_dim, kind_)
    assert layout.fps == (5 if kind == "droid" else 15) and layout.image_policy == "pad"
    assert model.views == (view,)
    low, high = np.array(layout.action_low), np.array(layout.action_high)
    assert np.all(low < high)

    # Plan one action from a raw camera frame (640x480 / 96x64) and a state of the robot's size.
    planner = make_planner("cem", dynamics=model, samples=16, top_k=4, iterations=2)
    mpc = MPCController(model, planner)
    mpc.set_goal(frames[-1], states[-1])
    action, info = mpc.act(frames[0], states[0])
    assert action.shape == (a_dim,) and np.isfinite(info.energy)
    assert np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)
