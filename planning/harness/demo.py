"""wm-demo: goal-image planning in simulation, with progress, success, seconds per action, mp4.

With a world-model folder (``--model``, default ``models/shipped``, the CPU model this repo
ships) the MPC plans in that model's latent space with a small CEM (64 x 4) started at the
action of the model's proposal policy (``--planner pcem``, wm-eval's wm_pcem; CEM 256 x 6 when
the model has no policy), or with CEM 256 x 6 / iCEM (``--planner cem`` / ``icem``), from
the goal images alone (pick_place: the hover / at-object / grasped / carried / placed sub-goal
images on step budgets). Without one it says so and runs CEM on the *simulator oracle*
(:class:`planning.harness.oracle.SimOracleDynamics`: the physics as dynamics, the privileged
task distance as cost): an upper bound that exercises the planner, the episode loop and the
videos, not a world-model result.

When the model folder holds a learned policy (``<model>/policy``, ``wm-train-policy
install=true``), the demo ends with ``--final-goal-episodes`` pick-and-place episodes from the
final goal image alone (no sub-goal images), acted by that policy.

``--tasks`` takes our task names or the id of any registered gymnasium env meeting the env
contract (``envs/contract.py``; ``module:Name-v0`` imports ``module``); such an env needs a
world model trained on its data (the oracle plans on our simulator only).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from envs.contract import episode_steps, is_project_env, make_env, require_env, resolve_env_id
from planning.cpu_memory import keep_freed_memory
from planning.harness.agents import (
    ENERGY_VIEWS,
    GRIPPER_EXECUTION,
    SUBGOAL_BUDGETS,
    Agent,
    OracleAgent,
    PlannerAgent,
    PolicyAgent,
    model_views,
    run_episode,
)
from planning.harness.video import file_stem
from planning.mpc import MPCConfig
from planning.planners import GRIPPER_EFFORT, PCEM, make_planner
from worldmodel.models.policy import POLICY_DIR, is_policy_folder

# Budget (samples, iterations) per action on the world model, per planner (wm-eval's wm_cem and
# wm_icem), and for CEM on the simulator oracle (~2 ms a sample).
# "pcem": wm_pcem's small CEM, started at the model's proposal policy's action (the default;
# CEM 256 x 6 when the model has no policy).
WM_BUDGETS = {"pcem": (PCEM.samples, PCEM.iterations), "cem": (256, 6), "icem": (128, 10)}
ORACLE_BUDGET = (48, 3)
DEMO_PLANNERS = tuple(WM_BUDGETS)


def make_demo_agent(
    model_dir: Path, samples: int | None, iterations: int | None, planner: str = "pcem"
) -> Agent:
    """MPC with ``planner`` ("pcem", "cem" or "icem") on the world model in ``model_dir`` if it
    exists, else CEM on the simulator oracle."""
    if planner not in DEMO_PLANNERS:
        raise ValueError(f"wm-demo: planner must be one of {DEMO_PLANNERS}, got {planner!r}")
    is_model = model_dir.is_dir()
    proposal_dir = None
    if is_model and planner == "pcem":
        from planning.policy import proposal_folder

        proposal_dir = proposal_folder(model_dir / POLICY_DIR)
        if not is_policy_folder(proposal_dir):
            print(f"wm-demo: {model_dir} has no policy/ to propose actions; planning with CEM")
            planner, proposal_dir = "cem", None
    if not is_model:
        print(
            f"wm-demo: no world model at {model_dir}; planning with the "
            "simulator oracle (physics + privileged task distance) instead"
        )
    wm = None
    if is_model:
        from worldmodel.world_model import WorldModel

        wm = WorldModel.load(model_dir)
    default_s, default_i = WM_BUDGETS[planner] if is_model else ORACLE_BUDGET
    name = "icem" if is_model and planner == "icem" else "cem"
    top_k = PCEM.top_k if proposal_dir is not None else 16  # wm-eval's pcem / cem / icem
    cfg = replace(
        make_planner(name).cfg,
        samples=samples or default_s,
        iterations=iterations or default_i,
        top_k=min(top_k, samples or default_s),
        horizon=1,
        action_cost=GRIPPER_EFFORT if is_model else None,
    )
    # fitted to the model's recorded layout: its bounds and action dims (drops a 7-D effort)
    chosen = make_planner(name, cfg, dynamics=wm)
    if wm is None:
        return OracleAgent(chosen)
    mpc = MPCConfig(**GRIPPER_EXECUTION)
    proposal = None
    if proposal_dir is not None:
        from planning.policy import load_policy, policy_proposal

        proposal = policy_proposal(load_policy(wm, proposal_dir))
    return PlannerAgent(wm, chosen, mpc, SUBGOAL_BUDGETS, ENERGY_VIEWS, proposal)


def _run_task(env, agent, task: str, episodes: int, out: Path, label: str = ""):
    """``episodes`` episodes of ``task``; prints each and the summary; -> (wins, seconds)."""
    steps = episode_steps(task)
    if not steps:
        raise ValueError(f"wm-demo: register {task} with max_episode_steps (its step budget)")
    name = f"{task}{label}"
    wins, times = 0, []
    for k in tqdm(range(episodes), desc=f"wm-demo {name}"):
        video = out / f"{file_stem(name)}_{k:02d}.mp4"
        res = run_episode(env, agent, "demo", k, k, steps, video, task=task)
        wins += res.success
        times += res.seconds_per_action
        tqdm.write(
            f"  {name} #{k}: {'success' if res.success else 'failure'} in {res.steps} steps, "
            f"final distance {res.final_distance:.3f} -> {res.video}"
        )
    t = np.asarray(times) if times else np.full(1, np.nan)
    print(
        f"wm-demo {name}: success {wins}/{episodes}, seconds per action "
        f"median {np.median(t):.3f} p90 {np.percentile(t, 90):.3f}"
    )
    return wins, times


def run_final_goal(
    model: Path, episodes: int, out: Path, image_size: int = 64
) -> tuple[int, list[float]] | None:
    """Pick-and-place from the final goal image alone, acted by the model's learned policy
    (``<model>/policy``); None (and a note) when the model has none. The same instances
    0.. as the sub-goal episodes of pick_place, so the two can be compared."""
    from planning.policy import POLICY_DIR, load_policy
    from worldmodel.world_model import WorldModel

    if not (model / POLICY_DIR).is_dir():
        print(f"wm-demo: {model} has no {POLICY_DIR}/ (wm-train-policy install=true): "
              "no final-goal-only episode")  # fmt: skip
        return None
    wm = WorldModel.load(model)
    agent = PolicyAgent(wm, load_policy(wm, model / POLICY_DIR), MPCConfig(**GRIPPER_EXECUTION))
    env = make_env("pick_place", image_size=image_size, views=model_views(wm))
    try:
        return _run_task(env, agent, "pick_place", episodes, out, "_final_goal_only")
    finally:
        env.close()


def run_demo(
    model: Path, tasks: list[str], episodes: int, samples: int | None, iterations: int | None,
    out: Path, image_size: int = 64, planner: str = "pcem", final_goal_episodes: int = 0,
) -> dict[str, tuple[int, list[float]]]:  # fmt: skip
    """Run the demo; returns task -> (successes, seconds of every planned action), with
    ``pick_place_final_goal_only`` when ``final_goal_episodes`` ran (:func:`run_final_goal`)."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    keep_freed_memory()  # planning.cpu_memory: no page faults per plan on CPU
    if not model.is_dir() and not all(is_project_env(t) for t in tasks):
        raise ValueError(
            f"wm-demo: no world model at {model}, and the simulator oracle plans on our tasks "
            f"only; pass --model <folder> trained on {[t for t in tasks if not is_project_env(t)]}"
        )
    agent = make_demo_agent(model, samples, iterations, planner)
    summary = {}
    for task in tasks:
        views = model_views(getattr(getattr(agent, "mpc", None), "dynamics", None))
        env = make_env(task, image_size=image_size, views=views)
        require_env(env)  # the env contract, before the first action (EnvContractError)
        summary[task] = _run_task(env, agent, task, episodes, out)
        env.close()
    if final_goal_episodes and model.is_dir():
        done = run_final_goal(model, final_goal_episodes, out, image_size)
        if done is not None:
            summary["pick_place_final_goal_only"] = done
    return summary


def main(argv: list[str] | None = None) -> None:
    """Entry point ``wm-demo``; ``wm-demo --help`` lists the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/shipped"))
    parser.add_argument(
        "--tasks", nargs="+", default=["reach", "pick_place"],
        help="task names (reach, reach_with_object, grasp, pick_place) or gymnasium env ids",
    )  # fmt: skip
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument(
        "--planner", choices=DEMO_PLANNERS, default="pcem",
        help="world-model planner: pcem (64 x 4 from the model's proposal policy), cem (256 x 6) "
        "or icem (128 x 10), as wm-eval's wm_pcem / wm_cem / wm_icem",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=None, help="samples per iteration")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per action")
    parser.add_argument(
        "--final-goal-episodes", type=int, default=1,
        help="pick-and-place episodes from the final goal image alone, by the model's policy "
        "(<model>/policy), after the tasks; 0: none",
    )  # fmt: skip
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    for task in args.tasks:
        try:
            resolve_env_id(task)
        except ValueError as exc:
            parser.error(f"--tasks: {exc}")
    for name in ("samples", "iterations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    run_demo(
        args.model, args.tasks, args.episodes, args.samples, args.iterations, args.out,
        args.image_size, args.planner, args.final_goal_episodes,
    )  # fmt: skip


if __name__ == "__main__":
    main()
