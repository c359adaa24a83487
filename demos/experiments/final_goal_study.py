"""Pick-and-place from the final goal image alone (#25): the flat planner vs sub-goal latents
proposed from the training trajectories (planning.subgoals), same model, same planner, same
development instances (seeds the evaluation table never uses).

    # the shipped model's training data and its features (the quick recipe's collect + cache):
    wm-collect env=pick_place episodes=600 image_size=64 workers=2 out_dir=runs/shipped/data \\
        expert_frac=0.3 noisy_frac=0.3 explore_frac=0.4 wrist_camera=true
    wm-cache data_root=runs/shipped/data encoder_dir=models/shipped/encoder \\
        cache_dir=runs/shipped/features views=exterior+wrist
    MUJOCO_GL=egl python demos/experiments/final_goal_study.py --episodes 10

Prints successes and mean final distance per method and writes them to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import envs
from planning.cpu_memory import keep_freed_memory
from planning.harness.agents import (
    GRIPPER_EXECUTION,
    SUBGOAL_BUDGETS,
    PlannerAgent,
    RetrievalAgent,
    run_episode,
)
from planning.mpc import MPCConfig
from planning.planners import GRIPPER_EFFORT, make_planner
from planning.subgoals import TrajectoryLibrary
from worldmodel.world_model import WorldModel

DEV_SEED = 10_000  # development instances: the evaluation table uses task ids 0..49


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shipped")
    ap.add_argument("--cache", default="runs/shipped/features")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--methods", default="flat,retrieval")
    ap.add_argument("--out", default="outputs/final_goal_study.json")
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(2)
    model = WorldModel.load(args.model)
    env = gym.make(envs.TASKS["pick_place"], views=model.views, image_size=64)
    mpc = MPCConfig(**GRIPPER_EXECUTION)
    budgets = SUBGOAL_BUDGETS["pick_place"]  # the same budgets the sub-goal images get

    def planner():
        return make_planner("cem", dynamics=model, action_cost=GRIPPER_EFFORT)

    agents = {}
    for method in args.methods.split(","):
        if method == "flat":  # the final goal image alone: no sub-goal budgets fit it
            agents[method] = PlannerAgent(model, planner(), mpc, subgoal_budgets={})
        elif method == "retrieval":
            library = TrajectoryLibrary.from_cache(model, args.cache)
            agents[method] = RetrievalAgent(model, planner(), library, budgets, mpc)
        else:
            raise SystemExit(f"unknown method {method!r}: flat | retrieval")
    results: dict[str, list] = {m: [] for m in agents}
    for k in range(args.episodes):
        for method, agent in agents.items():
            r = run_episode(env, agent, method, k, DEV_SEED + k, args.max_steps, None, True,
                            "pick_place")  # fmt: skip
            extra = {}
            if method == "retrieval":
                p = agent.proposal
                extra = {
                    "episode": p.episode,
                    "frames": list(p.frames),
                    "goal_distance": p.goal_distance,
                }
            results[method].append({"k": k, "success": bool(r.success), "steps": r.steps,
                                    "final_distance": r.final_distance, **extra})  # fmt: skip
            print(f"{method:9s} #{k}: {'success' if r.success else 'failure'} in {r.steps} steps, "
                  f"final distance {r.final_distance:.3f}", flush=True)  # fmt: skip
    print("| method | success | mean final distance (m) |\n|---|---|---|")
    for method, rows in results.items():
        wins = sum(r["success"] for r in rows)
        dist = float(np.mean([r["final_distance"] for r in rows]))
        print(f"| {method} | {wins}/{len(rows)} | {dist:.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
