"""EnvConfig.views: observations and goal images hold the cameras side by side; the harness
refuses a world model whose views differ from the env's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.collection.recording import record_episode
from planning.harness.agents import check_camera


def test_views_side_by_side():
    env = gym.make(envs.TASKS["grasp"], image_size=32, views=["exterior", "wrist"])
    obs, info = env.reset(options={"task_id": 3})
    base = env.unwrapped
    assert obs["rgb"].shape == (32, 64, 3) == env.observation_space["rgb"].shape
    np.testing.assert_array_equal(obs["rgb"][:, :32], base.render_rgb("exterior"))
    np.testing.assert_array_equal(obs["rgb"][:, 32:], base.render_rgb("wrist"))
    assert "wrist_rgb" not in obs  # views alone add no separate key
    assert info["goal_rgb"].shape == (32, 64, 3)
    assert all(g.shape == (32, 64, 3) for g in info["subgoal_rgbs"])
    # the goal's wrist half is rendered from the goal pose: it differs from the start's
    assert np.abs(info["goal_rgb"][:, 32:].astype(int) - obs["rgb"][:, 32:]).mean() > 1.0
    env.close()


def test_bad_views_are_refused():
    for bad in ([], ["exterior", "exterior"], ["top"]):
        with pytest.raises(ValueError, match="views"):
            gym.make(envs.TASKS["reach"], image_size=32, views=bad)


class _TwoViewModel:
    views = ("exterior", "wrist")
    camera = None


def test_harness_refuses_other_views():
    env = gym.make(envs.TASKS["reach"], image_size=32)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"views=\['exterior', 'wrist'\]"):
        check_camera(_TwoViewModel(), env)
    two = gym.make(envs.TASKS["reach"], image_size=32, views=("exterior", "wrist"))
    two.reset(seed=0)
    check_camera(_TwoViewModel(), two)  # same views: accepted


def test_recording_refuses_a_mosaic():
    env = gym.make(envs.TASKS["reach"], image_size=32, views=("exterior", "wrist"))

    class Still:
        def reset(self):
            pass

        def act(self, obs, info):
            return np.zeros(7, np.float32)

    with pytest.raises(ValueError, match="several views"):
        record_episode(env, Still(), seed=0, max_steps=1)
