"""Measure offscreen render throughput of the wm/* scene (exterior camera only).

Usage: ``MUJOCO_GL=egl python demos/bench/bench_render.py [--sizes 64 128 256] [--frames 300]
[--high-fidelity]``. Prints frames/s per image size for ``render_rgb`` (scene update + render +
copy to numpy) and the physics+IK+render rate of full ``env.step`` calls. Target: >= 150 fps at
64 px with the default (no shadows) scene.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np

import envs


def bench(size: int, frames: int, high_fidelity: bool) -> tuple[float, float]:
    """(render frames/s, env steps/s) at ``size`` px."""
    env = gym.make(envs.TASKS["pick_place"], image_size=size, high_fidelity=high_fidelity)
    env.reset(seed=0)
    u = env.unwrapped
    u.render_rgb()  # warm up the GL context
    t0 = time.perf_counter()
    for _ in range(frames):
        u.render_rgb()
    render_fps = frames / (time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    n_steps = max(10, frames // 10)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        env.step(rng.uniform(env.action_space.low, env.action_space.high) * 0.3)
    step_rate = n_steps / (time.perf_counter() - t0)
    env.close()
    return render_fps, step_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--high-fidelity", action="store_true")
    args = parser.parse_args()
    print(f"MUJOCO_GL={os.environ['MUJOCO_GL']} high_fidelity={args.high_fidelity}")
    for size in args.sizes:
        fps, steps = bench(size, args.frames, args.high_fidelity)
        print(f"{size:4d} px: render {fps:8.1f} frames/s   env.step {steps:6.1f} steps/s")


if __name__ == "__main__":
    main()
