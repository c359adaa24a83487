"""Success vs seconds per action: reference CEM vs our CEM vs iCEM, same dynamics, same run.

Default: the toy state dynamics (no model needed) on one-step-action reach problems whose true
dynamics is the toy's own state integration; success = end effector within 3 cm of the goal.
With ``--model <folder>`` the world model plans goal-image reach episodes in simulation
(``envs`` reach, fixed task ids) through the evaluation harness' agents.

    python demos/bench/bench_planning.py --problems 10
    python demos/bench/bench_planning.py --model models/shipped --problems 5
    python demos/bench/bench_planning.py --model models/shipped --problems 10 \
        --budgets 16x3 32x4 64x5 128x6 256x6 --plot outputs/budget_curve.png

``--budgets SxI ...`` runs CEM and iCEM at each budget (S samples x I iterations): success
versus seconds per action on the same problems, the budget curve; ``--plot`` draws it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from planning.cpu_memory import keep_freed_memory
from planning.planners.cem import CEMConfig, CEMPlanner, shift_plan
from planning.planners.icem import ICEMConfig, ICEMPlanner
from planning.planners.reference import reference_cem, reference_cem_config
from planning.toy import ToyDynamics, blank_images

SUCCESS_M = 0.03


def toy_problems(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(start (7,), goal (7,)) pairs, goals 8-20 cm away in xyz, gripper open."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start = np.r_[rng.uniform([0.38, -0.15, 0.2], [0.58, 0.15, 0.32]), np.zeros(4)]
        d = rng.normal(size=3)
        goal = start.copy()
        goal[:3] += d / np.linalg.norm(d) * rng.uniform(0.08, 0.2)
        out.append((start.astype(np.float32), goal.astype(np.float32)))
    return out


def toy_episode(method: str, toy: ToyDynamics, start, goal, max_steps: int):
    """MPC on the toy; returns (success, seconds per action)."""
    state = torch.as_tensor(start)[None]
    goal_t = torch.as_tensor(goal)[None]
    z_goal = toy.encode(blank_images(1), goal_t)
    gen = torch.Generator().manual_seed(0)
    planner = {"cem": CEMPlanner(), "icem": ICEMPlanner()}.get(method)
    mean, times = None, []
    for _ in range(max_steps):
        if float((state[0, :3] - goal_t[0, :3]).norm()) < SUCCESS_M:
            return True, times
        if planner is None:  # the literal published loop: re-encodes every iteration
            res = reference_cem(
                toy, blank_images(1), state, blank_images(1), goal_t, reference_cem_config(),
                generator=gen,
            )  # fmt: skip
        else:
            z = toy.encode(blank_images(1), state)
            res = planner.plan(toy, z, state, z_goal, init_mean=mean, generator=gen)
            mean = shift_plan(res.mean, 1)
        times.append(res.seconds)
        state = toy.propagate(state, res.actions[:, None, :1])[:, 0, 0]  # the "true" step
    return float((state[0, :3] - goal_t[0, :3]).norm()) < SUCCESS_M, times


def make_planner(method: str, budget: tuple[int, int] | None):
    """CEM or iCEM, at their default budget or (samples, iterations)."""
    cls, cfg_cls = (CEMPlanner, CEMConfig) if method == "cem" else (ICEMPlanner, ICEMConfig)
    if budget is None:
        return cls()
    samples, iters = budget
    extra = {"min_samples": min(48, samples)} if method == "icem" else {}
    top_k = max(4, min(16, samples // 8))
    return cls(cfg_cls(samples=samples, iterations=iters, top_k=top_k, **extra))


def model_episodes(
    method: str, model_dir: Path, n: int, max_steps: int, budget: tuple[int, int] | None = None
):
    """Goal-image reach episodes with the world model; returns [(success, times)]."""
    import gymnasium as gym

    import envs
    from planning.harness.agents import PlannerAgent, ReferenceCEMAgent, model_views, run_episode
    from worldmodel.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    if method == "reference":
        agent = ReferenceCEMAgent(wm)
    else:
        agent = PlannerAgent(wm, make_planner(method, budget))
    env = gym.make(envs.TASKS["reach"], image_size=64, views=model_views(wm))
    runs = [run_episode(env, agent, method, k, k, max_steps) for k in range(n)]
    return [(r.success, r.seconds_per_action) for r in runs]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--problems", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=12)
    p.add_argument("--methods", nargs="+", default=["reference", "cem", "icem"])
    p.add_argument("--budgets", nargs="*", default=[], help="SxI budgets for cem/icem (model)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of success vs s/action")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--malloc", choices=["keep", "default"], default="keep",
                   help="keep: planning.cpu_memory.keep_freed_memory, as the CLIs")  # fmt: skip
    args = p.parse_args(argv)
    try:
        budgets = [tuple(int(v) for v in b.lower().split("x")) for b in args.budgets]
        assert all(len(b) == 2 and min(b) >= 1 for b in budgets)
    except (ValueError, AssertionError):
        p.error(f"--budgets takes SxI pairs like 64x5, got {args.budgets}")
    if budgets and args.model is None:
        p.error("--budgets needs --model")
    torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        keep_freed_memory()  # what wm-demo / wm-eval / wm-serve do (demos/bench/bench_malloc.py)
    toy = ToyDynamics()
    stats = {}
    for method in args.methods:
        for budget in budgets if (budgets and method != "reference") else [None]:
            if args.model is not None:
                runs = model_episodes(method, args.model, args.problems, args.max_steps, budget)
            else:
                probs = toy_problems(args.problems, seed=0)
                runs = [toy_episode(method, toy, s, g, args.max_steps) for s, g in probs]
            times = [t for _, ts in runs for t in ts]
            name = method if budget is None else f"{method} {budget[0]}x{budget[1]}"
            stats[name] = (sum(ok for ok, _ in runs), float(np.median(times)) if times else np.nan)
            print(f"{name}: {stats[name][0]}/{args.problems}, {stats[name][1]:.4f} s/action")
    base = stats.get("reference", (0, np.nan))[1]
    dyn = f"world model {args.model}" if args.model else "toy dynamics"
    print(f"\n{dyn}, {args.problems} problems, <= {args.max_steps} actions each\n")
    print("| planner | success | s/action (median) | time vs reference |")
    print("|---|---|---|---|")
    for method, (wins, sec) in stats.items():
        print(f"| {method} | {wins}/{args.problems} | {sec:.4f} | {sec / base:.2f}x |")
    if args.plot is not None:
        plot_curve(stats, args.problems, args.plot, dyn)


def plot_curve(stats: dict, n: int, path: Path, title: str) -> None:
    """Success rate vs median seconds per action, one line per planner (log x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in ("cem", "icem", "reference"):
        pts = sorted((sec, wins / n) for name, (wins, sec) in stats.items()
                     if name.split()[0] == family)  # fmt: skip
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-" if len(pts) > 1 else "s", label=family)
    ax.set(xscale="log", xlabel="seconds per action (median)", ylabel="success rate",
           title=title, ylim=(-0.05, 1.05))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
