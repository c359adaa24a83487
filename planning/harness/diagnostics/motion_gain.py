"""How far does the predictor think the arm moved? The motion gain of a world model, per view.

For a one-step xyz action ``a`` from a start frame, the predictor's latent is compared with the
latents of *real* renders after moves ``c * a`` for ``c`` on a grid (the arm placed
kinematically along the same direction); the best-matching ``c`` is the gain of that action.
A gain of 1 is a predictor that moves the arm as far as the action says; 0 is one that predicts
no motion at all (the copy-last baseline). Below 1, a greedy one-step planner must command
about ``1 / c`` times the move the goal needs, and the predicted energy of a step falls by only
``c`` of what the real step gains, so near the goal the planner's choice drowns in prediction
noise sooner.

Start frames come from free reach seeds (``--seed-offset``, away from the evaluation task ids),
so the figure is not fitted on evaluation episodes. Reported per view of the model and for all
views together (what the planner's energy compares).

    python planning/harness/diagnostics/motion_gain.py --model models/shipped --instances 12 --moves 3
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.env_config import GoalConfig
from worldmodel.models.views import view_token_mask
from worldmodel.world_model import WorldModel


def best_gain(z_real: torch.Tensor, z_pred: torch.Tensor, gains: np.ndarray, mask) -> float:
    """The gain whose real latent (C, N, D) is nearest (mean L1 over ``mask`` tokens) to z_pred
    (N, D)."""
    e = (z_real[:, mask] - z_pred[mask]).abs().mean(dim=(1, 2))
    return float(gains[int(e.argmin())])


def view_masks(wm: WorldModel) -> dict[str, torch.Tensor]:
    """Boolean (N,) token masks: all views, then each view (views sit side by side in x)."""
    h, w = wm.predictor.cfg.input_grid
    k = wm.predictor.cfg.pool_kernel
    grid = (h // k, w // k)
    masks = {"all views": torch.ones(grid[0] * grid[1], dtype=torch.bool)}
    masks.update({name: view_token_mask(wm.views, grid, name) for name in wm.views})
    return masks


def render_moves(env: gym.Env, start: np.ndarray, move: np.ndarray, gains) -> np.ndarray:
    """(C, H, W, 3) renders with the arm placed at ``start + c * move`` for each gain c."""
    u = env.unwrapped
    saved = u.get_sim_state()
    imgs = []
    for c in gains:
        u.set_sim_state(saved)
        u.place_config(GoalConfig(ee_pos=tuple(start + c * move)))
        imgs.append(u.render_views())
    u.set_sim_state(saved)
    return np.stack(imgs)


def measure(wm: WorldModel, env: gym.Env, args) -> dict[str, list[float]]:
    """Gains per mask name over ``args.instances`` x ``args.moves`` random 2-5 cm moves in
    ``env`` (a reach env rendering the model's views)."""
    rng = np.random.default_rng(args.seed)
    gains = np.linspace(0.0, 1.6, 17)
    masks = view_masks(wm)
    found: dict[str, list[float]] = {name: [] for name in masks}
    for k in range(args.instances):
        obs, _ = env.reset(seed=args.seed_offset + k)
        state = np.asarray(obs["state"], dtype=np.float32)
        for _ in range(args.moves):
            d = rng.normal(size=3)
            d *= rng.uniform(0.02, 0.05) / np.linalg.norm(d)
            imgs = render_moves(env, state[:3].astype(np.float64), d, gains)
            action = torch.zeros(1, 1, 1, wm.action_dim)
            action[0, 0, 0, :3] = torch.as_tensor(d, dtype=torch.float32)
            with torch.no_grad():
                z = wm.encode(imgs, np.repeat(state[None], len(gains), axis=0))
                z_pred = wm.rollout(z[:1], torch.as_tensor(state)[None], action)[0, 0, 0]
            for name, mask in masks.items():
                found[name].append(best_gain(z, z_pred, gains, mask))
    return found


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="world model folder")
    ap.add_argument("--instances", type=int, default=12, help="start frames (free reach seeds)")
    ap.add_argument("--moves", type=int, default=3, help="random moves per start frame")
    ap.add_argument("--seed-offset", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args(argv)
    if args.instances < 1 or args.moves < 1:
        ap.error("--instances and --moves must be >= 1")
    torch.set_num_threads(1)
    wm = WorldModel.load(args.model)
    env = gym.make(envs.TASKS["reach"], image_size=args.image_size, views=wm.views)
    found = measure(wm, env, args)
    n = args.instances * args.moves
    for name, gains in found.items():
        g = np.asarray(gains)
        print(
            f"{name:>10}: gain mean {g.mean():.2f}, median {np.median(g):.2f}, "
            f"under 0.5 in {int((g < 0.5).sum())}/{n} moves"
        )


if __name__ == "__main__":
    main()
