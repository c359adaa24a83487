"""The simulator oracle: exact predictions, source env untouched, CEM on it reaches."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from planning.harness.agents import OracleAgent
from planning.harness.oracle import SimOracleDynamics, oracle_energy
from planning.planners.cem import CEMConfig, CEMPlanner


@pytest.fixture
def reach_env():
    env = gym.make(envs.TASKS["reach"], image_size=32)
    yield env
    env.close()


def _synced_oracle(env) -> SimOracleDynamics:
    oracle = SimOracleDynamics.like(env)
    oracle.reset(env.unwrapped.task_id)
    oracle.check_same_instance(env)
    oracle.sync(env)
    return oracle


def test_rollout_predicts_the_real_steps_and_leaves_the_source_untouched(reach_env):
    reach_env.reset(options={"task_id": 2})
    reach_env.step(np.array([0.02, 0.0, 0.01, 0, 0, 0, 0], np.float32))  # a target is set now
    before = reach_env.unwrapped.get_sim_state().copy()
    oracle = _synced_oracle(reach_env)
    z = oracle.latent()
    rng = np.random.default_rng(0)
    acts = rng.uniform(-0.05, 0.05, size=(1, 3, 2, 7)).astype(np.float32)
    acts[..., 3:6] = 0.0
    pred = oracle.rollout(z, torch.zeros(1, 7), torch.from_numpy(acts))
    assert pred.shape == (1, 3, 2, 1, 1) and pred.dtype == torch.float64
    np.testing.assert_array_equal(reach_env.unwrapped.get_sim_state(), before)
    for h in range(2):  # executing sample 1 in the real env gives exactly the predicted distances
        _, _, _, _, info = reach_env.step(acts[0, 1, h])
        assert info["task_distance"] == pytest.approx(float(pred[0, 1, h, 0, 0]), abs=1e-9)
    oracle.close()


def test_cem_on_the_oracle_moves_toward_the_reach_goal(reach_env):
    _, info = reach_env.reset(options={"task_id": 0})
    d0 = info["task_distance"]
    oracle = _synced_oracle(reach_env)
    z = oracle.latent()
    planner = CEMPlanner(CEMConfig(samples=32, iterations=3, top_k=8))
    res = planner.plan(oracle, z, torch.zeros(1, 7), oracle.goal_latent(z), oracle_energy)
    _, _, _, _, info = reach_env.step(res.actions[0, 0].numpy())
    # goals lie 8-20 cm away and one step moves up to ~8.7 cm: a good plan gains > 3 cm
    assert d0 - info["task_distance"] > 0.03
    assert float(res.energy[0]) == pytest.approx(info["task_distance"], abs=1e-9)
    oracle.close()


def test_shadow_of_another_instance_is_refused(reach_env):
    reach_env.reset(options={"task_id": 1})
    oracle = SimOracleDynamics.like(reach_env)
    oracle.reset(task_id=4)
    with pytest.raises(ValueError, match="another task instance"):
        oracle.check_same_instance(reach_env)
    oracle.close()


def test_oracle_agent_reaches_and_needs_a_task_id(reach_env):
    agent = OracleAgent(CEMPlanner(CEMConfig(samples=24, iterations=2, top_k=6)))
    obs, info = reach_env.reset(options={"task_id": 3})
    agent.reset(reach_env, obs, info)
    for _ in range(6):
        action, seconds, distance = agent.act(obs, info)
        assert action.shape == (7,) and seconds > 0 and np.all(action[3:6] == 0)
        assert distance == pytest.approx(info["task_distance"])  # cost of the current scene
        obs, _, _, _, info = reach_env.step(action)
        if info["is_success"]:
            break
    assert info["is_success"]
    obs, info = reach_env.reset(seed=5)
    with pytest.raises(ValueError, match="task_id"):
        agent.reset(reach_env, obs, info)
    agent.close()


def test_oracle_energy_and_rollout_check_shapes(reach_env):
    reach_env.reset(options={"task_id": 0})
    oracle = _synced_oracle(reach_env)
    with pytest.raises(ValueError, match=r"\(B,S,H,1,1\)"):
        oracle_energy(torch.zeros(1, 2, 1, 4, 8), torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match="z_context"):
        oracle.rollout(torch.zeros(1, 1, 5), torch.zeros(1, 7), torch.zeros(1, 2, 1, 7))
    assert oracle.encode(torch.zeros(3, 8, 8, 3), torch.zeros(3, 7)).shape == (
        3, 1, oracle.latent_dim,
    )  # fmt: skip
    oracle.close()
