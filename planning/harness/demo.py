"""wm-demo: goal-image planning in simulation, with progress, success, seconds per action, mp4.

With a world-model folder (``--model``, default ``models/shipped``) the MPC plans in that
model's latent space from the goal images alone. Without one (none ships yet), it says so and
plans with the proprioceptive state oracle :class:`planning.toy.ToyDynamics`, which is handed
the goal images *and* their privileged goal states: an upper-bound-style sanity run of the
planner, MPC loop, sub-goal schedule and robot interface, not a world-model result.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import envs
from planning.cem import CEMConfig, CEMPlanner
from planning.harness.video import write_episode_video
from planning.mpc import MPCController
from planning.robot import SimRobot
from planning.toy import ToyDynamics

# Control steps per sub-goal of pick_place (grasped, carried, placed), within its 60-step limit.
PICK_PLACE_BUDGETS = (18, 14, 28)


def load_dynamics(model_dir: Path):
    """(dynamics, uses_goal_states): the world model when the folder exists, else the oracle."""
    if model_dir.is_dir():
        from worldmodel.world_model import WorldModel

        return WorldModel.load(model_dir), False
    print(
        f"wm-demo: no world model at {model_dir} (none ships yet); planning with the state oracle"
    )
    return ToyDynamics(), True


def run_episode(task: str, task_id: int, dynamics, use_states: bool, cem: CEMConfig, out: Path):
    """One MPC episode; returns (success, steps, seconds per action list, video path)."""
    env = gym.make(envs.TASKS[task], image_size=64)
    mpc = MPCController(dynamics, CEMPlanner(cem))
    frames, goals, energies, times = [], [], [], []
    with SimRobot(env, task_id=task_id) as robot:
        info = robot.info
        images, states = info["subgoal_rgbs"], np.stack(info["subgoal_states"])
        budgets = list(PICK_PLACE_BUDGETS) if len(images) == 3 else None
        mpc.set_goal(images, states if use_states else None, budgets=budgets)
        for _ in range(envs.MAX_EPISODE_STEPS[task]):
            ob = robot.get_observation()
            t0 = time.perf_counter()
            action, step = mpc.act(ob.rgb, ob.state)
            times.append(time.perf_counter() - t0)
            frames.append(ob.rgb)
            goals.append(images[step.subgoal_index])
            energies.append(step.current_energy)
            robot.send_action(action)
            if robot.info["is_success"]:
                break
        frames.append(robot.get_observation().rgb)
        goals.append(goals[-1])
        energies.append(energies[-1])
        success = bool(robot.info["is_success"])
    env.close()
    video = write_episode_video(out / f"{task}_{task_id:02d}.mp4", frames, goals, energies)
    return success, len(times), times, video


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/shipped"))
    parser.add_argument(
        "--tasks", nargs="+", default=["reach", "pick_place"], choices=list(envs.TASKS)
    )
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    # Saturating gripper requests at the range limit are clamped every step; keep the log readable.
    robots_log = logging.getLogger("planning.robots")
    old_level = robots_log.level
    robots_log.setLevel(logging.ERROR)
    try:
        _run(args)
    finally:
        robots_log.setLevel(old_level)


def _run(args: argparse.Namespace) -> None:
    dynamics, use_states = load_dynamics(args.model)
    cem = CEMConfig(samples=args.samples, iterations=args.iterations, top_k=16, horizon=1)
    for task in args.tasks:
        wins, all_times = 0, []
        for k in tqdm(range(args.episodes), desc=f"wm-demo {task}"):
            success, steps, times, video = run_episode(task, k, dynamics, use_states, cem, args.out)
            wins += success
            all_times += times
            tqdm.write(
                f"  {task} #{k}: {'success' if success else 'failure'} in {steps} steps -> {video}"
            )
        print(
            f"wm-demo {task}: success {wins}/{args.episodes}, seconds per action "
            f"median {np.median(all_times):.3f} p90 {np.percentile(all_times, 90):.3f}"
        )
