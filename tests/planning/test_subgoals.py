"""Sub-goal latents from training trajectories (planning.subgoals) and MPC on a latent schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planning.mpc import MPCConfig, MPCController
from planning.planners import make_planner
from planning.subgoals import TrajectoryLibrary
from planning.toy import ToyDynamics, blank_images

START = np.array([0.40, -0.10, 0.30, 0.0, 0.0, 0.0, 0.0], np.float32)
FAR = np.array([0.60, 0.12, 0.22, 0.0, 0.0, 0.0, 0.0], np.float32)  # 30 cm away


def _walk(toy, a, b, n=12):
    """Toy latents (T, N, D) along the straight line of states from a to b."""
    states = torch.as_tensor(np.linspace(a, b, n), dtype=torch.float32)
    return toy.encode(blank_images(n), states), states


@pytest.fixture(scope="module")
def library():
    toy = ToyDynamics()
    rng = np.random.default_rng(0)
    others = [_walk(toy, START + rng.normal(0, 0.05, 7) * [1, 1, 1, 0, 0, 0, 0],
                    START + rng.normal(0, 0.05, 7) * [1, 1, 1, 0, 0, 0, 0])[0]
              for _ in range(3)]  # fmt: skip
    towards, _ = _walk(toy, START, FAR)
    return toy, TrajectoryLibrary([*others[:2], towards, others[2]])


def test_proposal_follows_the_episode_that_reached_the_goal(library):
    toy, lib = library
    z_goal = toy.encode(blank_images(1), torch.as_tensor(FAR[None]))[0]
    z_now = toy.encode(blank_images(1), torch.as_tensor(START[None]))[0]
    prop = lib.propose(z_goal, z_now, num_subgoals=4)
    assert prop.episode == 2 and prop.frames[-1] == 11 and prop.goal_distance < 1e-5
    assert list(prop.frames) == sorted(prop.frames) and len(prop.latents) == 4
    torch.testing.assert_close(prop.latents[-1], z_goal)
    assert lib.propose(z_goal, z_now, 1).latents.shape == (1, *z_goal.shape)


def test_mpc_reaches_a_far_goal_through_the_proposed_latents(library):
    """The flat toy planner with a 1-step horizon and the proposal's schedule (budgets)."""
    toy, lib = library
    z_goal = toy.encode(blank_images(1), torch.as_tensor(FAR[None]))[0]
    z_now = toy.encode(blank_images(1), torch.as_tensor(START[None]))[0]
    prop = lib.propose(z_goal, z_now, num_subgoals=3)
    mpc = MPCController(toy, make_planner("cem", samples=128, iterations=4, top_k=12),
                        cfg=MPCConfig())  # fmt: skip
    mpc.set_goal_latents(prop.latents, budgets=[4, 4, 12])
    state = START.copy()
    for _ in range(20):
        action, _ = mpc.act(np.zeros((8, 8, 3), np.uint8), state)
        state = state + np.r_[action[:6], 0.0].astype(np.float32)  # the toy's own integration
    assert mpc.subgoal_index == 2
    assert np.linalg.norm(state[:3] - FAR[:3]) < 0.03


@pytest.mark.parametrize(
    "latents,match",
    [([], "at least one episode"), ([torch.zeros(1, 4, 8)], "T>=2"),
     ([torch.zeros(3, 4, 8), torch.zeros(3, 5, 8)], "one shape")],
)  # fmt: skip
def test_bad_libraries(latents, match):
    with pytest.raises(ValueError, match=match):
        TrajectoryLibrary(latents)


def test_set_goal_latents_refuses_bad_schedules():
    mpc = MPCController(ToyDynamics(), make_planner("cem", samples=8, top_k=2, iterations=1))
    with pytest.raises(ValueError, match="NaN or inf"):
        mpc.set_goal_latents(torch.full((2, 4, 64), float("nan")))
    with pytest.raises(ValueError, match="need 2 budgets"):
        mpc.set_goal_latents(torch.zeros(2, 4, 64), budgets=[3])


def test_from_features_pools_like_the_world_model():
    from worldmodel.frozen_encoder import FrozenEncoder
    from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
    from worldmodel.models.predictor import ACPredictor, PredictorConfig
    from worldmodel.world_model import WorldModel

    torch.manual_seed(0)
    enc = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    pred = ACPredictor(PredictorConfig(encoder_dim=96, width=48, depth=1, num_heads=2,
                                       mlp_dim=64, input_grid=(8, 8), pool_kernel=2))  # fmt: skip
    wm = WorldModel(enc, pred)
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    lib = TrajectoryLibrary.from_features(wm, [enc.encode_frames(frames).numpy()])
    z = wm.encode(torch.from_numpy(frames), torch.zeros(3, 7))
    torch.testing.assert_close(lib.latents[0], z, atol=1e-5, rtol=1e-5)
