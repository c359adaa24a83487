"""wm-train: the AC predictor on frozen features: losses, validation against copy-last, the (DDP)
training loop, the CLI.

``wm-train data_root=... encoder_dir=... cache_dir=... [predictor=small] [mode=on_the_fly]``
or ``torchrun --nproc_per_node N -m worldmodel.training.train ...``. Options and schedule live
in :mod:`worldmodel.training.train_config`, clips and sources in
:mod:`worldmodel.training.train_data`, logs and checkpoints in :mod:`worldmodel.training.run_io`.

Per clip of T frames: latents z_0..z_{T-1} (pooled, layer-normed) with actions/states. Teacher
forcing predicts z_{t+1} from true z_{<=t}; the rollout starts at z_0 and feeds back k-1 of its
own (layer-normed) predictions, with the recorded states, as published. Both losses are L1 on
layer-normed targets. Under ``torchrun`` each rank takes its slice of the same global batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from worldmodel.checkpoints.predictor import infer_config, read_published_state
from worldmodel.checkpoints.strict import load_state_strict
from worldmodel.config import plain_defaults, run_cli
from worldmodel.errors import CheckpointError
from worldmodel.models.latents import layer_norm
from worldmodel.models.layout import Layout
from worldmodel.models.predictor import ACPredictor
from worldmodel.training.distributed import setup_distributed, stop_on_non_finite
from worldmodel.training.run_io import RunLog, load_checkpoint, save_checkpoint
from worldmodel.training.train_config import (
    RENAMED,
    TrainConfig,
    build_predictor,
    config_from_mapping,
    lr_factor,
)
from worldmodel.training.train_data import ClipSampler, build_source, split_episodes, window_refs
from worldmodel.world_model import WorldModel


def event_weights(actions: Tensor, weight: float, threshold: float = 0.5) -> Tensor:
    """(B, T) loss weight of each transition: ``weight`` where the gripper action opens or
    closes (|dg| >= threshold), 1 elsewhere."""
    big = actions[..., 6].abs() >= threshold
    return torch.where(
        big, torch.full_like(actions[..., 6], weight), torch.ones_like(big, dtype=actions.dtype)
    )


def motion_weights(z: Tensor, weight: float) -> Tensor:
    """(B, T-1, N) loss weight of each target token z[:, t+1]: ``1 + weight * c / mean(c)``
    with c its mean |change| from z[:, t] (the batch's mean c; 1 everywhere when nothing moves)."""
    change = (z[:, 1:] - z[:, :-1]).abs().mean(dim=-1)
    return 1.0 + weight * change / change.mean().clamp_min(1e-12)


def _weighted_l1(pred: Tensor, target: Tensor, w: Tensor | None) -> Tensor:
    """Mean L1 over the feature dim, then the w-weighted mean over tokens and leading dims
    (plain mean if None); ``w`` is per token (..., N) or per sample (...), broadcast over N."""
    per = (pred - target).abs().mean(dim=-1)  # (..., N)
    if w is None:
        return per.mean()
    w = w if w.dim() == per.dim() else w[..., None]
    w = w.expand_as(per)
    return (per * w).sum() / w.sum()


def clip_losses(
    model,
    z: Tensor,
    actions: Tensor,
    states: Tensor,
    rollout_steps: int,
    event_weight: float = 1.0,
    motion_weight: float = 0.0,
):
    """Teacher-forcing and per-step rollout L1 losses of one batch.

    Args:
        model: ACPredictor (or DDP-wrapped); z: (B, T, N, D) layer-normed latents;
            actions, states: (B, T, 7).
        event_weight: weight of transitions whose gripper action opens/closes (1: unweighted).
            The gripper changes few pixels; up-weighting is meant to make the predictor learn
            it (at 10 the tiny preset still did not: docs/experiments/).
        motion_weight: > 0 weights each target token by how much it truly changed
            (:func:`motion_weights`); 0: unweighted.

    Returns:
        (tf_loss, [rollout loss at step 1..k]) scalars.
    """
    predictor = model.module if isinstance(model, DistributedDataParallel) else model
    w = None if event_weight == 1.0 else event_weights(actions, event_weight)  # (B, T)
    if motion_weight > 0:
        m = motion_weights(z, motion_weight)  # (B, T-1, N)
        w = m if w is None else m * w[:, :-1, None]
    else:
        w = None if w is None else w[:, :-1]  # (B, T-1): transition t -> t+1
    cache = predictor.new_cache()
    tf = layer_norm(model(z[:, :-1], actions[:, :-1], states[:, :-1], cache=cache))  # (B,T-1,N,D)
    tf_loss = _weighted_l1(tf, z[:, 1:], w)
    # step 1 is the teacher-forced step 0 output
    roll = [_weighted_l1(tf[:, 0], z[:, 1], None if w is None else w[:, 0])]
    cache = cache.truncated(1)
    z_hat = tf[:, :1]  # (B, 1, N, D)
    for n in range(1, rollout_steps):
        z_hat = layer_norm(model(z_hat, actions[:, n : n + 1], states[:, n : n + 1], cache=cache))
        roll.append(_weighted_l1(z_hat[:, 0], z[:, n + 1], None if w is None else w[:, n]))
    return tf_loss, roll


@torch.no_grad()
def evaluate(predictor: ACPredictor, source, refs: np.ndarray, cfg: TrainConfig, device) -> dict:
    """Validation losses of the model and of copy-last, on fixed, evenly spaced val clips."""
    predictor.eval()
    k = cfg.rollout_steps
    picks = np.linspace(0, len(refs) - 1, min(len(refs), cfg.eval_batches * cfg.batch_size))
    picks = refs[np.unique(picks.round().astype(int))]
    sums = np.zeros(2 + 2 * k)
    for i in range(0, len(picks), cfg.batch_size):
        z, actions, states = source.batch(
            picks[i : i + cfg.batch_size], cfg.clip_len, predictor, device
        )
        tf, roll = clip_losses(predictor, z, actions, states, k)
        copy_tf = (z[:, :-1] - z[:, 1:]).abs().mean()
        copy_roll = [(z[:, 0] - z[:, n]).abs().mean() for n in range(1, k + 1)]
        vals = [tf, copy_tf, *roll, *copy_roll]
        sums += len(z) * np.array([float(v) for v in vals])
    predictor.train()
    m = sums / len(picks)
    report = {"val_tf": m[0], "copy_tf": m[1], "tf_ratio": m[0] / m[1]}
    for n in range(k):
        report[f"val_roll{n + 1}"] = m[2 + n]
        report[f"copy_roll{n + 1}"] = m[2 + k + n]
        report[f"roll{n + 1}_ratio"] = m[2 + n] / m[2 + k + n]
    return {key: float(v) for key, v in report.items()}


def _optimizer(predictor: ACPredictor, cfg: TrainConfig):
    """AdamW without weight decay on biases/norms, and its warmup-hold-decay LambdaLR."""
    params = [p for p in predictor.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))


def _mean_over_ranks(x: Tensor, world: int) -> float:
    x = x.detach().float().clone()
    if world > 1:
        dist.all_reduce(x)
        x /= world
    return float(x)


def _step(model, predictor, opt, sched, batch, cfg: TrainConfig, device) -> tuple[Tensor, float]:
    """One optimizer step on (z, actions, states); returns (loss, grad norm)."""
    with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
        tf_loss, roll = clip_losses(
            model, *batch, cfg.rollout_steps, cfg.gripper_event_weight, cfg.motion_weight
        )
        loss = tf_loss + torch.stack(roll).mean()
    stop_on_non_finite(loss, sched.last_epoch + 1, "wm-train")  # before the update
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(predictor.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return loss, float(gnorm)


def init_predictor(
    predictor: ACPredictor, folder: Path, encoder=None, views: tuple[str, ...] | None = None
) -> None:
    """Copy the predictor weights of the world model in ``folder`` into ``predictor``.

    ``encoder`` (the run's frozen encoder, views wrapper or not): its weights must be those of
    the world model's ``encoder/``, or the predictor would start on another latent space;
    ``views``: the run's cameras, in the order the world model recorded.

    Raises:
        CheckpointError: the folder is not a world model, or its predictor was built with
            another config (preset, feature size, grid, pooling: e.g. other views), or on
            another encoder.
    """
    wm = WorldModel.load(folder)
    if views is not None and wm.views != tuple(views):
        raise CheckpointError(
            f"init_from {folder}: its views {list(wm.views)} are not this run's "
            f"{list(views)} (camera=...)"
        )
    if wm.predictor.cfg != predictor.cfg:
        raise CheckpointError(
            f"init_from {folder}: its predictor config {wm.predictor.cfg} differs from this "
            f"run's {predictor.cfg} (same preset, views, encoder and pool_kernel needed)"
        )
    if hasattr(encoder, "identity") and encoder.identity() != wm.encoder.identity():
        raise CheckpointError(
            f"init_from {folder}: its encoder/ is not this run's encoder (encoder_dir): "
            "its predictor was trained on another latent space"
        )
    predictor.load_state_dict(wm.predictor.state_dict())


def published_predictor(
    path: Path, feature_dim: int, grid: tuple[int, int], layout: Layout | None, num_heads: int
) -> ACPredictor:
    """The published V-JEPA 2-AC predictor in ``path`` (``torch.save`` with a ``predictor``
    entry), to fine-tune: its sizes come from the file (``num_heads``: not visible in shapes),
    its input grid is the run's encoder grid, unpooled, as published.

    Raises:
        CheckpointError: the data's layout is not the published 7-D end-effector delta, or the
            file's feature size differs from the run's encoder.
    """
    layout = layout if layout is not None else Layout()
    if not layout.is_published:
        raise CheckpointError(
            f"init_from {path}: a published V-JEPA 2-AC predictor takes 7-D end-effector "
            f"deltas and states; this dataset has {layout.action_kind!r} actions "
            f"({layout.action_dim}-D) and {layout.state_dim}-D states. Import it with "
            "action_mode=ee_delta_from_state, or train from scratch"
        )
    state = read_published_state(path)
    pcfg = infer_config(state, input_grid=tuple(grid), pool_kernel=1, num_heads=num_heads)
    if pcfg.encoder_dim != feature_dim:
        raise CheckpointError(
            f"init_from {path}: the predictor takes {pcfg.encoder_dim}-D encoder features; the "
            f"run's encoder gives {feature_dim}-D (use the encoder it was trained with, ViT-g "
            "for the published one)"
        )
    predictor = ACPredictor(pcfg)
    load_state_strict(predictor, state, str(path), what="predictor")
    return predictor


def train(cfg: TrainConfig, source=None) -> dict:
    """Run (or resume) training; returns the final validation report (rank 0; {} elsewhere).

    ``source`` (tests, benchmarks) replaces the data source built from ``cfg``. At the end
    rank 0 writes ``out_dir/world_model`` (loadable with ``WorldModel.load``).
    """
    rank, world, device = setup_distributed(cfg.device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} not divisible by world size {world}")
    torch.manual_seed(cfg.seed)
    source = source if source is not None else build_source(cfg, device)
    train_eps, val_eps = split_episodes(source.num_episodes, cfg.val_fraction, cfg.seed)
    sampler = ClipSampler(window_refs(source, train_eps, cfg.clip_len), cfg.batch_size, cfg.seed)
    val_refs = window_refs(source, val_eps, cfg.clip_len)
    layout = getattr(source, "layout", None)
    from_published = bool(cfg.init_from) and Path(cfg.init_from).is_file()  # a released .pt
    if from_published:
        predictor = published_predictor(
            Path(cfg.init_from), source.feature_dim, source.grid, layout, cfg.init_num_heads
        )
    else:
        predictor = build_predictor(cfg, source.feature_dim, source.grid, layout)
    predictor = predictor.to(device)
    predictor.extrinsics_encoder.requires_grad_(False)  # unused (as published); DDP needs grads
    model = DistributedDataParallel(predictor) if world > 1 else predictor
    opt, sched = _optimizer(predictor, cfg)
    out = Path(cfg.out_dir)
    step = load_checkpoint(out, predictor, opt, sched, sampler) if cfg.resume else 0
    if step == 0 and cfg.init_from and not from_published:
        init_predictor(
            predictor,
            Path(cfg.init_from),
            getattr(source, "encoder", None),
            getattr(source, "views", None),
        )
    log = RunLog(out, rank == 0, resume_step=step)
    report: dict = {}
    bar = log.progress(cfg.max_steps, step, cfg.progress)
    while step < cfg.max_steps:
        refs = sampler.next_batch()[rank::world]  # this rank's slice of the global batch
        batch = source.batch(refs, cfg.clip_len, predictor, device)
        loss, gnorm = _step(model, predictor, opt, sched, batch, cfg, device)
        step += 1
        log.train_row(step, _mean_over_ranks(loss, world), gnorm, sched.get_last_lr()[0], bar)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            report = evaluate(predictor, source, val_refs, cfg, device)
            log.eval_row(step, report)
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.max_steps):
            save_checkpoint(out, predictor, opt, sched, sampler, step, cfg)
    bar.close()
    if rank == 0 and step == cfg.max_steps:
        source.save_world_model(predictor, out / "world_model")
    if world > 1:
        dist.barrier()
    return report if rank == 0 else {}


def main() -> None:
    """Hydra entry point (``configs/train.yaml`` over the TrainConfig defaults)."""
    run_cli("train", config_from_mapping, _run, plain_defaults(TrainConfig), RENAMED)
    if dist.is_initialized():
        dist.destroy_process_group()


def _run(cfg: TrainConfig) -> None:
    report = train(cfg)
    if report:
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.items()})


if __name__ == "__main__":
    main()
