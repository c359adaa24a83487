"""Fixtures shared by the wm-train tests."""

from __future__ import annotations

import pytest

from worldmodel.training.train_config import TrainConfig


@pytest.fixture
def small_train_cfg():
    """``make(out_dir, **overrides) -> TrainConfig`` sized for seconds-long CPU runs on the
    synthetic datasets (4-frame clips, batch 8, 40 steps, quick warmup and decay)."""

    def make(out, **overrides) -> TrainConfig:
        base = dict(
            out_dir=str(out),
            clip_len=4,
            rollout_steps=2,
            batch_size=8,
            max_steps=40,
            lr=2e-3,
            start_lr=2e-4,
            warmup_steps=5,
            decay_steps=10,
            eval_every=20,
            eval_batches=2,
            ckpt_every=10,
            val_fraction=0.34,
            progress=False,
        )
        return TrainConfig(**{**base, **overrides})

    return make
