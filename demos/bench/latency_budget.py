"""Latency budget of one control step with the shipped model, against the control period.

Measures, in one run on this machine: (1) in-process planning (encode the frame + CEM, the
default evaluation planner) at 1 thread and at all threads; (2) the round trip through wm-serve
on loopback with openpi's client (request packing, websocket, decode, plan, reply), with the
same planner. Prints a table of median / p90 seconds and the share of the control period
(4 Hz = 0.25 s) each one uses.

    MUJOCO_GL=egl python demos/bench/latency_budget.py [--model models/shipped] [--steps 12]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import envs
from planning.cpu_memory import keep_freed_memory
from planning.mpc import MPCController
from planning.planners import GRIPPER_EFFORT, CEMConfig, make_planner
from planning.server.config import ServeConfig, build_planner
from planning.server.serve import ServerThread
from worldmodel.world_model import WorldModel


def _stats(times: list[float]) -> tuple[float, float]:
    return float(np.median(times)), float(np.percentile(times, 90))


def in_process(model, cem: CEMConfig, frames, states, goal, threads: int) -> list[float]:
    torch.set_num_threads(threads)
    mpc = MPCController(model, make_planner("cem", cem, model))
    mpc.set_goal(goal)
    mpc.act(frames[0], states[0])  # warm-up (allocations, goal encoding)
    out = []
    for rgb, state in zip(frames, states, strict=True):
        t0 = time.perf_counter()
        mpc.act(rgb, state)
        out.append(time.perf_counter() - t0)
    return out


def through_server(model, cem: CEMConfig, frames, states, goal) -> list[float]:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    cfg = ServeConfig(port=0, planner="cem", cem=cem)
    with ServerThread(cfg, lambda c: (model, build_planner(c, model))) as srv:
        client = WebsocketClientPolicy("127.0.0.1", srv.port)
        client.infer({"goal_image": goal, "reset": True})
        client.infer({"observation/image": frames[0], "observation/state": states[0]})
        out = []
        for rgb, state in zip(frames, states, strict=True):
            t0 = time.perf_counter()
            client.infer({"observation/image": rgb, "observation/state": state})
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shipped")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--period", type=float, default=0.25, help="control period (s), 4 Hz")
    args = ap.parse_args()
    keep_freed_memory()
    model = WorldModel.load(args.model)
    env = gym.make(envs.TASKS["reach"], views=model.views)
    obs, info = env.reset(seed=0, options={"task_id": 0})
    frames, states = [], []
    rng = np.random.default_rng(0)
    for _ in range(args.steps):  # frames along a random walk: what a robot would send
        frames.append(obs["rgb"].copy())
        states.append(obs["state"].astype(np.float32))
        step = np.zeros(7, np.float32)
        step[:3] = rng.uniform(-0.02, 0.02, 3)  # 2 cm moves, gripper and rotation held
        obs, *_ = env.step(step)
    goal = info["goal_rgb"]
    env.close()
    cem = CEMConfig(action_cost=GRIPPER_EFFORT)  # the evaluation default: 256 x 6, horizon 1
    rows = []
    all_threads = torch.get_num_threads()
    for threads in sorted({1, all_threads}):
        rows.append((f"in-process plan, {threads} thread(s)",
                     _stats(in_process(model, cem, frames, states, goal, threads))))  # fmt: skip
    torch.set_num_threads(all_threads)
    rows.append(("wm-serve round trip (openpi client, loopback)",
                 _stats(through_server(model, cem, frames, states, goal))))  # fmt: skip
    print(f"model {args.model}, CEM {cem.samples}x{cem.iterations}, horizon {cem.horizon}, "
          f"{args.steps} steps; control period {args.period} s")  # fmt: skip
    print("| step | median s | p90 s | median / period |\n|---|---|---|---|")
    for name, (med, p90) in rows:
        print(f"| {name} | {med:.3f} | {p90:.3f} | {med / args.period:.1f}x |")


if __name__ == "__main__":
    main()
