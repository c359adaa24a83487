#!/usr/bin/env bash
# docs/own-robot.md, "Train and plan", timed: a LeRobot v3.0 dataset (built here in the published
# layout: AV1, 640x480, 30 fps, one camera `front`, 6-D joint state and action) to a model that
# plans, in the five documented commands. Resumable: rerun skips finished stages' work.
#   bash demos/recipes/own_robot_lerobot.sh [work_dir]   (default outputs/own_robot)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-outputs/own_robot}
BIN=.venv/bin
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$WORK"
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "TIME $name $((SECONDS - t0)) s" | tee -a "$WORK/times.txt"; }

if [ ! -f "$WORK/lerobot/meta/info.json" ]; then  # stand-in for the user's recordings
  $BIN/python - "$WORK/lerobot" <<'PY'
import sys
from worldmodel.data.importers import fixtures as fx
eps = fx.make_episodes(20, length=90, cameras=("observation.images.front",), size=(640, 480),
                       state_dim=6, seed=0)
fx.write_lerobot_v30(sys.argv[1], eps, fps=30, codec="libsvtav1")
PY
fi
: > "$WORK/times.txt"
timed import   $BIN/wm-import src="$WORK/lerobot" out_dir="$WORK/data" fps=10 image_size=64 image_policy=pad
timed pretrain $BIN/wm-pretrain data_root="$WORK/data" out_dir="$WORK/encoder" encoder=vit_nano_cpu \
  total_steps=100 batch_size=4
timed cache    $BIN/wm-cache data_root="$WORK/data" encoder_dir="$WORK/encoder/encoder" \
  cache_dir="$WORK/cache"
timed train    $BIN/wm-train data_root="$WORK/data" cache_dir="$WORK/cache" \
  encoder_dir="$WORK/encoder/encoder" out_dir="$WORK/run" predictor=tiny max_steps=200 \
  batch_size=8 clip_len=4 eval_every=100
timed plan     $BIN/python - "$WORK" <<'PY'
import sys
import numpy as np
from planning import MPCController, make_planner
from worldmodel import WorldModel
from worldmodel.data.episodes import open_dataset

work = sys.argv[1]
model = WorldModel.load(f"{work}/run/world_model")
data = open_dataset(f"{work}/data")
frames, steps = data.read_episode_frames(0, "front"), data.steps(0)
mpc = MPCController(model, make_planner("cem", dynamics=model))
mpc.set_goal(frames[-1], steps.state[-1])
action, info = mpc.act(frames[0], steps.state[0])
print(f"layout: {model.layout.action_kind} {model.layout.action_dim}-D at {model.layout.fps} Hz;",
      f"action {np.round(action, 3).tolist()}, energy {info.energy:.3f}, {info.seconds:.2f} s")
PY
cat "$WORK/times.txt"
