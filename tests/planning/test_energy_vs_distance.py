"""planning/harness/diagnostics/energy_vs_distance.py: real renders of arm placements scored against the goal image."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np

import envs
from planning.harness.diagnostics import energy_vs_distance


def test_points_fall_in_their_bands():
    mod = energy_vs_distance
    goal = np.array([0.5, 0.1, 0.2])
    pts, n_near = mod.sample_points(np.random.default_rng(0), goal, 10, 20)
    d = np.linalg.norm(pts - goal, axis=1)
    assert n_near == 10 and len(pts) == 30
    assert (d[:n_near] < 0.03).all() and (d[n_near:] > 0.05).all()
    assert (pts[:, 2] >= 0.03).all()


def test_placing_the_arm_at_the_goal_reproduces_the_goal_image():
    mod = energy_vs_distance
    env = gym.make(envs.TASKS["reach"], image_size=64)
    obs, info = env.reset(seed=3, options={"task_id": 3})
    goal = np.asarray(info["goal_state"][:3])
    imgs = mod.render_at(env, np.stack([goal, goal + np.array([0.08, 0.0, 0.0])]))
    err = np.abs(imgs.astype(int) - info["goal_rgb"].astype(int)).mean((1, 2, 3))
    assert err[0] < 0.5 < err[1]  # the goal pose renders as the goal image; 8 cm away does not
    np.testing.assert_array_equal(env.unwrapped.render_rgb(), obs["rgb"])  # start state restored
    env.close()


def test_pixel_energy_ranks_distance_and_prints_a_summary(capsys):
    mod = energy_vs_distance
    assert abs(mod.spearman(np.arange(5.0), np.arange(5.0) ** 2) - 1.0) < 1e-9
    assert abs(mod.spearman(np.arange(5.0), -np.arange(5.0)) + 1.0) < 1e-9
    mod.main(["--pixels", "--tasks", "2", "--near", "4", "--far", "8"])
    out = capsys.readouterr().out
    m = re.search(r"Spearman\(distance, energy\) mean ([-\d.]+)", out)
    assert m and float(m.group(1)) > 0.3  # farther from the goal looks less like it
    assert out.count("instance ") == 2
