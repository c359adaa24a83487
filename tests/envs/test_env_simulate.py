"""``simulate`` is the physics of ``step`` without rendering (used by the oracle planner)."""

import gymnasium as gym
import numpy as np
import pytest

import envs


@pytest.mark.parametrize("task", ["reach", "pick_place"])
def test_simulate_matches_step(task):
    env = gym.make(envs.TASKS[task], image_size=64).unwrapped
    env.reset(seed=3)
    start = env.get_sim_state()
    action = np.array([0.03, -0.02, -0.04, 0.0, 0.0, 0.0, 0.5], dtype=np.float32)
    _, _, _, _, info = env.step(action)
    after_step, dist_step = env.get_sim_state(), env.task_distance()
    env.set_sim_state(start)
    env._target = None
    applied = env.simulate(action)
    np.testing.assert_allclose(env.get_sim_state(), after_step, atol=1e-9)
    np.testing.assert_allclose(applied, info["applied_action"], atol=1e-6)
    assert env.task_distance() == pytest.approx(dist_step)
    with pytest.raises(ValueError, match="finite"):
        env.simulate(np.full(7, np.nan))
    env.close()
