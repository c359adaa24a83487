"""Linear (ridge) probe of frozen pooled encoder features on held-out episodes.

Predicts the end-effector xyz (``state[:, :3]``) and, when ``steps.npz`` carries it, the object
xyz (``object_pos``/``obj_pos``/``object_xyz``), and reports R^2 for our encoder and for a
randomly initialised encoder of the same architecture in the same run, plus the per-dim
feature std of the pooled features (a collapse check: a collapsed encoder has std ~ 0).

    python demos/probe_encoder.py --data data/reach --encoder runs/pretrain/encoder
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodel.data.episodes import open_dataset
from worldmodel.encoder import VisionTransformer
from worldmodel.frozen import FrozenEncoder

OBJECT_KEYS = ("object_pos", "obj_pos", "object_xyz")


def pooled_features(enc: FrozenEncoder, frames: np.ndarray, grid: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, grid*grid*D): the layer-normed final features average-pooled
    to a ``grid`` x ``grid`` token grid and flattened (grid 1 = the token mean). A small grid
    keeps where things are, which a global mean throws away for a few-pixel object."""
    z = enc.encode_frames(frames)  # (T, N, D)
    z = torch.nn.functional.layer_norm(z, z.shape[-1:])
    if grid == 1:
        return z.mean(1).cpu().numpy()
    side = round(z.shape[1] ** 0.5)
    if side * side != z.shape[1] or side % grid:
        raise SystemExit(f"--grid {grid} must divide the {side}x{side} token grid")
    z = z.transpose(1, 2).reshape(z.shape[0], z.shape[2], side, side)
    z = torch.nn.functional.avg_pool2d(z, side // grid)
    return z.flatten(1).cpu().numpy()


def ridge_r2(x_tr, y_tr, x_te, y_te, alpha: float) -> float:
    """Closed-form ridge on standardized features; mean R^2 over target dims on the test set."""
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    y_mu = y_tr.mean(0)
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_tr - y_mu))
    pred = b @ w + y_mu
    ss_res = ((y_te - pred) ** 2).sum(0)
    ss_tot = ((y_te - y_te.mean(0)) ** 2).sum(0) + 1e-12
    return float(np.mean(1 - ss_res / ss_tot))


def collect(dataset, enc: FrozenEncoder, episodes, max_frames: int, grid: int = 1):
    feats, ee, obj = [], [], []
    for i in episodes:
        frames = dataset.read_episode_frames(i)[:max_frames]
        table = dataset.steps(i)
        feats.append(pooled_features(enc, frames, grid))
        ee.append(table.state[: len(frames), :3])
        key = next((k for k in OBJECT_KEYS if k in table.extra), None)
        obj.append(None if key is None else np.asarray(table.extra[key])[: len(frames), :3])
    has_obj = all(o is not None for o in obj)
    return np.concatenate(feats), np.concatenate(ee), (np.concatenate(obj) if has_obj else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", required=True, help="our folder, HF folder or .pt")
    parser.add_argument("--holdout", type=float, default=0.25)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--grid", type=int, default=1, help="pool tokens to a grid x grid map (1 = mean)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data)
    n_test = max(1, round(len(dataset) * args.holdout))
    if len(dataset) - n_test < 1:
        raise SystemExit(f"{args.data}: need >= 2 episodes, got {len(dataset)}")
    train_eps, test_eps = range(len(dataset) - n_test), range(len(dataset) - n_test, len(dataset))
    ours = FrozenEncoder.from_checkpoint(args.encoder)
    torch.manual_seed(0)
    random_enc = FrozenEncoder(VisionTransformer(ours.encoder.cfg), ours.preprocess_cfg)
    print(
        f"{len(train_eps)} train / {n_test} held-out episodes; ridge alpha={args.alpha}; "
        f"features pooled to a {args.grid}x{args.grid} grid"
    )
    for name, enc in (("ours", ours), ("random", random_enc)):
        x_tr, ee_tr, obj_tr = collect(dataset, enc, train_eps, args.max_frames, args.grid)
        x_te, ee_te, obj_te = collect(dataset, enc, test_eps, args.max_frames, args.grid)
        r2_ee = ridge_r2(x_tr, ee_tr, x_te, ee_te, args.alpha)
        r2_obj = (
            f"{ridge_r2(x_tr, obj_tr, x_te, obj_te, args.alpha):.3f}"
            if obj_tr is not None and obj_te is not None
            else "n/a (no object_pos in steps.npz)"
        )
        std = x_tr.std(0)
        print(
            f"{name:7s} R2 ee_xyz={r2_ee:.3f} object_xyz={r2_obj}  feature std per dim: "
            f"mean={std.mean():.4f} min={std.min():.4f} frac<1e-3={(std < 1e-3).mean():.2f}"
        )


if __name__ == "__main__":
    main()
