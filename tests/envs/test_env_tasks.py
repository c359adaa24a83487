"""The wm/* gymnasium envs: API, determinism, goal images, clipping, success at the goal."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.experts import make_expert
from envs.rotations import apply_delta

TASK_IDS = list(envs.TASKS.values())


@pytest.fixture(scope="module", params=TASK_IDS)
def env(request):
    e = gym.make(request.param, disable_env_checker=True)
    yield e
    e.close()


def test_registry_and_time_limits():
    assert set(envs.TASKS) == {"reach", "reach_with_object", "grasp", "pick_place"}
    for name, env_id in envs.TASKS.items():
        assert gym.spec(env_id).max_episode_steps == envs.MAX_EPISODE_STEPS[name]


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_check_env(env_id):
    e = gym.make(env_id, disable_env_checker=True)
    check_env(e.unwrapped, skip_render_check=True)
    e.close()


def test_same_seed_same_state_and_task_id_instances(env):
    u = env.unwrapped
    env.reset(seed=7)
    a = u.get_sim_state()
    env.reset(seed=8)
    b = u.get_sim_state()
    env.reset(seed=7)
    np.testing.assert_array_equal(a, u.get_sim_state())
    assert not np.array_equal(a, b)
    _, info_a = env.reset(seed=1, options={"task_id": 3})
    c = u.get_sim_state()
    _, info_b = env.reset(seed=2, options={"task_id": 3})
    np.testing.assert_array_equal(c, u.get_sim_state())
    np.testing.assert_array_equal(info_a["goal_rgb"], info_b["goal_rgb"])
    with pytest.raises(ValueError, match="task_id"):
        env.reset(options={"task_id": u.cfg.num_eval_instances})


def test_goal_images_are_renders_of_successful_goal_states(env):
    u = env.unwrapped
    obs, info = env.reset(seed=11)
    start = u.get_sim_state()
    subgoals = info["subgoal_rgbs"]
    assert len(subgoals) == {"pick_place": 5, "grasp": 4}.get(u.task_name, 1)
    assert len(u.goal_sim_states) == len(subgoals)
    np.testing.assert_array_equal(subgoals[-1], info["goal_rgb"])
    for rgb, state in zip(subgoals, u.goal_sim_states, strict=True):
        assert rgb.shape == obs["rgb"].shape and rgb.dtype == np.uint8
        u.set_sim_state(state)
        np.testing.assert_array_equal(u.render_rgb(), rgb)
    # the final goal configuration satisfies the task and its EE matches goal_state
    u.set_sim_state(u.goal_sim_states[-1])
    assert u._is_success()
    np.testing.assert_allclose(u.ee_state()[:3], info["goal_state"][:3], atol=2e-3)
    u.set_sim_state(start)
    assert not u._is_success()
    assert not np.array_equal(u.render_rgb(), info["goal_rgb"])
    for a, b in itertools.pairwise(subgoals):  # each sub-goal image shows a new scene
        assert not np.array_equal(a, b)


def test_action_clipping_is_reported():
    env = gym.make("wm/Reach-v0", disable_env_checker=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.3, -0.3, 0.0, 0.0, 0.0, 0.0, 5.0]))
    np.testing.assert_allclose(info["applied_action"][[0, 1, 6]], [0.05, -0.05, 1.0], atol=1e-3)
    assert info["ee_state"][6] == 1.0
    # pushing down into the workspace floor: the applied dz shrinks to what is allowed
    z_low = env.unwrapped.cfg.workspace_low[2]
    for _ in range(12):
        state = env.unwrapped.ee_state()
        _, _, _, _, info = env.step(np.array([0.0, 0.0, -0.05, 0.0, 0.0, 0.0, 0.0]))
        target = apply_delta(state, info["applied_action"].astype(np.float64))
        assert target[2] >= z_low - 1e-4
    assert info["applied_action"][2] > -0.01
    assert abs(info["ee_state"][2] - z_low) < 5e-3
    with pytest.raises(ValueError, match="action"):
        env.step(np.full(7, np.nan))
    env.close()


def test_observation_and_info_contents(env):
    obs, info = env.reset(seed=2)
    assert env.observation_space.contains(obs)
    assert obs["state"].dtype == np.float32 and obs["rgb"].shape == (64, 64, 3)
    for key in (
        "goal_rgb",
        "subgoal_rgbs",
        "is_success",
        "task",
        "ee_state",
        "goal_state",
        "applied_action",
    ):
        assert key in info
    if env.unwrapped.task_name != "reach":
        assert {"object_pos", "object_held", "goal_object_pos", "object_name"} <= set(info)
    assert info["task_distance"] == pytest.approx(env.unwrapped.task_distance())
    assert info["task_distance"] > 0.0


def test_reach_with_object_starts_holding_the_object():
    env = gym.make("wm/ReachWithObject-v0", disable_env_checker=True)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        for _ in range(4):
            obs, *_, info = env.step(np.zeros(7))
        assert info["object_held"]
        assert obs["state"][6] == 1.0
    env.close()


def test_wrist_camera_and_high_fidelity_options():
    env = gym.make(
        "wm/Grasp-v0",
        image_size=48,
        wrist_camera=True,
        high_fidelity=True,
        disable_env_checker=True,
    )
    obs, info = env.reset(seed=0)
    assert obs["wrist_rgb"].shape == (48, 48, 3) and info["goal_rgb"].shape == (48, 48, 3)
    assert obs["wrist_rgb"].std() > 1.0 and obs["rgb"].std() > 1.0
    env.close()
    with pytest.raises(ValueError, match="EnvConfig"):
        gym.make("wm/Reach-v0", no_such_field=1, disable_env_checker=True)
    with pytest.raises(ValueError, match="image_size"):
        gym.make("wm/Reach-v0", image_size=4, disable_env_checker=True)


def test_pick_place_success_needs_a_pick_not_a_drag():
    env = gym.make("wm/PickPlace-v0", disable_env_checker=True)
    _, info = env.reset(seed=5)
    u = env.unwrapped
    assert info["picked"] is False
    placed = u.goal_sim_states[-1].copy()
    u.set_sim_state(placed)
    assert u.picked and u._is_success()
    placed[-1] = 0.0  # the same scene, but the object never left the table: a drag
    u.set_sim_state(placed)
    assert not u.picked and not u._is_success()
    assert u.task_distance() >= 0.5  # the oracle's cost prefers any picked state
    with pytest.raises(ValueError, match="sim state"):
        u.set_sim_state(placed[:-2])
    # the scripted expert picks the object up on the way: the bit flips during the episode
    env.reset(seed=5)
    expert = make_expert(env, mode="expert")
    obs, info = env.reset(seed=5)
    picked_at = None
    for t in range(60):
        obs, _, _, _, info = env.step(expert.act(obs, info))
        if info["picked"] and picked_at is None:
            picked_at = t
            assert info["object_held"]
    assert picked_at is not None and info["is_success"]
    env.close()


def test_grasp_closes_on_the_object_before_lifting():
    env = gym.make("wm/Grasp-v0", disable_env_checker=True)
    _, info = env.reset(seed=5)
    u = env.unwrapped
    closed, lifted = info["subgoal_states"][2:]
    np.testing.assert_allclose(closed[:3], info["object_pos"], atol=1e-3)
    assert closed[6] == lifted[6] == 1.0
    u.set_sim_state(u.goal_sim_states[2])  # rendered closed on the object, still on the table
    assert u.object_held(u.object_name) and not u._is_success()
    np.testing.assert_allclose(u.object_pose(u.object_name)[0], info["object_pos"], atol=5e-3)
    env.close()


@pytest.mark.parametrize("env_id", ["wm/Grasp-v0", "wm/PickPlace-v0"])
def test_approach_subgoals_hover_then_reach_the_object_open(env_id):
    env = gym.make(env_id, disable_env_checker=True)
    _, info = env.reset(seed=3)
    u = env.unwrapped
    obj = info["object_pos"]
    hover, at_object = info["subgoal_states"][:2]
    np.testing.assert_allclose(hover[:3], obj + np.array([0.0, 0.0, 0.08]), atol=1e-3)
    np.testing.assert_allclose(at_object[:3], obj, atol=1e-3)
    assert hover[6] == at_object[6] == 0.0  # open
    for sim_state, ee in zip(u.goal_sim_states[:2], (hover, at_object), strict=True):
        u.set_sim_state(sim_state)  # rendered poses: EE where asked, object untouched
        np.testing.assert_allclose(u.ee_state()[:3], ee[:3], atol=0.01)
        np.testing.assert_allclose(u.object_pose(u.object_name)[0], obj, atol=2e-3)
    published = gym.make(env_id, approach_subgoals=False, disable_env_checker=True)
    _, info_p = published.reset(seed=3)
    n = len(info["subgoal_rgbs"])
    assert len(info_p["subgoal_rgbs"]) == n - (3 if env_id == "wm/Grasp-v0" else 2)
    np.testing.assert_array_equal(info_p["goal_rgb"], info["goal_rgb"])
    env.close()
    published.close()
