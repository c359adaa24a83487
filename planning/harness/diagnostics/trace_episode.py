"""Trace one goal-image planning episode step by step: why did it fail?

Runs ``wm-eval``'s ``wm_cem`` (or ``wm_icem``) agent, with its settings from
``configs/eval.yaml``, on one episode and records at every control step the sub-goal, the
planned action and the one sent (after ``MPCConfig``'s execution filters), the end effector,
the gripper, the task object (privileged simulator state: for diagnosis only, the planner
never sees it), whether it is held / picked, the energy to the active goal image and the
task distance. Writes a CSV and a PNG (top-down path of the end effector and the object with
the sub-goal positions and the place target; gripper, energy and height over time).

    python planning/harness/diagnostics/trace_episode.py --model models/shipped --task pick_place --task-id 7
    python planning/harness/diagnostics/trace_episode.py --model models/shipped --task pick_place --seed 10003

``--task-id N`` replays evaluation instance N exactly as ``wm-eval`` runs it; ``--seed S``
draws a fresh instance (e.g. the development seeds 10000+ used to try changes without
looking at the evaluation instances).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from planning.harness.agents import model_views
from planning.harness.evaluate import config_from_dict, load_model, make_agent, make_env

FIELDS = (
    "step", "subgoal", "planned_dx", "planned_dy", "planned_dz", "planned_dg", "sent_dx",
    "sent_dy", "sent_dz", "sent_dg", "ee_x", "ee_y", "ee_z", "gripper", "obj_x", "obj_y",
    "obj_z", "held", "picked", "energy", "task_distance", "seconds",
)  # fmt: skip


def trace(task: str, model: str, method: str, task_id: int | None, seed: int | None) -> dict:
    """Run one episode; returns {"rows": [...], "success": bool, "info": reset info}."""
    cfg = config_from_dict({"model": model, "tasks": [task]})  # wm-eval's defaults
    if cfg.mpc.action_chunk != 1:
        raise ValueError("trace_episode.py replans every step: set mpc.action_chunk to 1")
    wm = load_model(cfg)
    env = make_env(cfg, task, model_views(wm))
    agent = make_agent(method, cfg, wm)
    if task_id is not None:
        obs, info = env.reset(seed=cfg.seed + task_id, options={"task_id": task_id})
    else:
        obs, info = env.reset(seed=seed)
    agent.reset(env, obs, info)
    sim, mpc = env.unwrapped, agent.mpc
    name = getattr(sim, "object_name", None)
    start_obj = sim.object_pose(name)[0] if name else np.full(3, np.nan)
    start = np.concatenate([sim.ee_state()[:3], start_obj])  # before the first action
    rows, success = [], bool(info["is_success"])
    for t in range(cfg.steps_for(task)):
        if success:
            break
        t0 = time.perf_counter()
        chunk, step = mpc.plan_chunk(obs["rgb"], obs["state"])  # action_chunk 1 in eval.yaml
        planned = chunk[0]
        sent = mpc.cfg.execute(planned, obs["state"])
        seconds = time.perf_counter() - t0
        obs, _, _, _, info = env.step(sent)
        success = bool(info["is_success"])
        ee = sim.ee_state()
        obj = sim.object_pose(name)[0] if name else np.full(3, np.nan)
        held = int(bool(name and sim.object_held(name)))
        values = [
            t, step.subgoal_index, *planned[[0, 1, 2, 6]], *sent[[0, 1, 2, 6]], *ee[:3],
            sim.gripper_cmd, *obj, held, int(getattr(sim, "picked", False)),
            step.current_energy, info["task_distance"], seconds,
        ]  # fmt: skip
        rows.append(dict(zip(FIELDS, values, strict=True)))
    env.close()
    return {"rows": rows, "success": success, "info": info, "object": name, "start": start}


def plot(result: dict, title: str, out: Path) -> None:
    """Top-down path (EE, object, sub-goals, target); heights; gripper and energy over time."""
    rows, info, start = result["rows"], result["info"], result["start"]
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in FIELDS}
    path = {k: np.concatenate([[start[i]], col[k]]) for i, k in enumerate(
        ("ee_x", "ee_y", "ee_z", "obj_x", "obj_y", "obj_z"))}  # fmt: skip
    steps = np.arange(len(rows) + 1)  # 0: the start, t + 1: after the step-t action
    fig, (top, height, grip) = plt.subplots(1, 3, figsize=(15, 4.5))
    top.plot(path["ee_y"], path["ee_x"], ".-", color="tab:blue", label="end effector")
    if result["object"]:
        top.plot(path["obj_y"], path["obj_x"], ".-", color="tab:orange", label=result["object"])
    top.plot(path["ee_y"][0], path["ee_x"][0], "s", color="tab:blue", mfc="none", label="start")
    for k, s in enumerate(info.get("subgoal_states") or []):
        top.plot(s[1], s[0], "k+", ms=10)
        top.annotate(f"g{k}", (s[1], s[0]), textcoords="offset points", xytext=(4, 4))
    target = info.get("place_target")
    if target is not None:
        top.add_patch(plt.Circle((target[1], target[0]), 0.04, fill=False, color="tab:green"))
        top.plot([], [], "o", mfc="none", color="tab:green", label="place target (4 cm)")
    top.set(xlabel="y (m)", ylabel="x (m)", aspect="equal")
    top.invert_xaxis()  # as seen from behind the robot base
    top.legend(fontsize=8)
    top.set_title("top view (g<k>: sub-goal end-effector positions)", fontsize=9)
    height.plot(steps, path["ee_z"], ".-", color="tab:blue", label="end effector")
    if result["object"]:
        height.plot(steps, path["obj_z"], ".-", color="tab:orange", label=result["object"])
    height.set(xlabel="control step", ylabel="height (m)")
    height.legend(fontsize=8)
    grip.step(col["step"] + 1, col["gripper"], where="post", color="tab:purple", label="gripper")
    grip.plot(col["step"] + 1, col["held"], "|", color="k", label="held")
    grip.set(xlabel="control step", ylabel="gripper (1 closed), held")
    energy = grip.twinx()
    energy.plot(col["step"], col["energy"], ".-", color="tab:red", label="energy")
    energy.set_ylabel("energy to the active goal image", color="tab:red")
    grip.legend(fontsize=8, loc="upper left")
    for ax in (height, grip):
        for t in np.flatnonzero(np.diff(col["subgoal"])) + 1:
            ax.axvline(col["step"][t], color="grey", lw=0.8, ls="--")
    grip.set_title("dashed: the next sub-goal image becomes the goal", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/shipped")
    ap.add_argument("--task", default="pick_place")
    ap.add_argument("--method", default="wm_cem", choices=["wm_cem", "wm_icem"])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--task-id", type=int, help="evaluation instance, as wm-eval runs it")
    who.add_argument("--seed", type=int, help="a fresh instance (e.g. 10000+ for development)")
    ap.add_argument("--out", type=Path, default=Path("outputs/trace"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = trace(args.task, args.model, args.method, args.task_id, args.seed)
    which = f"id{args.task_id}" if args.task_id is not None else f"seed{args.seed}"
    stem = args.out / f"{args.task}_{args.method}_{which}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(result["rows"])
    for r in result["rows"]:
        print(
            f"{r['step']:2d} g{r['subgoal']} planned dg {r['planned_dg']:+.2f} sent "
            f"[{r['sent_dx']:+.3f} {r['sent_dy']:+.3f} {r['sent_dz']:+.3f} {r['sent_dg']:+.2f}] "
            f"ee [{r['ee_x']:.3f} {r['ee_y']:.3f} {r['ee_z']:.3f}] grip {r['gripper']:.2f} "
            f"obj [{r['obj_x']:.3f} {r['obj_y']:.3f} {r['obj_z']:.3f}] held {r['held']} "
            f"picked {r['picked']} E {r['energy']:.4f} d {r['task_distance']:.3f}"
        )
    verdict = "success" if result["success"] else "failure"
    title = f"{args.task} {args.method} {which}: {verdict} after {len(result['rows'])} steps"
    plot(result, title, stem.with_suffix(".png"))
    print(f"{title}; wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
