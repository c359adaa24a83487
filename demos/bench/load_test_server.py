"""Loopback load test of wm-serve with the toy model: C concurrent clients x R requests each.

Every client sets its own goal, then sends R observations and checks each reply has an
(k, 7) "actions" chunk. Prints errors, p50/p99/max latency and throughput; exits non-zero on
any error. Bounded: a fixed number of requests and a wall-clock deadline.

    python demos/bench/load_test_server.py --clients 8 --requests 100
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
import torch
from websockets.sync.client import connect

from planning.planners.cem import CEMConfig
from planning.server.serve import ServeConfig, ServerThread
from planning.server.wire import packb, unpackb

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], np.float32)
IMG = np.zeros((64, 64, 3), np.uint8)


def client(port: int, idx: int, requests: int, deadline: float, out: dict) -> None:
    """One client: goal, then ``requests`` observations; latencies (s) and errors go to out."""
    lat, errors = [], []
    rng = np.random.default_rng(idx)
    goal = START + np.r_[rng.uniform(-0.1, 0.1, 3), np.zeros(4)].astype(np.float32)
    state = START.copy()
    with connect(f"ws://127.0.0.1:{port}", open_timeout=10, max_size=None) as ws:
        unpackb(ws.recv(timeout=10))  # metadata
        ws.send(packb({"goal_image": IMG, "goal_state": goal}))
        unpackb(ws.recv(timeout=30))
        for _ in range(requests):
            if time.monotonic() > deadline:
                errors.append("deadline")
                break
            t0 = time.perf_counter()
            ws.send(packb({"observation/image": IMG, "observation/state": state}))
            reply = ws.recv(timeout=30)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=240.0)
    parser.add_argument("--samples", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=args.samples, iterations=4,
                                                           top_k=12))  # fmt: skip
    out: dict = {}
    with ServerThread(cfg) as server:
        deadline = time.monotonic() + args.timeout_s
        threads = [threading.Thread(target=client, args=(server.port, i, args.requests,
                                                         deadline, out)) for i in range(args.clients)]  # fmt: skip
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.timeout_s + 30)
        wall = time.perf_counter() - start
    lat = np.array([x for lats, _ in out.values() for x in lats]) * 1e3
    errors = [e for _, errs in out.values() for e in errs] + ["missing client"] * (
        args.clients - len(out))  # fmt: skip
    print(f"clients={args.clients} requests/client={args.requests} replies={lat.size} "
          f"errors={len(errors)} wall={wall:.1f}s throughput={lat.size / wall:.1f} req/s")  # fmt: skip
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"latency ms: p50={p50:.1f} p99={p99:.1f} max={lat.max():.1f}")
    for e in errors[:5]:
        print("error:", e)
    return 1 if errors or lat.size != args.clients * args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
