"""An env that is not ours (gymnasium's MuJoCo Reacher in pixels, demos/foreign_env/reacher.py)
through the whole pipeline: wm-collect -> wm-cache -> wm-train -> wm-eval, at toy sizes, and
wm-demo, through the functions the console scripts call, with no project code written for it."""

from __future__ import annotations

import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from demos.foreign_env.reacher import PixelReacher
from envs.collection.collect import collect
from envs.collection.config import CollectConfig
from envs.contract import check_env
from planning.harness.agents import check_camera
from planning.harness.demo import run_demo
from planning.harness.evaluate import EvalConfig, evaluate
from planning.planners.cem import CEMConfig
from worldmodel.data.episodes import open_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.training.cache import CacheConfig, build_cache
from worldmodel.training.train import train
from worldmodel.training.train_config import TrainConfig
from worldmodel.world_model import WorldModel

REACHER = "demos.foreign_env.reacher:PixelReacher-v0"  # the module registers the id


def test_the_wrapper_meets_the_contract():
    env = gym.make(REACHER)
    assert check_env(env) == []
    env.close()


def test_collect_cache_train_eval_on_a_foreign_env(tmp_path):
    data, features, run = tmp_path / "data", tmp_path / "features", tmp_path / "run"
    collect(
        CollectConfig(
            env=REACHER, episodes=4, max_steps=7, out_dir=str(data), progress=False,
            expert_factory="envs.collection.recording:random_policy",
        )
    )  # fmt: skip
    dataset = open_dataset(data)
    meta = dataset.meta
    assert meta.camera_names == ("top",) and (meta.state_dim, meta.action_dim) == (2, 2)
    assert meta.action_kind == "delta" and meta.fps == 10.0 and meta.image_size == 64
    assert meta.action_low == (-0.25, -0.25) and meta.action_high == (0.25, 0.25)
    steps = dataset.steps(0)  # the env reports no applied_action: the clipped action sent
    np.testing.assert_allclose(np.diff(steps.state, axis=0), steps.action[:-1], atol=1e-5)

    torch.manual_seed(0)  # a random tiny encoder: the pipeline, not the quality, is tested
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "encoder")
    build_cache(
        CacheConfig(
            data_root=str(data), encoder_dir=str(tmp_path / "encoder"),
            cache_dir=str(features), views="top", device="cpu",
        )
    )  # fmt: skip
    train(
        TrainConfig(
            data_root=str(data), cache_dir=str(features), encoder_dir=str(tmp_path / "encoder"),
            out_dir=str(run), views="top", predictor="tiny", clip_len=4, rollout_steps=2,
            batch_size=4, max_steps=2, warmup_steps=1, decay_steps=1, eval_every=2,
            eval_batches=1, ckpt_every=2, val_fraction=0.25, device="cpu", progress=False,
        )
    )  # fmt: skip
    model = WorldModel.load(run / "world_model")
    assert model.views == ("top",)
    assert (model.layout.state_dim, model.layout.action_kind, model.layout.fps) == (2, "delta", 10)

    cfg = EvalConfig(
        tasks=(REACHER,), methods=("random", "wm_cem"), episodes=1, max_steps={REACHER: 3},
        model=str(run / "world_model"), out_dir=str(tmp_path / "eval"), video_every=1,
        cem=CEMConfig(samples=8, iterations=1, top_k=2),
    )  # fmt: skip
    results = evaluate(cfg)
    assert [(r.task, r.method, r.steps) for r in results if not r.success] in (
        [(REACHER, "random", 3), (REACHER, "wm_cem", 3)],
        [(REACHER, "random", 3)],
        [(REACHER, "wm_cem", 3)],
        [],
    )
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["rows"]
    assert [(r["task"], r["method"], r["episodes"]) for r in rows] == [
        (REACHER, "random", 1), (REACHER, "wm_cem", 1),
    ]  # fmt: skip
    assert len(list((tmp_path / "eval" / "videos").glob("*.mp4"))) == 2
    summary = run_demo(run / "world_model", [REACHER], 1, 8, 1, tmp_path / "demo")
    assert len(summary[REACHER][1]) in range(1, 21)  # planned actions (20-step time limit)
    assert len(list((tmp_path / "demo").glob("*.mp4"))) == 1

    # Before the first action, wm-eval refuses the model on an env of another rate, and on
    # one of our tasks (other views and layout), naming the differences.
    with pytest.raises(ValueError, match=r"fps 10 vs 5"):
        evaluate(replace(cfg, tasks=(SLOW,), max_steps={SLOW: 3}, out_dir=str(tmp_path / "slow")))
    assert not (tmp_path / "slow" / "episodes.jsonl").exists()
    reach = gym.make("wm/Reach-v0", image_size=32)
    with pytest.raises(ValueError, match=r"views \('top',\) side by side, the env renders"):
        check_camera(model, reach)
    reach.close()


def _slow_reacher(**kwargs) -> gym.Env:
    """The reacher declaring 5 control steps a second instead of its 10."""
    env = PixelReacher(**kwargs)
    env.metadata = {**env.metadata, "render_fps": 5.0}
    return env


SLOW = "SlowPixelReacher-v0"
if SLOW not in gym.registry:
    gym.register(SLOW, entry_point=_slow_reacher, max_episode_steps=20)
