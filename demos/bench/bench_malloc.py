"""Seconds per CEM plan with and without ``keep_freed_memory`` (glibc malloc settings), A/B.

The setting is process-wide and cannot be undone, so each measurement is a fresh child process;
the children alternate (default, keep, default, keep, ...) so a machine that drifts affects
both. Each child plans ``--calls`` times on the model's latent shapes (random layer-normed
latents: the cost does not depend on their values) after one warm-up call. Besides seconds it
reports the minor page faults and the system (kernel) time per plan.

    python demos/bench/bench_malloc.py --model models/shipped --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def child(args: argparse.Namespace) -> None:
    """Time ``args.calls`` plan calls in this process and print them as JSON."""
    import torch

    from planning.cpu_memory import keep_freed_memory
    from planning.planners.cem import CEMConfig, CEMPlanner, make_generator
    from worldmodel.world_model import WorldModel

    kept = keep_freed_memory() if args.child == "keep" else False
    torch.set_num_threads(args.threads)
    wm = WorldModel.load(args.model)
    n, d = wm.predictor.cfg.tokens_per_frame, wm.predictor.cfg.encoder_dim
    g = torch.Generator().manual_seed(0)
    z, z_goal = (torch.nn.functional.layer_norm(torch.randn(1, n, d, generator=g), (d,))
                 for _ in range(2))  # fmt: skip
    state = torch.tensor([[0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0]])
    planner = CEMPlanner(CEMConfig(samples=args.samples, iterations=args.iterations))
    times = []
    for i in range(args.calls + 1):
        if i == 1:  # after the warm-up call
            usage = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        planner.plan(wm, z, state, z_goal, generator=make_generator(i))
        times.append(time.perf_counter() - t0)
    end = resource.getrusage(resource.RUSAGE_SELF)
    faults = (end.ru_minflt - usage.ru_minflt) / args.calls
    system_s = (end.ru_stime - usage.ru_stime) / args.calls
    print(json.dumps({"kept": kept, "times": times[1:], "faults": faults, "system_s": system_s}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/shipped"))
    p.add_argument("--rounds", type=int, default=4, help="children per setting")
    p.add_argument("--calls", type=int, default=8, help="timed plan calls per child")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.calls, args.samples, args.iterations, args.threads) < 1:
        p.error("--rounds, --calls, --samples, --iterations and --threads must be >= 1")
    if args.child:
        child(args)
        return
    times: dict[str, list[float]] = {"default": [], "keep": []}
    faults: dict[str, list[float]] = {"default": [], "keep": []}
    system: dict[str, list[float]] = {"default": [], "keep": []}
    for r in range(args.rounds):
        for setting in ("default", "keep"):
            flags = {"--model": args.model, "--calls": args.calls, "--samples": args.samples,
                     "--iterations": args.iterations, "--threads": args.threads}  # fmt: skip
            cmd = [sys.executable, __file__, "--child", setting]
            cmd += [str(x) for pair in flags.items() for x in pair]
            env = {**os.environ, "WM_KEEP_FREED_MEMORY": "1" if setting == "keep" else "0"}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if setting == "keep" and not res["kept"]:
                sys.exit("keep_freed_memory is not in effect (not glibc?): nothing to compare")
            times[setting] += res["times"]
            faults[setting].append(res["faults"])
            system[setting].append(res["system_s"])
            print(f"round {r + 1} {setting}: median {np.median(res['times']):.3f} s per plan")
    base = float(np.median(times["default"]))
    print(f"\nCEM {args.samples} x {args.iterations}, {args.threads} threads, "
          f"{args.rounds} x {args.calls} plans per setting, alternating processes; page faults "
          "and system (kernel) seconds are per plan\n")  # fmt: skip
    print("| malloc | s per plan (median) | p90 | vs default | page faults | system s |")
    print("|---|---|---|---|---|---|")
    for name, setting in (("glibc default", "default"), ("keep_freed_memory", "keep")):
        med, p90 = float(np.median(times[setting])), float(np.percentile(times[setting], 90))
        flt, sys_s = float(np.mean(faults[setting])), float(np.mean(system[setting]))
        print(f"| {name} | {med:.3f} | {p90:.3f} | {med / base:.2f}x | {flt:,.0f} | {sys_s:.3f} |")


if __name__ == "__main__":
    main()
