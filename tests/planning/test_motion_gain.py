"""planning/harness/diagnostics/motion_gain.py: a predictor that moves the arm as commanded has gain ~1, copy-last 0."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.env_config import GoalConfig
from planning.harness.diagnostics import motion_gain

VIEWS = ("exterior", "wrist")


def cells(images: np.ndarray) -> torch.Tensor:
    """(B, 64, 128, 3) uint8 -> (B, 32, 48): a 4 x 8 grid of 16-px cells, each cell 4x4x3."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / 255
    b = x.shape[0]
    x = x.reshape(b, 4, 4, 4, 8, 4, 4, 3).mean(dim=(3, 6))  # (B, 4, 4, 8, 4, 3): 4x4-px blocks
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, 32, 48)


class PixelModel:
    """Enough of a WorldModel for the script: pixel-cell latents; ``oracle`` rollouts render
    the commanded move in ``env`` (a perfect predictor), otherwise the frame is copied."""

    views = VIEWS
    action_dim = 7
    predictor = SimpleNamespace(cfg=SimpleNamespace(input_grid=(8, 16), pool_kernel=2))

    def __init__(self, env: gym.Env, oracle: bool) -> None:
        self.env, self.oracle = env, oracle

    def encode(self, images, states):
        return cells(images)

    def rollout(self, z, state, actions):
        if not self.oracle:
            return z[:, None, None]
        u = self.env.unwrapped
        saved = u.get_sim_state()
        u.place_config(GoalConfig(ee_pos=tuple((state[0, :3] + actions[0, 0, 0, :3]).tolist())))
        frame = u.render_views()
        u.set_sim_state(saved)
        return cells(frame[None])[:, None, None]


def test_view_masks_split_the_grid_by_view():
    mod = motion_gain
    masks = mod.view_masks(PixelModel(None, False))
    assert list(masks) == ["all views", *VIEWS]
    assert masks["all views"].all() and masks["exterior"].sum() == masks["wrist"].sum() == 16
    assert not (masks["exterior"] & masks["wrist"]).any()
    assert masks["exterior"][:4].all() and not masks["exterior"][4:8].any()  # first row


@pytest.mark.parametrize("oracle, low, high", [(True, 0.8, 1.2), (False, 0.0, 0.0)])
def test_gain_of_a_perfect_and_a_copy_last_predictor(oracle, low, high):
    mod = motion_gain
    env = gym.make(envs.TASKS["reach"], image_size=64, views=VIEWS)
    args = argparse.Namespace(instances=2, moves=2, seed=0, seed_offset=20000)
    found = mod.measure(PixelModel(env, oracle), env, args)
    env.close()
    for name in ("all views", "exterior"):
        assert len(found[name]) == 4
        assert low <= np.median(found[name]) <= high, (name, found[name])
