"""wm-collect: config validation, Hydra YAML, resume, determinism across workers, real env."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from envs.collection.collect import CollectConfig, collect, episode_plan
from envs.collection.config import config_from_dict
from envs.fake_env import FULL_ENV_ID, MAX_EPISODE_STEPS
from worldmodel.data import open_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fake_cfg(out, **kw) -> CollectConfig:
    base = dict(
        env=FULL_ENV_ID,
        expert_factory="envs.fake_env:make_expert",
        image_size=32,
        out_dir=str(out),
        progress=False,
    )
    return CollectConfig(**{**base, **kw})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("episodes", 0),
        ("workers", 0),
        ("image_size", 48),
        ("image_size", 8),
        ("max_steps", -1),
        ("explore_frac", 0.5),
        ("practice_frac", 0.1),
        ("start_method", "fork"),
        ("crf", 60),
        ("pix_fmt", "rgb24"),
        ("expert_factory", "nocolon"),
        ("env", ""),
        ("out_dir", ""),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        CollectConfig(**{field: value})


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['episodez'\]"):
        config_from_dict({"episodez": 3})


def test_yaml_overrides_to_typed_config():
    from envs.collection.config import RENAMED
    from worldmodel.config import compose, plain_defaults

    overrides = ["env=pick_place", "episodes=500", "image_size=128", "workers=2"]
    values = compose("collect", overrides, plain_defaults(CollectConfig), RENAMED)
    cfg = config_from_dict(values)
    assert (cfg.env, cfg.episodes, cfg.image_size, cfg.workers) == ("pick_place", 500, 128, 2)
    assert cfg.out_dir == "data/pick_place"
    defaults = CollectConfig()
    for f in dataclasses.fields(CollectConfig):  # the YAML restates the dataclass defaults
        if f.name not in ("env", "episodes", "image_size", "workers", "out_dir"):
            assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name


def test_episode_plan_is_deterministic_and_mixes_modes():
    cfg = CollectConfig(expert_frac=0.5, noisy_frac=0.3, explore_frac=0.2)
    plans = [episode_plan(cfg, i) for i in range(200)]
    assert plans == [episode_plan(cfg, i) for i in range(200)]
    assert len({seed for seed, _ in plans}) == 200
    modes = [m for _, m in plans]
    for mode, frac in (("expert", 0.5), ("noisy", 0.3), ("explore", 0.2)):
        assert abs(modes.count(mode) / 200 - frac) < 0.02
    assert plans[0][0] != episode_plan(dataclasses.replace(cfg, seed=1), 0)[0]
    mixed = CollectConfig(expert_frac=0.3, noisy_frac=0.3, explore_frac=0.2, practice_frac=0.2)
    modes = [episode_plan(mixed, i)[1] for i in range(200)]
    assert abs(modes.count("practice") / 200 - 0.2) < 0.02


def test_collect_then_resume_writes_only_missing(tmp_path):
    first = collect(fake_cfg(tmp_path, episodes=3))
    assert sorted(first.written) == [0, 1, 2] and first.skipped == 0
    assert first.frames == 3 * (MAX_EPISODE_STEPS + 1)
    ep_dir = tmp_path / "episodes"
    mtimes = {p.name: os.stat(p / "exterior.mp4").st_mtime_ns for p in ep_dir.iterdir()}
    stale = ep_dir / "ep_000003.4242.tmp"
    stale.mkdir()
    (stale / "exterior.mp4").write_bytes(b"half")
    second = collect(fake_cfg(tmp_path, episodes=5))
    assert sorted(second.written) == [3, 4] and second.skipped == 3
    assert not stale.exists()
    for name, mtime in mtimes.items():
        assert os.stat(ep_dir / name / "exterior.mp4").st_mtime_ns == mtime
    ds = open_dataset(tmp_path, verify_videos=True)
    assert ds.episode_names == [f"ep_{i:06d}" for i in range(5)]
    steps = ds.steps(4)
    assert int(steps.extra["episode_index"]) == 4
    assert str(steps.extra["expert_mode"]) == episode_plan(fake_cfg(tmp_path), 4)[1]
    assert int(steps.extra["seed"]) == episode_plan(fake_cfg(tmp_path), 4)[0]
    # applied actions lead from state t to state t+1 in the fake env (pure translation)
    np.testing.assert_allclose(
        steps.state[1:, :2] - steps.state[:-1, :2], steps.action[:-1, :2], atol=1e-6
    )
    assert collect(fake_cfg(tmp_path, episodes=5)).written == []


def test_resume_refuses_incompatible_dataset(tmp_path):
    collect(fake_cfg(tmp_path, episodes=1))
    from worldmodel.errors import DatasetError

    with pytest.raises(DatasetError, match="image_size"):
        collect(fake_cfg(tmp_path, episodes=2, image_size=64))


def test_parallel_workers_match_single_process(tmp_path):
    collect(fake_cfg(tmp_path / "one", episodes=4, wrist_camera=True))
    result = collect(
        fake_cfg(tmp_path / "two", episodes=4, workers=2, wrist_camera=True, start_method="spawn")
    )
    assert sorted(result.written) == [0, 1, 2, 3]
    one, two = open_dataset(tmp_path / "one"), open_dataset(tmp_path / "two")
    for i in range(4):
        np.testing.assert_array_equal(one.steps(i).state, two.steps(i).state)
        np.testing.assert_array_equal(one.steps(i).action, two.steps(i).action)
        assert two.read_clip(i, 0, 2, camera="wrist").frames.shape == (2, 32, 32, 3)


def test_bad_expert_factory_fails_early(tmp_path):
    bad = "envs.fake_env:no_such_function"
    with pytest.raises(ValueError, match=r"expert_factory .*no_such_function"):
        collect(fake_cfg(tmp_path, episodes=1, expert_factory=bad))


def test_worker_error_is_reported(tmp_path, monkeypatch):
    import envs.collection.collector as collector

    def broken(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(collector, "record_episode", broken)
    with pytest.raises(RuntimeError, match=r"episode 0(.|\n)*simulated crash"):
        collect(fake_cfg(tmp_path, episodes=1))
    assert not list((tmp_path / "episodes").glob("ep_*"))


def test_real_env_end_to_end(tmp_path):
    pytest.importorskip("envs.experts")
    cfg = CollectConfig(
        env="reach", episodes=2, image_size=32, max_steps=4, out_dir=str(tmp_path), progress=False
    )
    result = collect(cfg)
    assert sorted(result.written) == [0, 1] and result.frames == 10
    ds = open_dataset(tmp_path, verify_videos=True)
    assert ds.meta.env_id == "wm/Reach-v0" and ds.meta.fps == 4.0
    from envs import EnvConfig

    assert ds.meta.camera("exterior").fovy_deg == EnvConfig().camera_fovy_deg
    clip = ds.read_clip(1, 0, 5)
    assert clip.frames.shape == (5, 32, 32, 3) and clip.frames.std() > 5
    assert np.all(np.abs(clip.actions[:4, :3]) <= 0.05 + 1e-6) and not clip.actions[4].any()
    assert not np.allclose(clip.states[0], clip.states[-1])


def test_deprecated_out_is_accepted_with_a_warning_on_the_command_line():
    from envs.collection.config import RENAMED
    from worldmodel.config import compose, plain_defaults

    values = compose("collect", ["out=data/old"], plain_defaults(CollectConfig), RENAMED)
    with pytest.warns(DeprecationWarning, match="'out' is deprecated, use 'out_dir'"):
        cfg = config_from_dict(values)
    assert cfg.out_dir == "data/old"
