"""Loopback load test of wm-serve: does one client's heavy request stall the other clients?

C clients on one ServerThread: client 0 sends the largest legal request over and over (a
``goal_image`` of ``max_subgoals`` sub-goals, each as large as the message limit allows, with an
observation: encode the whole schedule, then plan), the other C-1 set a one-image goal and send
R ordinary plan requests each. Prints the ordinary clients' p50/p99/max latency, the heavy
client's, and the longest model turn, for each mode:

- ``quiet``: no heavy client (the ordinary clients alone: the reference);
- ``baseline``: the old behaviour: no sub-goal limit (320 sub-goals, the request of issue #22)
  and the whole goal encoded in one model turn (``goal_encode_batch=320``);
- ``fair``: the server's defaults (``max_subgoals`` 16, ``goal_encode_batch`` 4, fair turns).

Exits non-zero on any error reply. Bounded: fixed request counts and a wall-clock deadline.

    python demos/bench/load_test_server.py --model random --modes baseline,fair
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import torch
from websockets.sync.client import connect

from planning.planners.cem import CEMConfig
from planning.server.config import ServeConfig, build_planner
from planning.server.serve import ServerThread
from planning.server.wire import packb, unpackb

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], np.float32)
IMG = np.zeros((64, 64, 3), np.uint8)
BASELINE_SUBGOALS = 320  # issue #22: one legal request of 320 sub-goal images


def heaviest_request(cfg: ServeConfig, subgoals: int) -> bytes:
    """``subgoals`` goal images plus an observation, each image as large as the message and
    image-side limits allow (the heaviest legal request)."""
    side = min(cfg.max_image_side, math.isqrt(cfg.max_message_bytes // (3 * subgoals)))
    rng = np.random.default_rng(0)
    while True:
        goals = rng.integers(0, 256, (subgoals, side, side, 3), dtype=np.uint8)
        msg = packb({"goal_image": goals, "observation/image": IMG, "observation/state": START})
        if len(msg) <= cfg.max_message_bytes:
            return msg
        side -= 1


def ordinary(port: int, idx: int, requests: int, deadline: float, out: dict) -> None:
    """One client: a one-image goal, then ``requests`` plans; latencies (s) and errors to out."""
    lat, errors = [], []
    rng = np.random.default_rng(idx)
    goal = START + np.r_[rng.uniform(-0.1, 0.1, 3), np.zeros(4)].astype(np.float32)
    state = START.copy()
    with connect(f"ws://127.0.0.1:{port}", open_timeout=30, max_size=None) as ws:
        unpackb(ws.recv(timeout=30))  # metadata
        ws.send(packb({"goal_image": IMG, "goal_state": goal}))
        unpackb(ws.recv(timeout=60))
        for _ in range(requests):
            if time.monotonic() > deadline:
                errors.append("deadline")
                break
            t0 = time.perf_counter()
            ws.send(packb({"observation/image": IMG, "observation/state": state}))
            reply = ws.recv(timeout=120)
            lat.append(time.perf_counter() - t0)
            if isinstance(reply, str):
                errors.append(reply)
                continue
            actions = unpackb(reply)["actions"]
            if actions.ndim != 2 or actions.shape[1] != 7:
                errors.append(f"bad actions shape {actions.shape}")
                continue
            state = state + actions[0]
    out[idx] = (lat, errors)


def heavy(port: int, message: bytes, stop: threading.Event, deadline: float, out: dict) -> None:
    """Client 0: the heaviest request, again and again until the ordinary clients are done."""
    lat, errors = [], []
    with connect(f"ws://127.0.0.1:{port}", open_timeout=30, max_size=None) as ws:
        unpackb(ws.recv(timeout=30))
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            ws.send(message)
            reply = ws.recv(timeout=300)
            lat.append(time.perf_counter() - t0)
            if isinstance(reply, str):
                errors.append(reply)
    out["heavy"] = (lat, errors)


def pct(lat: list[float]) -> str:
    if not lat:
        return "no replies"
    ms = np.asarray(lat) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50={p50:.0f} ms p99={p99:.0f} ms max={ms.max():.0f} ms (n={ms.size})"


def run_mode(mode: str, base: ServeConfig, factory, args) -> bool:
    """One server, one load; prints a line per client group; True when no error."""
    cfg = base
    if mode == "baseline":
        cfg = replace(base, max_subgoals=BASELINE_SUBGOALS, goal_encode_batch=BASELINE_SUBGOALS)
    message = heaviest_request(cfg, cfg.max_subgoals) if mode != "quiet" else b""
    out: dict = {}
    stop = threading.Event()
    with ServerThread(cfg, factory) as server:
        deadline = time.monotonic() + args.timeout_s
        ordinary(server.port, 0, 3, deadline, {})  # warm-up: the model's first calls are slow
        others = [
            threading.Thread(target=ordinary, args=(server.port, i, args.requests, deadline, out))
            for i in range(1, args.clients)
        ]
        heavy_client = None
        if mode != "quiet":
            heavy_args = (server.port, message, stop, deadline, out)
            heavy_client = threading.Thread(target=heavy, args=heavy_args)
            heavy_client.start()
            time.sleep(0.5)  # the heavy client is busy before the others start
        start = time.perf_counter()
        for t in others:
            t.start()
        for t in others:
            t.join(timeout=args.timeout_s + 60)
        wall = time.perf_counter() - start
        stop.set()
        if heavy_client is not None:
            heavy_client.join(timeout=args.timeout_s + 60)
        turns = server.server.turns
    lat = [x for key, (lats, _) in out.items() if key != "heavy" for x in lats]
    errors = [e for _, errs in out.values() for e in errs]
    errors += ["missing client"] * (len(others) + (heavy_client is not None) - len(out))
    side = "" if mode == "quiet" else f", heavy request {len(message) / 2**20:.1f} MiB"
    print(
        f"[{mode}] max_subgoals={cfg.max_subgoals} goal_encode_batch={cfg.goal_encode_batch}"
        f"{side}; wall {wall:.1f} s, {turns.units} model turns, longest {turns.longest_s * 1e3:.0f} ms"
    )
    print(f"  ordinary clients ({args.clients - 1}): {pct(lat)}")
    if mode != "quiet":
        print(f"  heavy client: {pct(out.get('heavy', ([], []))[0])}")
    for e in errors[:5]:
        print("  error:", e[:200])
    return not errors and len(lat) == (args.clients - 1) * args.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="ordinary clients + 1 heavy")
    parser.add_argument("--requests", type=int, default=20, help="plans per ordinary client")
    parser.add_argument("--model", choices=["toy", "random"], default="toy",
                        help="toy dynamics, or a random vit_tiny_cpu/tiny WorldModel")  # fmt: skip
    parser.add_argument("--modes", default="baseline,fair", help="of quiet,baseline,fair")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cem = CEMConfig(samples=args.samples, iterations=args.iterations, top_k=8)
    base = ServeConfig(port=0, planner="cem", cem=cem)
    if args.model == "random":
        from worldmodel.world_model import random_world_model

        model = random_world_model("vit_tiny_cpu", "tiny", "cpu", torch.float32, 0)
        factory = lambda cfg: (model, build_planner(cfg))  # noqa: E731
    else:
        from planning.server.config import default_factory as factory
    print(f"model={args.model} clients={args.clients} requests={args.requests} cem={cem.samples}"
          f"x{cem.iterations}")  # fmt: skip
    ok = [run_mode(m, base, factory, args) for m in args.modes.split(",")]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
