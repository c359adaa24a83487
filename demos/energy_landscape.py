"""Draw the planning energy over a 2-D grid of xy actions around the current state (PNG).

Each grid point is the one-step action ``[dx, dy, 0, 0, 0, 0, 0]``; its energy is what the
planner would see: the world model's L1 energy to the goal image (``--model <folder>``), the
simulator oracle's privileged task distance (``--dynamics oracle``, the default without a
model) or the toy state dynamics (``--dynamics toy``). The true goal displacement is marked
(clipped to the grid edge when the goal is more than one step away), as is the grid minimum.

    python demos/energy_landscape.py --task reach --task-id 3 --out outputs/energy.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import envs
from planning.harness.oracle import SimOracleDynamics, oracle_energy
from planning.protocol import final_step_l1_energy
from planning.toy import ToyDynamics, blank_images


def grid_actions(radius_m: float, n: int) -> tuple[np.ndarray, torch.Tensor]:
    """(n,) axis values and (1, n*n, 1, 7) actions, row-major over (dy, dx)."""
    axis = np.linspace(-radius_m, radius_m, n)
    dy, dx = np.meshgrid(axis, axis, indexing="ij")  # (n, n) each
    acts = np.zeros((n * n, 7), dtype=np.float32)
    acts[:, 0], acts[:, 1] = dx.ravel(), dy.ravel()
    return axis, torch.from_numpy(acts)[None, :, None]


def landscape(kind: str, env: gym.Env, obs: dict, info: dict, actions: torch.Tensor, model):
    """(n*n,) energies of the one-step ``actions`` under the chosen dynamics."""
    state = torch.as_tensor(obs["state"], dtype=torch.float32)[None]  # (1, 7)
    with torch.no_grad():
        if kind == "model":
            z = model.encode(torch.as_tensor(obs["rgb"])[None], state)
            z_goal = model.encode(torch.as_tensor(info["subgoal_rgbs"][0])[None], state)
            energy = final_step_l1_energy(model.rollout(z, state, actions), z_goal)
        elif kind == "oracle":
            oracle = SimOracleDynamics.like(env)
            oracle.reset(env.unwrapped.task_id)
            oracle.sync(env)
            z = oracle.latent()
            energy = oracle_energy(oracle.rollout(z, state, actions), oracle.goal_latent(z))
            oracle.close()
        else:
            toy = ToyDynamics()
            goal = torch.as_tensor(info["subgoal_states"][0], dtype=torch.float32)[None]
            z, z_goal = toy.encode(blank_images(1), state), toy.encode(blank_images(1), goal)
            energy = final_step_l1_energy(toy.rollout(z, state, actions), z_goal)
    return energy[0].double().numpy()


def plot(axis: np.ndarray, energy: np.ndarray, goal_dxy: np.ndarray, title: str, out: Path):
    n, r = axis.size, float(axis[-1])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(
        energy.reshape(n, n), origin="lower", extent=(-r, r, -r, r), cmap="viridis", aspect="equal"
    )
    fig.colorbar(im, ax=ax, label="energy")
    shown = goal_dxy * min(1.0, r / max(np.abs(goal_dxy).max(), 1e-9))  # clip to the grid
    ax.plot(*shown, marker="*", color="red", ms=16, ls="", label="true goal direction")
    best = np.unravel_index(np.argmin(energy), (n, n))
    ax.plot(axis[best[1]], axis[best[0]], "wx", ms=12, mew=2, label="grid minimum")
    ax.set(xlabel="dx (m)", ylabel="dy (m)", title=title)
    ax.legend(loc="upper right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return axis[best[1]], axis[best[0]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="WorldModel folder")
    p.add_argument("--dynamics", choices=["oracle", "toy"], default="oracle", help="without model")
    p.add_argument("--task", choices=list(envs.TASKS), default="reach")
    p.add_argument("--task-id", type=int, default=0)
    p.add_argument("--grid", type=int, default=21)
    p.add_argument("--radius", type=float, default=0.05, help="half-width of the grid (m)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("outputs/energy_landscape.png"))
    args = p.parse_args(argv)
    if args.grid < 3 or args.radius <= 0:
        p.error("--grid must be >= 3 and --radius > 0")
    torch.set_num_threads(1)
    model, kind = None, args.dynamics
    if args.model is not None:
        from worldmodel.world_model import WorldModel

        model, kind = WorldModel.load(args.model), "model"
    views = ("exterior",) if model is None else model.views
    env = gym.make(envs.TASKS[args.task], image_size=args.image_size, views=views)
    obs, info = env.reset(options={"task_id": args.task_id})
    axis, actions = grid_actions(args.radius, args.grid)
    energy = landscape(kind, env, obs, info, actions, model)
    goal_dxy = np.asarray(info["subgoal_states"][0][:2]) - obs["state"][:2]
    title = f"{args.task} #{args.task_id}: {kind} energy over (dx, dy)"
    bx, by = plot(axis, energy, goal_dxy, title, args.out)
    cos = (bx * goal_dxy[0] + by * goal_dxy[1]) / (np.hypot(bx, by) * np.hypot(*goal_dxy) + 1e-12)
    print(
        f"{args.out}: minimum at dx={bx:+.3f} dy={by:+.3f}; cosine to the goal direction {cos:.2f}"
    )
    env.close()


if __name__ == "__main__":
    main()
