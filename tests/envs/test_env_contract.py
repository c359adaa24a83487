"""envs.contract: our tasks meet the env contract; an env missing any required piece gets a
problem naming it; env ids resolve; wm-eval's layout check names each difference."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete

import envs
from envs.contract import (
    EnvContractError,
    check_env,
    episode_steps,
    is_project_env,
    read_contract,
    require_env,
    resolve_env_id,
)
from envs.fake_env import FULL_ENV_ID

IMAGE = Box(0, 255, (32, 32, 3), np.uint8)


class TinyEnv(gym.Env):
    """The smallest env meeting the contract: one 32 px camera, 2-D state, per-dim deltas.
    ``edit_obs`` / ``edit_reset_info`` / ``edit_step_info`` break what it returns."""

    def __init__(self) -> None:
        self.metadata = {"render_fps": 5, "cameras": ["top"], "action_kind": "delta"}
        self.action_space = Box(-0.1, 0.1, (2,), np.float32)
        self.observation_space = Dict({"rgb": IMAGE, "state": Box(-1, 1, (2,), np.float32)})
        self.edit_obs: Callable[[dict], None] = lambda obs: None
        self.edit_reset_info: Callable[[dict], None] = lambda info: None
        self.edit_step_info: Callable[[dict], None] = lambda info: None
        self.state = np.zeros(2, np.float32)

    def _obs(self) -> dict:
        obs = {"rgb": np.zeros((32, 32, 3), np.uint8), "state": self.state.copy()}
        self.edit_obs(obs)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.zeros(2, np.float32)
        info = {"goal_rgb": np.zeros((32, 32, 3), np.uint8), "is_success": False}
        self.edit_reset_info(info)
        return self._obs(), info

    def step(self, action):
        self.state = self.state + np.clip(action, -0.1, 0.1).astype(np.float32)
        info = {"is_success": False}
        self.edit_step_info(info)
        return self._obs(), 0.0, False, False, info


def _set(env, **metadata) -> None:
    env.metadata = {**env.metadata, **metadata}


def _drop(key: str) -> Callable[[dict], None]:
    return lambda d: d.pop(key)


def _raise(env) -> None:
    def fail(**_):
        raise RuntimeError("no robot connected")

    env.reset = fail


BROKEN = {
    "no rate": (lambda e: e.metadata.pop("render_fps"), "metadata['render_fps'] is None"),
    "zero rate": (lambda e: _set(e, render_fps=0), "metadata['render_fps'] is 0"),
    "no cameras": (lambda e: e.metadata.pop("cameras"), "metadata['cameras'] is None"),
    "bad camera name": (lambda e: _set(e, cameras=["a/b"]), "metadata['cameras']"),
    "repeated views": (lambda e: _set(e, views=["top", "top"]), "metadata['views']"),
    "no action kind": (lambda e: e.metadata.pop("action_kind"), "metadata['action_kind']"),
    "unknown action kind": (lambda e: _set(e, action_kind="torque"), "'torque': expected one"),
    "state names": (lambda e: _set(e, state_names=["x"]), "metadata['state_names']"),
    "action names": (lambda e: _set(e, action_names="ab"), "metadata['action_names']"),
    "discrete actions": (
        lambda e: setattr(e, "action_space", Discrete(3)),
        "action_space is Discrete(3)",
    ),
    "unbounded actions": (
        lambda e: setattr(e, "action_space", Box(-np.inf, np.inf, (2,))),
        "action_space bounds",
    ),
    "no state space": (
        lambda e: setattr(e, "observation_space", Dict({"rgb": IMAGE})),
        "observation_space['state']",
    ),
    "no image space": (
        lambda e: setattr(e, "observation_space", Dict({"state": Box(-1, 1, (2,))})),
        "observation_space['rgb']",
    ),
    "ee_delta on 2 dims": (lambda e: _set(e, action_kind="ee_delta"), "'ee_delta' needs the 7-D"),
    "delta on unequal dims": (
        lambda e: setattr(e, "action_space", Box(-1, 1, (3,))),
        "needs state_dim == action_dim",
    ),
    "no state": (lambda e: setattr(e, "edit_obs", _drop("state")), "reset obs['state']"),
    "wrong state size": (
        lambda e: setattr(e, "edit_obs", lambda o: o.update(state=np.zeros(3, np.float32))),
        "reset obs['state'] is float32 (3,): expected 2",
    ),
    "no image": (lambda e: setattr(e, "edit_obs", _drop("rgb")), "reset obs['rgb'] is nothing"),
    "float image": (
        lambda e: setattr(e, "edit_obs", lambda o: o.update(rgb=o["rgb"] / 255.0)),
        "reset obs['rgb'] is float64",
    ),
    "second camera's image": (
        lambda e: _set(e, cameras=["top", "side"]),
        "obs['side_rgb'] (camera 'side')",
    ),
    "several views": (
        lambda e: _set(e, views=["top", "side"]),
        "obs['rgb'] is uint8 (32, 32, 3): expected",
    ),
    "no goal image": (
        lambda e: setattr(e, "edit_reset_info", _drop("goal_rgb")),
        "reset info['goal_rgb']",
    ),
    "no success at reset": (
        lambda e: setattr(e, "edit_reset_info", _drop("is_success")),
        "reset info['is_success']",
    ),
    "no success after a step": (
        lambda e: setattr(e, "edit_step_info", _drop("is_success")),
        "step info['is_success']",
    ),
    "applied action": (
        lambda e: setattr(e, "edit_step_info", lambda i: i.update(applied_action=np.zeros(7))),
        "step info['applied_action'] has shape (7,)",
    ),
    "reset fails": (_raise, "env.reset(seed=0) raised RuntimeError: no robot connected"),
}


def test_the_smallest_env_meets_the_contract():
    assert check_env(TinyEnv()) == []
    contract = read_contract(TinyEnv())
    assert (contract.cameras, contract.views, contract.fps) == (("top",), ("top",), 5.0)
    assert (contract.state_dim, contract.action_dim, contract.image_size) == (2, 2, 32)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_missing_piece_is_named(case):
    env = TinyEnv()
    breaks, expected = BROKEN[case]
    breaks(env)
    problems = check_env(env)
    assert any(expected in p for p in problems), problems


def test_collection_needs_no_goal_image_but_one_camera_in_rgb():
    env = TinyEnv()
    env.edit_reset_info = _drop("goal_rgb")
    assert check_env(env, evaluate=False) == []
    _set(env, cameras=["top", "side"], views=["top", "side"])
    assert any(
        "recording needs the first camera 'top' alone" in p for p in check_env(env, evaluate=False)
    )


def test_require_env_lists_every_problem_with_the_env_id():
    gym.register("TinyBroken-v0", entry_point=TinyEnv)
    try:
        env = gym.make("TinyBroken-v0", disable_env_checker=True)
        env.unwrapped.metadata = {"render_fps": 5}
        with pytest.raises(EnvContractError, match="env TinyBroken-v0 does not meet") as err:
            require_env(env)
        assert "metadata['cameras']" in str(err.value)
        assert "metadata['action_kind']" in str(err.value)
    finally:
        del gym.registry["TinyBroken-v0"]


@pytest.mark.parametrize("task", sorted(envs.TASKS))
def test_our_tasks_meet_the_contract(task):
    env = gym.make(envs.TASKS[task], image_size=32, wrist_camera=True)
    assert check_env(env) == [] and check_env(env, evaluate=False) == []
    contract = read_contract(env)
    assert (contract.cameras, contract.views, contract.action_kind) == (
        ("exterior", "wrist"), ("exterior",), "ee_delta",
    )  # fmt: skip
    assert (contract.fps, contract.state_dim, contract.action_dim) == (4.0, 7, 7)
    env.close()


def test_a_mosaic_env_meets_the_evaluation_contract_only():
    env = gym.make(envs.TASKS["reach"], image_size=32, views=("exterior", "wrist"))
    assert check_env(env) == []
    assert any("metadata['views']" in p for p in check_env(env, evaluate=False))
    env.close()


def test_env_ids_resolve_and_our_envs_are_known():
    assert resolve_env_id("grasp") == "wm/Grasp-v0"
    assert resolve_env_id("Reacher-v5") == "Reacher-v5"
    with pytest.raises(ValueError, match="neither a task name"):
        resolve_env_id("grap")
    with pytest.raises(ValueError, match="neither a task name"):
        resolve_env_id("no_such_module:Thing-v0")
    assert is_project_env("reach") and is_project_env("wm/PickPlace-v0")
    assert is_project_env(FULL_ENV_ID) and not is_project_env("Reacher-v5")
    assert episode_steps("pick_place") == 60 and episode_steps("Reacher-v5") == 50


def test_eval_names_each_layout_difference_of_model_and_env():
    from planning.harness.agents import layout_mismatches
    from worldmodel.models.layout import Layout

    class Model:  # a world model's recorded layout (WorldModel.layout)
        layout = Layout(2, 2, ("a", "b"), ("da", "db"), "delta", (-1, -1), (1, 1), fps=10.0)

    env = gym.make(envs.TASKS["reach"], image_size=32)
    assert layout_mismatches(Model(), read_contract(env)) == [
        "state_dim 2 vs 7", "action_dim 2 vs 7", "action_kind 'delta' vs 'ee_delta'", "fps 10 vs 4",
    ]  # fmt: skip
    assert layout_mismatches(Model(), read_contract(TinyEnv())) == ["fps 10 vs 5"]
    env.close()
