"""Options of wm-train (:class:`TrainConfig`), the LR schedule and the predictor they build."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worldmodel.config import from_mapping
from worldmodel.models.layout import Layout
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor
from worldmodel.models.views import parse_views


@dataclass(frozen=True)
class TrainConfig:
    """Options of wm-train. Paths: ``data_root`` (episode format), ``cache_dir`` (FeatureCache;
    ``mode="cached"``), ``encoder_dir`` (FrozenEncoder folder: identity of the cache, or the
    encoder itself for ``mode="on_the_fly"``), ``out_dir`` (logs, checkpoints, world model)."""

    data_root: str = ""
    cache_dir: str = ""
    encoder_dir: str = ""
    out_dir: str = "runs/predictor"
    mode: str = "cached"  # cached | on_the_fly
    views: str = "exterior"  # or views side by side, "exterior+wrist" (as wm-cache made them)
    predictor: str = "tiny"  # a PREDICTOR_PRESETS name
    pool_kernel: int = 0  # 0: keep the preset's
    clip_len: int = 8  # frames per clip (4 Hz), as published
    rollout_steps: int = 2  # autoregressive steps of the rollout loss, as published
    gripper_event_weight: float = 1.0  # loss weight of transitions that open/close the gripper
    # loss weight of a target token: 1 + motion_weight * (its true change from the frame before /
    # the batch's mean change); > 0 spends the predictor on what moves (the wrist view's scene
    # slides when the arm moves; the plain L1 predicts a tenth of that slide, weight 30 a fifth,
    # without raising planning success: docs/experiments/, demos/experiments/motion_weight_study.sh)
    motion_weight: float = 0.0
    # what the predictor starts from (fine-tuning); ignored when out_dir holds a checkpoint to
    # resume. A world model folder (same preset, views, pooling and encoder required), or a
    # published V-JEPA 2-AC predictor .pt (its sizes replace the preset's; the data must have
    # the published 7-D end-effector layout; heads are not visible in the file: init_num_heads)
    init_from: str = ""
    init_num_heads: int = 16
    batch_size: int = 16  # global, over all ranks
    max_steps: int = 2000
    lr: float = 4.25e-4
    start_lr: float = 7.5e-5
    final_lr: float = 0.0
    warmup_steps: int = 100
    decay_steps: int = 100
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    val_fraction: float = 0.1  # share of episodes held out for validation
    eval_every: int = 200
    eval_batches: int = 8  # validation batches per evaluation
    ckpt_every: int = 200
    seed: int = 0
    device: str = "auto"  # under torchrun, "cuda" means each rank's cuda:LOCAL_RANK
    bf16: bool = False
    resume: bool = True  # continue from out_dir/checkpoint.pt when present
    progress: bool = True

    def __post_init__(self) -> None:
        parse_views(self.views)  # ValueError on a malformed view list
        if self.mode not in ("cached", "on_the_fly"):
            raise ValueError(f"TrainConfig.mode must be 'cached' or 'on_the_fly', got {self.mode}")
        if self.predictor not in PREDICTOR_PRESETS:
            raise ValueError(
                f"TrainConfig.predictor {self.predictor!r} not in {list(PREDICTOR_PRESETS)}"
            )
        if not 1 <= self.rollout_steps <= self.clip_len - 1:
            raise ValueError(
                f"TrainConfig.rollout_steps must be in [1, clip_len-1], got {self.rollout_steps}"
            )
        for name in ("batch_size", "max_steps", "eval_every", "ckpt_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.warmup_steps < 0 or self.decay_steps < 0 or self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("TrainConfig: warmup/decay steps >= 0, lr > 0, grad_clip > 0 required")
        if self.gripper_event_weight <= 0:
            raise ValueError(
                f"TrainConfig.gripper_event_weight must be > 0, got {self.gripper_event_weight}"
            )
        if self.motion_weight < 0:
            raise ValueError(f"TrainConfig.motion_weight must be >= 0, got {self.motion_weight}")
        if self.pool_kernel < 0:
            raise ValueError(f"TrainConfig.pool_kernel must be >= 0, got {self.pool_kernel}")


RENAMED = {"cache_root": "cache_dir", "camera": "views"}  # deprecated CLI names, one release


def config_from_mapping(raw: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from a plain (Hydra) mapping (:func:`worldmodel.config.from_mapping`);
    ``cache_root`` and ``camera`` are the deprecated names of ``cache_dir`` and ``views``."""
    return from_mapping(TrainConfig, raw, renamed=RENAMED, where="wm-train")


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Warmup (start_lr -> lr, linear), hold at lr, final linear decay to final_lr; / lr."""
    if step < cfg.warmup_steps:
        lr = cfg.start_lr + (cfg.lr - cfg.start_lr) * step / cfg.warmup_steps
    elif step >= cfg.max_steps - cfg.decay_steps and cfg.decay_steps > 0:
        frac = (step - (cfg.max_steps - cfg.decay_steps)) / cfg.decay_steps
        lr = cfg.lr + (cfg.final_lr - cfg.lr) * min(1.0, frac)
    else:
        lr = cfg.lr
    return lr / cfg.lr


def build_predictor(
    cfg: TrainConfig, feature_dim: int, grid: tuple[int, int], layout: Layout | None = None
) -> ACPredictor:
    """Preset with the data's feature size and grid (and an optional pooling override), and the
    data's state/action dims (``layout``; default the published 7-D). A pool kernel that does
    not divide the grid is halved until it does. Presets that scale actions (the CPU ones)
    scale by the data's per-dim bounds, so a full step reads as 1 in any layout."""
    base = PREDICTOR_PRESETS[cfg.predictor]
    layout = layout if layout is not None else Layout()
    pool = cfg.pool_kernel or base.pool_kernel
    while pool > 1 and (grid[0] % pool or grid[1] % pool):
        pool //= 2
    scale = base.action_scale
    if scale is not None and layout != Layout(fps=layout.fps):
        scale = layout.action_scale  # not the published layout and bounds: the data's own
    pcfg = dataclasses.replace(
        base, encoder_dim=feature_dim, input_grid=tuple(grid), pool_kernel=pool,
        action_dim=layout.action_dim, state_dim=layout.state_dim, action_scale=scale,
    )  # fmt: skip
    return ACPredictor(pcfg)
