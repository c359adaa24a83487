"""envs.experts: scripted experts solve every task; noisy / explore modes behave differently."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.experts import ExpertConfig, make_expert


def _run(env, expert, seed: int, options=None) -> tuple[bool, list[np.ndarray], list[dict]]:
    obs, info = env.reset(seed=seed, options=options)
    expert.reset()
    actions, infos = [], []
    for _ in range(env.spec.max_episode_steps):
        action = expert.act(obs, info)
        assert env.action_space.contains(action)
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        infos.append(info)
        if info["is_success"] or terminated or truncated:
            break
    return bool(info["is_success"]), actions, infos


@pytest.mark.parametrize("task", list(envs.TASKS))
def test_expert_solves_a_few_instances(task):
    env = gym.make(envs.TASKS[task], disable_env_checker=True)
    expert = make_expert(env, "expert", np.random.default_rng(0))
    for task_id in (0, 1):
        success, actions, _ = _run(env, expert, seed=0, options={"task_id": task_id})
        assert success, f"{task} instance {task_id} not solved in {len(actions)} steps"
    env.close()


def test_modes_differ_and_are_reproducible():
    env = gym.make("wm/Grasp-v0", disable_env_checker=True)
    runs = {}
    for mode in ("expert", "noisy", "explore"):
        runs[mode] = _run(env, make_expert(env, mode, np.random.default_rng(5)), seed=3)[1]
    again = _run(env, make_expert(env, "explore", np.random.default_rng(5)), seed=3)[1]
    np.testing.assert_array_equal(np.array(runs["explore"]), np.array(again))
    assert not np.allclose(runs["expert"][0], runs["noisy"][0])
    # the clean expert holds the nominal orientation; exploration rotates and toggles the gripper
    expert_rot = np.abs(np.array(runs["expert"])[:, 3:6]).max()
    explore = np.array(runs["explore"])
    assert expert_rot < 0.02 and np.abs(explore[:, 3:6]).max() > 0.05
    env.close()


def test_explore_mode_recovers_from_failed_grasps():
    """Forced premature closes: the expert must open again and still lift the object."""
    env = gym.make("wm/Grasp-v0", disable_env_checker=True)
    cfg = ExpertConfig(burst_prob=0.0, premature_close_prob=0.25, drop_prob=0.0)
    solved, reopened = 0, 0
    for seed in range(3):
        expert = make_expert(env, "explore", np.random.default_rng(seed), cfg)
        success, _, infos = _run(env, expert, seed=seed)
        grip = np.array([i["ee_state"][6] for i in infos])
        reopened += int(np.any((grip[:-1] > 0.5) & (grip[1:] < 0.5)))
        solved += success
    assert reopened >= 1 and solved >= 2
    env.close()


def test_practice_mode_toggles_the_gripper_with_the_arm_still():
    env = gym.make("wm/PickPlace-v0", disable_env_checker=True)
    expert = make_expert(env, "practice", np.random.default_rng(0))
    _, actions, infos = _run(env, expert, seed=2)
    a = np.array(actions)
    still = np.all(a[:, :6] == 0, axis=1)
    assert 0.3 < still.mean() < 0.7  # practice_toggle_prob 0.5
    assert np.all(np.abs(a[still, 6]) == 1.0)
    grip = np.array([i["ee_state"][6] for i in infos])
    before = np.concatenate([[0.0], grip[:-1]])  # the episode starts open
    # each toggle swings the gripper the other way: close when open, open when closed
    assert np.all(np.sign(a[still, 6]) == np.where(before[still] > 0.5, -1.0, 1.0))
    assert np.all(np.abs(grip[still] - before[still]) > 0.5)
    env.close()


def test_make_expert_validates_mode():
    env = gym.make("wm/Reach-v0", disable_env_checker=True)
    with pytest.raises(ValueError, match="mode"):
        make_expert(env, "random")
    with pytest.raises(ValueError):
        ExpertConfig(burst_prob=2.0)
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", list(envs.TASKS))
@pytest.mark.parametrize("mode", ["expert", "noisy"])
def test_expert_success_rate_over_50_seeds(task, mode):
    env = gym.make(envs.TASKS[task], disable_env_checker=True)
    expert = make_expert(env, mode, np.random.default_rng(123))
    successes = sum(_run(env, expert, seed=seed)[0] for seed in range(50))
    print(f"{task} {mode}: {successes}/50")
    assert successes >= (48 if mode == "expert" else 45)
    env.close()
