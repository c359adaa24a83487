"""Does the goal-image energy of *real* images rank arm positions by their distance to the goal?

No predictor and no planner: for each evaluation instance the arm is placed kinematically (IK
from the instance's start pose) at points near the goal (< 3 cm, where reach succeeds) and far
from it (> 5 cm), each scene is rendered, and its energy to the goal image is computed with the
representation under test. If far points score lower than near ones, the energy is not lowest
at the goal, and even a perfect predictor could lead the planner away (a planner taking one
step at a time can still get through when the energy falls along its path).

Representations: ``--model`` (a world model's pooled, layer-normed latents, exactly what the
planner compares), ``--encoder`` (a FrozenEncoder folder: full token grid, layer-normed),
``--random-like`` (a randomly initialised encoder of that folder's architecture), ``--pixels``
(mean absolute RGB difference).

    python planning/harness/diagnostics/energy_vs_distance.py --model models/shipped --task reach --tasks 50
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.env_config import GoalConfig
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import VisionTransformer
from worldmodel.models.latents import layer_norm
from worldmodel.world_model import WorldModel


def make_energy(args, wm: WorldModel | None = None):
    """``energy(images (B,H,W,3) uint8, goal (H,W,3) uint8) -> (B,)`` for the chosen representation
    (``wm``: the loaded ``--model``)."""
    if args.pixels:

        def pixels(imgs, goal):
            return np.abs(imgs.astype(np.float32) - goal.astype(np.float32)).mean((1, 2, 3)) / 255

        return pixels
    if wm is not None:

        def encode(imgs):
            return wm.encode(imgs, np.zeros((len(imgs), 7), np.float32))

    else:
        enc = FrozenEncoder.load(args.encoder or args.random_like)
        if args.random_like:
            torch.manual_seed(args.seed)
            enc = FrozenEncoder(VisionTransformer(enc.encoder.cfg), enc.preprocess_cfg)

        def encode(imgs):
            return layer_norm(torch.as_tensor(enc.encode_frames(imgs)).float())

    def latent(imgs, goal):
        with torch.no_grad():
            return (encode(imgs) - encode(goal[None])).abs().mean(dim=(1, 2)).numpy()

    return latent


def sample_points(rng, goal: np.ndarray, n_near: int, n_far: int) -> tuple[np.ndarray, int]:
    """(n_near + n_far, 3) EE positions: within 3 cm of ``goal``, then 5-15 cm away (z >= 3 cm)."""
    near = goal + rng.uniform(-1, 1, (20 * n_near, 3)) * 0.03
    near = near[np.linalg.norm(near - goal, axis=1) < 0.03][:n_near]
    far = goal + rng.uniform(-1, 1, (20 * n_far, 3)) * np.array([0.15, 0.15, 0.10])
    far = far[np.linalg.norm(far - goal, axis=1) > 0.05][:n_far]
    far[:, 2] = np.maximum(far[:, 2], 0.03)
    return np.concatenate([near, far]), len(near)


def render_at(env: gym.Env, points: np.ndarray) -> np.ndarray:
    """(P, H, W, 3) renders with the arm placed at each point, from the same start state."""
    u = env.unwrapped
    saved = u.get_sim_state()
    imgs = []
    for p in points:
        u.set_sim_state(saved)
        u.place_config(GoalConfig(ee_pos=tuple(p)))
        imgs.append(u.render_views())
    u.set_sim_state(saved)
    return np.stack(imgs)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="world model folder (pooled latents, as the planner sees)")
    src.add_argument("--encoder", help="FrozenEncoder folder (full token grid)")
    src.add_argument("--random-like", help="random init of this FrozenEncoder's architecture")
    src.add_argument("--pixels", action="store_true", help="mean absolute RGB difference")
    ap.add_argument("--task", default="reach", choices=["reach", "reach_with_object"])
    ap.add_argument("--tasks", type=int, default=50, help="evaluation instances 0..N-1")
    ap.add_argument("--near", type=int, default=15)
    ap.add_argument("--far", type=int, default=45)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="summary line only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    wm = WorldModel.load(args.model) if args.model else None
    energy = make_energy(args, wm)
    views = wm.views if wm is not None else ("exterior",)
    env = gym.make(envs.TASKS[args.task], image_size=args.image_size, views=views)
    rng = np.random.default_rng(args.seed)
    rho, below_mean, below_max = [], 0, 0
    for k in range(args.tasks):
        _, info = env.reset(seed=k, options={"task_id": k})
        goal = np.asarray(info["goal_state"][:3], dtype=np.float64)
        points, n_near = sample_points(rng, goal, args.near, args.far)
        e = energy(render_at(env, points), np.asarray(info["goal_rgb"]))
        d = np.linalg.norm(points - goal, axis=1)
        near, far = e[:n_near], e[n_near:]
        rho.append(spearman(d, e))
        below_mean += int(far.min() < near.mean())
        below_max += int(far.min() < near.max())
        if not args.quiet:
            print(
                f"instance {k:3d}: near (<3 cm) mean {near.mean():.4f} max {near.max():.4f}; "
                f"far (>5 cm) min {far.min():.4f} at {d[n_near + far.argmin()]:.3f} m; "
                f"Spearman(distance, energy) {rho[-1]:.2f}"
            )
    n = args.tasks
    print(
        f"{args.task}, {n} instances: Spearman(distance, energy) mean {np.mean(rho):.3f}; a far "
        f"point scores below the near points' mean in {below_mean}/{n}, below their max in "
        f"{below_max}/{n}"
    )


if __name__ == "__main__":
    main()
