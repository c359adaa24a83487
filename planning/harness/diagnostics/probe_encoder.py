"""Linear (ridge) probe of frozen pooled encoder features on held-out episodes.

Predicts the end-effector xyz (``state[:, :3]``), the gripper state (``state[:, 6]``) and, when
``steps.npz`` carries it, the object xyz (``object_pos``/``obj_pos``/``object_xyz``), and
reports R^2 for our encoder and for a randomly initialised encoder of the same architecture in
the same run, plus the per-dim feature std of the pooled features (a collapse check: a
collapsed encoder has std ~ 0).

Our envs put two objects on the table and draw the task object per episode, so "the task
object's xyz" is not a function of the image (nothing shows which object it is). The probe
therefore also reports R^2 per object kind (``object_xyz[cube]``: the cube's xyz, fitted and
tested on the episodes whose task object is the cube), recovering the kind by replaying
``reset(seed)`` of the recorded env, and leaving out frames where the object has been knocked
off the table (out of view); this is the object figure of the quality gate.

    python planning/harness/diagnostics/probe_encoder.py --data data/reach --encoder runs/pretrain/encoder
    python planning/harness/diagnostics/probe_encoder.py ... --views exterior+wrist   # data recorded with the wrist camera
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the wm/* envs)
from worldmodel.data.episodes import open_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import VisionTransformer
from worldmodel.models.views import parse_views, read_view_frames, with_views

OBJECT_KEYS = ("object_pos", "obj_pos", "object_xyz")


def pooled_features(
    enc: FrozenEncoder, frames: np.ndarray, grid: int = 1, views: int = 1
) -> np.ndarray:
    """(T, H, V*W, 3) uint8 -> (T, V*grid*grid*D): the layer-normed final features of each of
    the ``views`` side by side average-pooled to a ``grid`` x ``grid`` token grid and
    flattened (grid 1 = the token mean per view). A small grid keeps where things are, which a
    global mean throws away for a few-pixel object."""
    z = enc.encode_frames(frames)  # (T, N, D)
    z = torch.nn.functional.layer_norm(z, z.shape[-1:])
    h, w = enc.grid
    if h % grid or (w // views) % grid:
        raise SystemExit(f"--grid {grid} must divide the {h}x{w // views} token grid of a view")
    z = z.transpose(1, 2).reshape(z.shape[0], z.shape[2], h, w)
    z = torch.nn.functional.avg_pool2d(z, (h // grid, w // views // grid))
    return z.flatten(1).cpu().numpy()


def ridge_r2(x_tr, y_tr, x_te, y_te, alpha: float) -> float:
    """Closed-form ridge on standardized features; mean R^2 over target dims on the test set."""
    return float(np.mean(ridge_r2_dims(x_tr, y_tr, x_te, y_te, alpha)))


def ridge_r2_dims(x_tr, y_tr, x_te, y_te, alpha: float) -> np.ndarray:
    """Per-target-dim test R^2 of the ridge fit (a near-constant dim can score very low)."""
    ss_res, ss_tot = ridge_sums(x_tr, y_tr, x_te, y_te, alpha)
    return 1 - ss_res / ss_tot


def ridge_sums(x_tr, y_tr, x_te, y_te, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-target-dim residual and total sums of squares of the ridge fit on the test set."""
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    y_mu = y_tr.mean(0)
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_tr - y_mu))
    pred = b @ w + y_mu
    return ((y_te - pred) ** 2).sum(0), ((y_te - y_te.mean(0)) ** 2).sum(0) + 1e-12


def fmt_r2(x_tr, y_tr, x_te, y_te, alpha: float) -> str:
    """Mean of the per-axis R^2 (the gate's number), the axes, and the R^2 of the position as
    one vector (1 - sum of squared 3-D errors / total 3-D variance: axes count by their
    variance, so a nearly constant height does not dominate)."""
    ss_res, ss_tot = ridge_sums(x_tr, y_tr, x_te, y_te, alpha)
    dims = 1 - ss_res / ss_tot
    vec = 1 - ss_res.sum() / ss_tot.sum()
    return (
        f"{dims.mean():.3f} (x {dims[0]:.2f} y {dims[1]:.2f} z {dims[2]:.2f}; "
        f"as a 3-D vector {vec:.3f})"
    )


def collect(
    dataset, enc: FrozenEncoder, episodes, max_frames: int, grid: int = 1,
    views: tuple[str, ...] = ("exterior",),
):  # fmt: skip
    """Features, EE xyz, object xyz (or None), the frame count of each episode and the gripper
    state (T, 1) (commanded closure, 0 open .. 1 closed). ``views``: cameras side by side."""
    feats, ee, obj, grip = [], [], [], []
    for i in episodes:
        n = min(max_frames, dataset.episode_length(i))
        frames = read_view_frames(dataset, i, views, np.arange(n))
        table = dataset.steps(i)
        feats.append(pooled_features(enc, frames, grid, len(views)))
        ee.append(table.state[: len(frames), :3])
        grip.append(table.state[: len(frames), 6:7])
        key = next((k for k in OBJECT_KEYS if k in table.extra), None)
        obj.append(None if key is None else np.asarray(table.extra[key])[: len(frames), :3])
    has_obj = all(o is not None for o in obj)
    objs = np.concatenate(obj) if has_obj else None
    lengths = [len(f) for f in feats]
    return np.concatenate(feats), np.concatenate(ee), objs, lengths, np.concatenate(grip)


def task_object_names(dataset, episodes) -> list[str] | None:
    """The task object's name of each episode, by replaying ``reset(seed)`` of the recorded env
    (None when the dataset does not record seeds or the env has no ``object_name``)."""
    try:
        env = gym.make(dataset.meta.env_id, image_size=16)
    except Exception:  # not one of our envs: no per-object figures
        return None
    names = []
    try:
        for i in episodes:
            seed = dataset.steps(i).extra.get("seed")
            if seed is None:
                return None
            _, info = env.reset(seed=int(seed))
            if "object_name" not in info:
                return None
            names.append(str(info["object_name"]))
    finally:
        env.close()
    return names


def on_table(obj: np.ndarray) -> np.ndarray:
    """(T, 3) object xyz -> (T,) bool: inside a generous box around the table (an object knocked
    off the table leaves the camera's view; its xyz is not a property of the image)."""
    lo, hi = np.array([0.1, -0.5, -0.05]), np.array([0.9, 0.5, 0.6])
    return np.all((obj >= lo) & (obj <= hi), axis=1)


def per_frame(names: list[str], feats_per_episode: list[int]) -> np.ndarray:
    return np.concatenate([[n] * k for n, k in zip(names, feats_per_episode, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", required=True, help="our folder, HF folder or .pt")
    parser.add_argument("--holdout", type=float, default=0.25)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-features", default="", help="npz prefix: keep the features")
    parser.add_argument(
        "--grid", type=int, default=1, help="pool tokens to a grid x grid map (1 = mean)"
    )
    parser.add_argument(
        "--views", default="exterior", help="cameras side by side, e.g. exterior+wrist"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data)
    n_test = max(1, round(len(dataset) * args.holdout))
    if len(dataset) - n_test < 1:
        raise SystemExit(f"{args.data}: need >= 2 episodes, got {len(dataset)}")
    train_eps, test_eps = range(len(dataset) - n_test), range(len(dataset) - n_test, len(dataset))
    views = parse_views(args.views)
    ours = FrozenEncoder.from_checkpoint(args.encoder)
    torch.manual_seed(0)
    random_enc = FrozenEncoder(VisionTransformer(ours.encoder.cfg), ours.preprocess_cfg)
    ours, random_enc = with_views(ours, views), with_views(random_enc, views)
    print(
        f"{len(train_eps)} train / {n_test} held-out episodes; ridge alpha={args.alpha}; "
        f"features pooled to a {args.grid}x{args.grid} grid per view of {'+'.join(views)}"
    )
    names_tr, names_te = task_object_names(dataset, train_eps), task_object_names(dataset, test_eps)
    for name, enc in (("ours", ours), ("random", random_enc)):
        x_tr, ee_tr, obj_tr, n_tr, g_tr = collect(
            dataset, enc, train_eps, args.max_frames, args.grid, views
        )
        x_te, ee_te, obj_te, n_te, g_te = collect(
            dataset, enc, test_eps, args.max_frames, args.grid, views
        )
        if args.save_features:
            np.savez(f"{args.save_features}_{name}.npz", x_tr=x_tr, x_te=x_te, ee_tr=ee_tr,
                     ee_te=ee_te, obj_tr=obj_tr, obj_te=obj_te, n_tr=n_tr, n_te=n_te,
                     names_tr=names_tr, names_te=names_te)  # fmt: skip
        r2_ee = fmt_r2(x_tr, ee_tr, x_te, ee_te, args.alpha)
        r2_grip = ridge_r2(x_tr, g_tr, x_te, g_te, args.alpha)
        r2_obj = "n/a (no object_pos in steps.npz)"
        if obj_tr is not None and obj_te is not None:
            r2_obj = f"{ridge_r2(x_tr, obj_tr, x_te, obj_te, args.alpha):.3f} (task object);"
            if names_tr is not None and names_te is not None:
                k_tr, k_te = per_frame(names_tr, n_tr), per_frame(names_te, n_te)
                for kind in sorted(set(names_tr) & set(names_te)):
                    a, b = (k_tr == kind) & on_table(obj_tr), (k_te == kind) & on_table(obj_te)
                    off = int((k_tr == kind).sum() - a.sum() + (k_te == kind).sum() - b.sum())
                    r2 = fmt_r2(x_tr[a], obj_tr[a], x_te[b], obj_te[b], args.alpha)
                    r2_obj += f" object_xyz[{kind}]={r2} ({off} off-table frames left out)"
        std = x_tr.std(0)
        print(
            f"{name:7s} R2 ee_xyz={r2_ee} gripper={r2_grip:.3f} object_xyz={r2_obj}  "
            "feature std per dim: "
            f"mean={std.mean():.4f} min={std.min():.4f} frac<1e-3={(std < 1e-3).mean():.2f}"
        )


if __name__ == "__main__":
    main()
