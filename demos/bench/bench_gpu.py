"""Seconds per action of the published-size world model: the GPU target of the planning issue.

Builds V-JEPA 2-AC at its published sizes with random weights (timing does not depend on the
weights): the ViT-g encoder at 256 px (16 x 16 = 256 tokens a frame, 1408-D) and the
action-conditioned predictor (24 blocks, 1024 wide, 16 heads), and times one control step of
goal-image planning at the published budget (800 samples x 10 iterations, top-10, horizon 1):
encode the current frame, then plan (the goal is encoded once per episode, as in the MPC).
Methods, on the same model in the same run:

- ``cem``: our batched CEM (``planning.planners.cem``), all samples of an iteration in one predictor call;
- ``reference``: the published loop literally (``planning.planners.reference``), which re-encodes the
  current and goal frames every iteration.

    python demos/bench/bench_gpu.py                       # on a GPU: published sizes, bf16
    python demos/bench/bench_gpu.py --out outputs/bench_gpu.json
    python demos/bench/bench_gpu.py --device cpu --dtype fp32 --encoder vit_nano_cpu \\
        --predictor tiny --samples 64 --iterations 2    # a CPU smoke run of the same code

Prints one Markdown row per method (seconds per action: median and p90 over ``--actions``
timed steps after ``--warmup`` untimed ones; the predictor's share; achieved TFLOP/s from the
analytic FLOP count of the predictor's linear layers and attention) and writes them as JSON.
bf16 runs encoder and predictor under autocast (weights stored in fp32 and cast per call, which
costs a few ms on a GPU; norms and softmax in fp32); fp32 is the default on CPU, where bf16 is
slower.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from planning.planners.cem import CEMPlanner, make_generator, shift_plan
from planning.planners.reference import reference_cem, reference_cem_config
from worldmodel.models.encoder import ENCODER_PRESETS
from worldmodel.models.flops import predictor_flops
from worldmodel.world_model import random_world_model as build_model

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
METHODS = ("cem", "reference")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_method(method, wm, frame, goal_frame, state, cfg, device, dtype, steps):
    """Seconds per action of ``steps`` control steps: (total, encode, plan) lists."""
    enabled = dtype != torch.float32
    dev_type = torch.device(device).type
    z_goal = wm.encode(goal_frame, state) if method == "cem" else None
    planner = CEMPlanner(cfg)
    mean, rows = None, []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(dev_type, dtype=dtype, enabled=enabled):
            if method == "cem":
                z = wm.encode(frame, state)
                sync(device)
                t1 = time.perf_counter()
                res = planner.plan(
                    wm, z, state, z_goal, init_mean=mean, generator=make_generator(0, device)
                )
                mean = shift_plan(res.mean)  # warm start, as the MPC does
            else:
                t1 = t0  # the reference encodes inside its loop
                res = reference_cem(wm, frame, state, goal_frame, state, cfg)
        sync(device)
        t2 = time.perf_counter()
        if not torch.isfinite(res.actions).all():
            raise RuntimeError(f"{method}: non-finite planned actions")
        rows.append((t2 - t0, t1 - t0, t2 - t1))
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype or ("bf16" if device.startswith("cuda") else "fp32")]
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda but torch sees no GPU")
    if device == "cpu":
        torch.set_num_threads(args.threads)
    wm = build_model(args.encoder, args.predictor, device, dtype, args.seed)
    enc_size = ENCODER_PRESETS[args.encoder].image_size
    rng = np.random.default_rng(args.seed)
    frame = torch.as_tensor(rng.integers(0, 256, (1, enc_size, enc_size, 3), dtype=np.uint8))
    goal = torch.as_tensor(rng.integers(0, 256, (1, enc_size, enc_size, 3), dtype=np.uint8))
    state = torch.tensor([[0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]], device=device)
    cfg = reference_cem_config(
        samples=args.samples, iterations=args.iterations, top_k=min(10, args.samples),
        horizon=args.horizon,
    )  # fmt: skip
    flops = predictor_flops(wm.predictor.cfg, args.samples, args.iterations, args.horizon)
    results = []
    for method in args.methods:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        time_method(method, wm, frame, goal, state, cfg, device, dtype, args.warmup)
        rows = np.array(
            time_method(method, wm, frame, goal, state, cfg, device, dtype, args.actions)
        )
        total, encode, plan = rows.T
        results.append({
            "method": method, "device": device,
            "device_name": torch.cuda.get_device_name() if device.startswith("cuda")
            else platform.processor() or platform.machine(),
            "dtype": args.dtype or ("bf16" if dtype == torch.bfloat16 else "fp32"),
            "encoder": args.encoder, "predictor": args.predictor,
            "tokens_per_frame": wm.predictor.cfg.tokens_per_frame,
            "samples": args.samples, "iterations": args.iterations, "horizon": args.horizon,
            "actions_timed": args.actions,
            "s_per_action_median": float(np.median(total)),
            "s_per_action_p90": float(np.percentile(total, 90)),
            "encode_s_median": float(np.median(encode)) if method == "cem" else None,
            "plan_s_median": float(np.median(plan)),
            "predictor_tflops": flops / float(np.median(plan)) / 1e12,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda")
            else None,
        })  # fmt: skip
    return results


def markdown(results: list[dict]) -> str:
    head = (
        "| method | device | dtype | model | samples x iters, H | s/action median (p90) "
        "| predictor TFLOP/s | peak GiB |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        lines.append(
            f"| {r['method']} | {r['device_name']} | {r['dtype']} | {r['encoder']} + "
            f"{r['predictor']} ({r['tokens_per_frame']} tokens) | {r['samples']} x "
            f"{r['iterations']}, {r['horizon']} | {r['s_per_action_median']:.3f} "
            f"({r['s_per_action_p90']:.3f}) | {r['predictor_tflops']:.3g} | {peak} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="bf16 on GPU, else fp32")
    p.add_argument("--encoder", default="vit_g")
    p.add_argument("--predictor", default="vjepa2_ac")
    p.add_argument("--samples", type=int, default=800)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--actions", type=int, default=5, help="timed control steps per method")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (kernels, caches)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (device cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if min(args.samples, args.iterations, args.horizon, args.actions) < 1 or args.warmup < 0:
        p.error("--samples, --iterations, --horizon and --actions must be >= 1, --warmup >= 0")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    results = run(args)
    print(markdown(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
