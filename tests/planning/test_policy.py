"""The goal-conditioned policy head (#25): files, wm-train-policy, PolicyController, wm-eval.

Everything runs on a tiny random world model (ViT nano encoder, a one-block predictor) saved in
a folder, an episode dataset written here whose recorded actions are a fixed function of the
state (an "expert" driving every dim toward a set point, so behaviour cloning has something
to learn), and the feature cache wm-cache makes of it with the model's encoder.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import planning.harness.evaluate as ev
from planning.harness.evaluate import EvalConfig
from planning.mpc import MPCConfig
from planning.planners.cem import CEMConfig
from planning.policy import PolicyController, load_policy
from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW
from worldmodel.data.steps import make_step_table
from worldmodel.data.synthetic import render_dot, synthetic_meta
from worldmodel.data.writer import EpisodeWriter
from worldmodel.errors import CheckpointError, DatasetError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.layout import Layout
from worldmodel.models.policy import POLICY_CONFIG, POLICY_WEIGHTS, GoalPolicy, PolicyConfig
from worldmodel.models.predictor import CPU_ACTION_SCALE, ACPredictor, PredictorConfig
from worldmodel.training.cache import CacheConfig, build_cache
from worldmodel.training.train_policy import Demonstrations, PolicyTrainConfig, train_policy
from worldmodel.world_model import WorldModel

TOKENS, DIM = 16, 96  # vit_nano_cpu's 8x8 grid of 96-D tokens, pooled 2x2
SET_POINT = np.array([0.5, 0.5, 0.2, 0.0, 0.0, 0.0, 0.5], np.float32)
GAIN = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 1.0], np.float32)
EPISODES, LENGTH = 12, 12
STATE_LOW = np.array([0.1, 0.1, 0.0, -0.5, -0.5, -0.5, 0.0], np.float32)
STATE_HIGH = np.array([0.9, 0.9, 0.4, 0.5, 0.5, 0.5, 1.0], np.float32)


def expert_action(states: np.ndarray) -> np.ndarray:
    """The recorded action: every dim driven toward SET_POINT (inside the action bounds)."""
    return (GAIN * (SET_POINT - states)).astype(np.float32)


def _write_dataset(root: Path, modes: list[str], success: list[bool], seed: int = 0) -> None:
    """Episodes of i.i.d. random states (the dot drawn where the state puts it) with the expert's
    action for each, the given ``expert_mode`` and success at the last frame."""
    meta = synthetic_meta(32)
    writer = EpisodeWriter(root, meta)
    rng = np.random.default_rng(seed)
    for index, (mode, ok) in enumerate(zip(modes, success, strict=True)):
        states = rng.uniform(STATE_LOW, STATE_HIGH, size=(LENGTH, 7)).astype(np.float32)
        is_success = np.zeros(LENGTH, bool)
        is_success[-1] = ok
        table = make_step_table(
            states,
            expert_action(states)[:-1],
            meta.fps,
            is_success=is_success,
            expert_mode=np.array(mode),
        )
        writer.write(index, {"exterior": render_dot(states, 32)}, table)


def _tiny_world_model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    encoder = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    predictor = ACPredictor(
        PredictorConfig(
            encoder_dim=DIM,
            width=24,
            depth=1,
            num_heads=2,
            mlp_dim=48,
            input_grid=(8, 8),
            pool_kernel=2,
            action_scale=CPU_ACTION_SCALE,
            predict_delta=True,
        )
    )
    return WorldModel(encoder, predictor)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and on a loaded 2-core machine two threads
    spin against each other (a 100x slowdown of the training steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demos(one_thread, tmp_path_factory) -> Path:
    """``model/`` (a tiny world model), ``ds/`` (12 expert episodes, every 3rd successful,
    modes expert/noisy alternating), ``features/`` (wm-cache of ds with the model's encoder),
    ``failed/`` + ``failed_features/`` (4 episodes, none successful)."""
    root = tmp_path_factory.mktemp("policy")
    _tiny_world_model().save(root / "model")
    modes = ["expert" if i % 2 == 0 else "noisy" for i in range(EPISODES)]
    _write_dataset(root / "ds", modes, [i % 3 == 0 for i in range(EPISODES)])
    _write_dataset(root / "failed", ["expert"] * 4, [False] * 4, seed=1)
    for data, features in (("ds", "features"), ("failed", "failed_features")):
        build_cache(
            CacheConfig(
                data_root=str(root / data),
                encoder_dir=str(root / "model" / "encoder"),
                cache_dir=str(root / features),
                batch_size=32,
                device="cpu",
            )
        )
    return root


@pytest.fixture(scope="module")
def model(demos) -> WorldModel:
    return WorldModel.load(demos / "model")


def _train_cfg(root: Path, out: Path, **kw) -> PolicyTrainConfig:
    base = dict(
        model=str(root / "model"),
        data_root=str(root / "ds"),
        cache_dir=str(root / "features"),
        out_dir=str(out),
        steps=40,
        batch_size=32,
        lr=3e-3,
        warmup_steps=5,
        proj=4,
        hidden=64,
        depth=2,
        dropout=0.1,
        val_fraction=0.25,
        eval_every=10,
        ckpt_every=10,
        final_goal_frac=0.5,
        hindsight_max=4,
        successful_only=True,
        seed=0,
    )
    return PolicyTrainConfig(**{**base, **kw})


def _read_log(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _latents(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, TOKENS, DIM, generator=gen),
        torch.randn(n, TOKENS, DIM, generator=gen),
        torch.rand(n, 7, generator=gen),
    )


def _policy(encoder: str = "", action_dim: int = 7, seed: int = 0) -> GoalPolicy:
    torch.manual_seed(seed)
    cfg = PolicyConfig(
        tokens=TOKENS,
        dim=DIM,
        state_dim=7,
        action_dim=action_dim,
        proj=4,
        hidden=32,
        encoder=encoder,
    )
    policy = GoalPolicy(cfg)
    policy.set_action_stats(torch.linspace(-0.1, 0.1, action_dim), torch.full((action_dim,), 0.2))
    return policy.eval()


# ------------------------------------------------------------------ GoalPolicy files


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    """A saved policy loads back to the same sizes, encoder, action stats and outputs."""
    policy = _policy(encoder="enc-a")
    policy.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [POLICY_CONFIG, POLICY_WEIGHTS]
    loaded = GoalPolicy.load(tmp_path / "p", encoder="enc-a")
    assert loaded.cfg == policy.cfg and not loaded.training
    z, goal, state = _latents(5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, goal, state), policy(z, goal, state), rtol=0, atol=0)
    torch.testing.assert_close(loaded.action_std, torch.full((7,), 0.2))
    # no encoder given: not checked
    assert GoalPolicy.load(tmp_path / "p").cfg.encoder == "enc-a"


def test_load_refuses_bad_policy_folders_naming_the_file(tmp_path):
    """Missing files, a config that is no object, another format version, another encoder's
    latents and NaN weights are CheckpointErrors that name the offending file."""
    folder = tmp_path / "p"
    with pytest.raises(CheckpointError, match=r"policy\.json not found"):
        GoalPolicy.load(tmp_path / "missing")
    _policy(encoder="enc-a").save(folder)
    cfg_path, w_path = folder / POLICY_CONFIG, folder / POLICY_WEIGHTS
    good = json.loads(cfg_path.read_text())

    cfg_path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"policy\.json.*JSON object"):
        GoalPolicy.load(folder)
    cfg_path.write_text(json.dumps({**good, "format_version": 2}))
    with pytest.raises(CheckpointError, match=r"policy\.json.*format_version 1"):
        GoalPolicy.load(folder)
    cfg_path.write_text(json.dumps(good))
    with pytest.raises(CheckpointError, match=r"policy\.json.*encoder enc-a.*enc-b"):
        GoalPolicy.load(folder, encoder="enc-b")

    weights = load_file(str(w_path))
    weights["mlp.0.weight"][0, 0] = float("nan")
    save_file(weights, str(w_path))
    with pytest.raises(CheckpointError, match=r"policy\.safetensors.*NaN"):
        GoalPolicy.load(folder, encoder="enc-a")
    w_path.unlink()
    with pytest.raises(CheckpointError, match=r"policy\.safetensors not found"):
        GoalPolicy.load(folder)


# ------------------------------------------------------------------ wm-train-policy


def test_train_policy_learns_the_expert_actions(demos, tmp_path, model):
    """Behaviour cloning fits the recorded actions (a function of the state): the validation
    loss in normalized units ends far below the ~1.0 of always predicting the mean action,
    and the saved policy reproduces the expert on held-out states."""
    out = tmp_path / "run"
    report = train_policy(_train_cfg(demos, out, steps=300, eval_every=100, ckpt_every=100))
    rows = _read_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    assert report["step"] == 300
    assert report["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-4)
    assert report["val_loss"] < 0.6, report  # predicting the mean action scores ~1.0

    # the saved policy on states and frames it never saw: far closer to the expert than the
    # training actions' mean is
    policy = GoalPolicy.load(out, encoder=model.encoder.identity())
    rng = np.random.default_rng(7)
    states = rng.uniform(STATE_LOW, STATE_HIGH, size=(32, 7)).astype(np.float32)
    z = model.encode(render_dot(states, 32), states)
    with torch.no_grad():
        acted = policy(z, z.roll(1, 0), torch.from_numpy(states)).numpy()
    expert = expert_action(states)
    std = policy.action_std.numpy()
    err_policy = np.mean(((acted - expert) / std) ** 2)
    err_mean = np.mean(((policy.action_mean.numpy() - expert) / std) ** 2)
    assert err_policy < 0.5 * err_mean, (err_policy, err_mean)


def test_full_grid_policy_trains_on_unpooled_latents_and_acts_on_them(demos, tmp_path, model):
    """pooled=false: the policy takes the encoder's full 8x8 grid (4x the pooled tokens), the
    saved config says so, WorldModel.encode(pooled=False) gives those latents (layer-normed,
    not pooled) and the controller feeds them, so it acts without a shape error."""
    train_policy(_train_cfg(demos, tmp_path / "run", steps=20, pooled=False))
    policy = load_policy(model, tmp_path / "run")
    assert policy.cfg.pooled is False and policy.cfg.tokens == 4 * TOKENS
    states = np.tile(SET_POINT, (2, 1))
    frames = render_dot(states, 32)
    full, pooled = model.encode(frames, states, pooled=False), model.encode(frames, states)
    assert full.shape == (2, 4 * TOKENS, DIM) and pooled.shape == (2, TOKENS, DIM)
    torch.testing.assert_close(full.mean(-1), torch.zeros(2, 4 * TOKENS), atol=1e-5, rtol=0)
    controller = PolicyController(model, policy)
    controller.set_goal(frames[0], states[0])
    assert controller.goal_latent.shape == (1, 4 * TOKENS, DIM)
    assert np.all(np.isfinite(controller.act(frames[1], states[1])))
    torch.testing.assert_close(controller.last_latent, full[1:])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / POLICY_WEIGHTS))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(
            wa[name], wb[name], rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )


def _steps(out: Path) -> list[int]:
    return [int(r["step"]) for r in _read_log(out / "log.csv")]


def test_resume_after_a_crash_equals_an_uninterrupted_run(demos, tmp_path, monkeypatch):
    """A run killed after its step-20 checkpoint (and after logging step 25) resumes at 20:
    the log keeps each step once, in order, and the final policy is the one an
    uninterrupted run of the same seed trains (dropout on, as by default)."""
    import worldmodel.training.train_policy as tpm

    whole = tmp_path / "whole"
    train_policy(_train_cfg(demos, whole, steps=40, eval_every=5, ckpt_every=10))
    crashed = tmp_path / "crashed"
    cfg = _train_cfg(demos, crashed, steps=40, eval_every=5, ckpt_every=10)
    real_lr = tpm._lr

    def lr_then_crash(c, step):
        if step == 27:
            raise KeyboardInterrupt("killed")
        return real_lr(c, step)

    monkeypatch.setattr(tpm, "_lr", lr_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_policy(cfg)
    assert _steps(crashed) == [5, 10, 15, 20, 25]
    monkeypatch.setattr(tpm, "_lr", real_lr)
    train_policy(cfg)
    assert _steps(crashed) == _steps(whole) == [5, 10, 15, 20, 25, 30, 35, 40]
    _assert_same_weights(crashed, whole)
    rows_c, rows_w = _read_log(crashed / "log.csv"), _read_log(whole / "log.csv")
    for rc, rw in zip(rows_c, rows_w, strict=True):
        assert float(rc["loss"]) == pytest.approx(float(rw["loss"]), rel=1e-4), rc["step"]


def test_rerun_with_other_steps_is_refused_not_silently_rescheduled(demos, tmp_path):
    """The cosine schedule spans ``steps``: a rerun with another ``steps`` in the same out_dir
    would restart the decayed learning rate half-way, so it is refused (naming the steps the
    checkpoint's schedule spans) and changes nothing; a rerun with the same steps is a no-op
    that leaves the same policy."""
    out = tmp_path / "run"
    train_policy(_train_cfg(demos, out, steps=20))
    before = (out / POLICY_WEIGHTS).read_bytes()
    with pytest.raises(ValueError, match=r"schedule spans 20 steps, this one 40"):
        train_policy(_train_cfg(demos, out, steps=40))
    assert _steps(out) == [10, 20]
    train_policy(_train_cfg(demos, out, steps=20))
    assert _steps(out) == [10, 20]
    assert (out / POLICY_WEIGHTS).read_bytes() == before


def test_train_policy_refuses_another_runs_checkpoint_and_empty_selections(demos, tmp_path):
    """A checkpoint of other sizes in out_dir is a ValueError (never silently mixed); modes
    that keep no episode, and successful_only on episodes that all fail, are DatasetErrors
    naming the dataset."""
    out = tmp_path / "run"
    train_policy(_train_cfg(demos, out, steps=10))
    with pytest.raises(ValueError, match=r"checkpoint\.pt: a run with other sizes"):
        train_policy(_train_cfg(demos, out, steps=10, hidden=32))
    assert _steps(out) == [10]  # untouched

    with pytest.raises(DatasetError, match=r"ds: no episode has an expert_mode in modes=\['pd'\]"):
        train_policy(_train_cfg(demos, tmp_path / "m", modes=["pd"]))
    failed = dict(data_root=str(demos / "failed"), cache_dir=str(demos / "failed_features"))
    with pytest.raises(DatasetError, match=r"failed: no kept episode ends in success"):
        train_policy(_train_cfg(demos, tmp_path / "f", **failed))
    # hindsight goals alone need no success
    train_policy(_train_cfg(demos, tmp_path / "h", steps=2, final_goal_frac=0.0, **failed))
    assert (tmp_path / "h" / POLICY_WEIGHTS).is_file()


def test_modes_select_episodes_by_their_recorded_expert_mode(demos, model):
    """modes=[expert] keeps exactly the episodes recorded as expert (every other one here)."""
    every = Demonstrations(_train_cfg(demos, "unused"), model)
    experts = Demonstrations(_train_cfg(demos, "unused", modes=["expert"]), model)
    assert len(every) == EPISODES and len(experts) == EPISODES // 2
    for k, actions in enumerate(experts.actions):
        torch.testing.assert_close(actions, every.actions[2 * k])


def test_several_datasets_each_with_its_cache_are_pooled(demos, model):
    """data_root=[a,b] cache_dir=[fa,fb] (e.g. one dataset per task) loads the episodes of both;
    lists that do not pair up are refused naming both."""
    from worldmodel.training.train_policy import config_from_mapping

    root, cache = str(demos / "ds"), str(demos / "features")
    cfg = config_from_mapping({"model": str(demos / "model"), "data_root": [root, root],
                               "cache_dir": [cache, cache]})  # fmt: skip
    assert cfg.sources() == [(root, cache), (root, cache)]
    one = Demonstrations(_train_cfg(demos, "unused"), model)
    two = Demonstrations(replace(_train_cfg(demos, "unused"), data_root=cfg.data_root,
                                 cache_dir=cfg.cache_dir), model)  # fmt: skip
    assert len(two) == 2 * len(one) == 2 * EPISODES
    torch.testing.assert_close(two.actions[EPISODES], one.actions[0])
    bad = replace(cfg, cache_dir=(cache,), out_dir="unused")
    with pytest.raises(ValueError, match="must pair up"):
        train_policy(bad)


def test_cli_trains_and_installs_the_policy_into_the_model_folder(demos, tmp_path):
    """wm-train-policy (Hydra, configs/policy.yaml) with install=true leaves a policy in
    <model>/policy that load_policy accepts for that model, and one in out_dir."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("wm-train-policy")
    if not script.is_file():
        pytest.skip("wm-train-policy console script not installed in this environment")
    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    args = [
        f"model={model_dir}",
        f"data_root={demos / 'ds'}",
        f"cache_dir={demos / 'features'}",
        f"out_dir={tmp_path / 'run'}",
        "install=true",
        "steps=3",
        "batch_size=8",
        "proj=2",
        "hidden=16",
        "modes=[expert,noisy]",
        "threads=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    subprocess.run([str(script), *args], cwd=tmp_path, env=env, check=True, timeout=120)
    installed = load_policy(WorldModel.load(model_dir), model_dir / "policy")
    assert installed.cfg.hidden == 16 and installed.cfg.proj == 2
    _assert_same_weights(model_dir / "policy", tmp_path / "run")


# ------------------------------------------------------------------ PolicyController


def _constant_policy(model: WorldModel, action: np.ndarray) -> GoalPolicy:
    """A policy that outputs ``action`` (robot units) whatever it sees."""
    policy = GoalPolicy(
        PolicyConfig(
            tokens=TOKENS,
            dim=DIM,
            state_dim=7,
            action_dim=7,
            proj=2,
            hidden=8,
            encoder=model.encoder.identity(),
        )
    )
    std = np.full(7, 0.5, np.float32)
    policy.set_action_stats(torch.zeros(7), torch.from_numpy(std))
    last = policy.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.from_numpy(np.asarray(action, np.float32) / std))
    return policy.eval()


FRAME = np.full((32, 32, 3), 90, np.uint8)


def test_controller_holds_rotation_clips_to_the_layout_and_filters_the_gripper(model):
    """The policy's action is sent with rotation dims at 0 (7-D ee_delta layout), clipped into
    the model layout's bounds (not the default ones), through MPCConfig's gripper filter."""
    state = np.array([0.5, 0.5, 0.2, 0.0, 0.0, 0.0, 0.2], np.float32)
    wild = np.array([0.2, -0.3, 0.01, 0.4, -0.4, 0.1, 0.1], np.float32)
    filtered = MPCConfig(gripper_close_at=0.3)
    ctrl = PolicyController(model, _constant_policy(model, wild), filtered)
    ctrl.set_goal(FRAME, state)
    action = ctrl.act(FRAME, state)
    assert action.dtype == np.float32 and action.shape == (7,)
    np.testing.assert_allclose(action, [0.05, -0.05, 0.01, 0, 0, 0, 0.1], atol=1e-6)
    assert np.all(action >= np.float32(ACTION_LOW)) and np.all(action <= np.float32(ACTION_HIGH))
    assert np.isfinite(ctrl.last_energy) and ctrl.last_energy >= 0 and ctrl.last_seconds > 0

    narrow = Layout(
        action_low=(-0.02,) * 3 + (-0.25,) * 3 + (-1.0,),
        action_high=(0.03,) * 3 + (0.25,) * 3 + (0.05,),
    )
    ctrl = PolicyController(
        WorldModel(model.encoder, model.predictor, layout=narrow),
        _constant_policy(model, wild),
        filtered,
    )
    ctrl.set_goal(FRAME, state)
    np.testing.assert_allclose(
        ctrl.act(FRAME, state), [0.03, -0.02, 0.01, 0, 0, 0, 0.05], atol=1e-6
    )

    closing = wild.copy()
    closing[6] = 0.4  # past gripper_close_at: close all the way from 0.2
    ctrl = PolicyController(model, _constant_policy(model, closing), filtered)
    ctrl.set_goal(FRAME, state)
    np.testing.assert_allclose(ctrl.act(FRAME, state), [0.05, -0.05, 0.01, 0, 0, 0, 0.8], atol=1e-6)
    plain = PolicyController(model, _constant_policy(model, closing))  # no filter: as given
    plain.set_goal(FRAME, state)
    np.testing.assert_allclose(
        plain.act(FRAME, state), [0.05, -0.05, 0.01, 0, 0, 0, 0.4], atol=1e-6
    )

    joints = Layout(
        action_kind="delta",
        state_names=(*"abcdef", "gripper"),
        action_names=(*"abcdef", "dgripper"),
    )
    ctrl = PolicyController(
        WorldModel(model.encoder, model.predictor, layout=joints), _constant_policy(model, wild)
    )
    ctrl.set_goal(FRAME, state)  # not the ee_delta layout: dims 3:6 are not rotations
    np.testing.assert_allclose(
        ctrl.act(FRAME, state), [0.05, -0.05, 0.01, 0.25, -0.25, 0.1, 0.1], atol=1e-6
    )


def test_controller_refuses_nan_state_missing_goal_and_mismatched_policy(model):
    """NaN state and act() before set_goal are ValueErrors; a policy of another action_dim
    is refused at construction; a policy emitting NaN is a RuntimeError."""
    state = np.zeros(7, np.float32)
    ctrl = PolicyController(model, _constant_policy(model, np.zeros(7)))
    with pytest.raises(ValueError, match="no goal set"):
        ctrl.act(FRAME, state)
    ctrl.set_goal(FRAME, state)
    bad = state.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ctrl.act(FRAME, bad)
    with pytest.raises(ValueError, match="one \\(H,W,3\\) image"):
        ctrl.set_goal(np.stack([FRAME, FRAME]), state)
    with pytest.raises(ValueError, match="actions of 6 dims"):
        PolicyController(model, _policy(encoder=model.encoder.identity(), action_dim=6))

    broken = _constant_policy(model, np.zeros(7))
    with torch.no_grad():
        broken.mlp[-1].bias[0] = float("nan")
    ctrl = PolicyController(model, broken)
    ctrl.set_goal(FRAME, state)
    with pytest.raises(RuntimeError, match="non-finite action"):
        ctrl.act(FRAME, state)


def test_load_policy_checks_the_models_encoder(model, tmp_path):
    """load_policy refuses a policy trained on another encoder's latents."""
    _constant_policy(model, np.zeros(7)).save(tmp_path / "mine")
    assert load_policy(model, tmp_path / "mine").cfg.encoder == model.encoder.identity()
    _policy(encoder="someone-else").save(tmp_path / "theirs")
    with pytest.raises(CheckpointError, match="encoder someone-else"):
        load_policy(model, tmp_path / "theirs")


# ------------------------------------------------------------------ wm-eval


def _model_folder(root: Path) -> Path:
    """A stand-in model folder (fingerprints read files only) with an installed policy."""
    (root / "encoder").mkdir(parents=True)
    (root / "world_model.json").write_text('{"format_version": 1}')
    (root / "predictor.safetensors").write_bytes(b"weights")
    (root / "encoder" / "model.safetensors").write_bytes(b"enc")
    (root / "policy").mkdir()
    (root / "policy" / POLICY_CONFIG).write_text("{}")
    (root / "policy" / POLICY_WEIGHTS).write_bytes(b"policy")
    return root


def test_fingerprints_separate_the_policy_from_the_model(tmp_path):
    """wm_policy's fingerprint follows the policy's files; the planners' fingerprints follow
    the model's files but not <model>/policy; wm_flat's and wm_policy's ignore sub-goal
    budgets (they see the final goal alone), wm_cem's do not."""
    folder = _model_folder(tmp_path / "m")
    cfg = EvalConfig(tasks=("grasp",), methods=("wm_flat",), model=str(folder), out_dir="unused")
    assert set(ev.FINAL_GOAL_METHODS) == {"wm_flat", "wm_policy"}
    planners = ("wm_cem", "wm_icem", "wm_flat", "reference_cem")

    def prints(c=cfg):
        ev._digest_files.cache_clear()  # same-size rewrites may share an mtime tick
        return {m: ev.fingerprint(c, "grasp", m) for m in (*planners, "wm_policy")}

    before = prints()
    assert ev.model_digest(str(folder)) != ev.model_digest(str(folder), whole=True)
    (folder / "policy" / POLICY_WEIGHTS).write_bytes(b"retrain")
    after = prints()
    assert after["wm_policy"] != before["wm_policy"]
    assert {m: after[m] for m in planners} == {m: before[m] for m in planners}
    (folder / "policy" / "notes.txt").write_text("a new file in the policy folder")
    assert prints()["wm_policy"] != after["wm_policy"]

    elsewhere = tmp_path / "p"  # EvalConfig.policy: that folder, not <model>/policy
    shutil.copytree(folder / "policy", elsewhere)
    moved = replace(cfg, policy=str(elsewhere))
    assert prints(moved)["wm_policy"] == prints()["wm_policy"]  # same files
    (elsewhere / POLICY_WEIGHTS).write_bytes(b"other policy")
    assert prints(moved)["wm_policy"] != prints()["wm_policy"]

    unchanged = prints()
    (folder / "predictor.safetensors").write_bytes(b"weightz")  # the model itself: all change
    changed = prints()
    assert all(changed[m] != unchanged[m] for m in changed)

    budgets = replace(cfg, subgoal_budgets={"grasp": (3, 3, 3, 3)})
    for method in ev.FINAL_GOAL_METHODS:
        assert prints(budgets)[method] == changed[method]
    assert prints(budgets)["wm_cem"] != changed["wm_cem"]


def test_gripper_execution_enters_wm_policys_fingerprint(demos, model, tmp_path):
    """PolicyAgent executes through MPCConfig's gripper filters, so changing them must change
    wm_policy's fingerprint (else episodes run under other filters are reused)."""
    from planning.harness.agents import GRIPPER_EXECUTION

    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    _constant_policy(model, np.zeros(7)).save(model_dir / "policy")
    plain = EvalConfig(
        tasks=("grasp",),
        methods=("wm_policy",),
        model=str(model_dir),
        out_dir="unused",
        mpc=MPCConfig(),
    )
    filtered = replace(plain, mpc=MPCConfig(**GRIPPER_EXECUTION))
    agent = ev.make_agent("wm_policy", filtered, model)
    assert agent.controller.cfg.gripper_close_at == GRIPPER_EXECUTION["gripper_close_at"]
    assert ev.fingerprint(filtered, "grasp", "wm_policy") != ev.fingerprint(
        plain, "grasp", "wm_policy"
    )


def test_wm_eval_runs_the_flat_planner_and_the_policy(demos, model, tmp_path, capsys):
    """wm-eval with methods [wm_flat, wm_policy] on the tiny model runs one short episode of
    each (the policy from <model>/policy) and logs both rows."""
    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    _constant_policy(model, np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32)).save(
        model_dir / "policy"
    )
    cfg = EvalConfig(
        tasks=("reach",),
        methods=("wm_flat", "wm_policy"),
        episodes=1,
        max_steps={"reach": 2},
        image_size=32,
        out_dir=str(tmp_path / "eval"),
        model=str(model_dir),
        cem=CEMConfig(samples=8, iterations=1, top_k=2),
        final_goal_tasks=None,  # default: wm_flat on pick_place only
    )
    results = ev.evaluate(cfg)
    assert [r.method for r in results] == ["wm_flat", "wm_policy"]
    assert all(r.steps == 2 and len(r.seconds_per_action) == 2 for r in results)
    out = capsys.readouterr().out
    assert "| reach | wm_flat |" in out and "| reach | wm_policy |" in out
    logged = (tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()
    assert len(logged) == 2
    again = ev.evaluate(cfg)  # everything reused
    assert [r.method for r in again] == ["wm_flat", "wm_policy"]
    assert len((tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()) == 2

    shutil.rmtree(model_dir / "policy")
    with pytest.raises(CheckpointError, match=r"policy\.json not found"):
        ev.make_agent("wm_policy", cfg, model)


def test_wm_pcem_plans_from_the_policys_proposal(demos, model, tmp_path):
    """wm_pcem: a small CEM whose search starts at the policy's action. With a near-zero
    search std the executed actions are the policy's (after the gripper filters); its
    fingerprint follows the proposal policy's files and the pcem budget; a policy on the
    full token grid cannot propose (the planner computes pooled latents only)."""
    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    push = np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32)
    _constant_policy(model, push).save(model_dir / "policy")
    tight = CEMConfig(samples=4, iterations=1, top_k=2, init_std=1e-6, min_std=1e-6)
    cfg = EvalConfig(tasks=("reach",), methods=("wm_pcem",), episodes=1,
                     max_steps={"reach": 2}, image_size=32, out_dir=str(tmp_path / "eval"),
                     model=str(model_dir), pcem=tight)  # fmt: skip
    agent = ev.make_agent("wm_pcem", cfg, model)
    env = ev.make_env(cfg, "reach")
    obs, info = env.reset(seed=0, options={"task_id": 0})
    agent.reset(env, obs, info)
    action, _, _ = agent.act(obs, info)
    env.close()
    np.testing.assert_allclose(action, push, atol=1e-5)
    (result,) = ev.evaluate(cfg)
    assert result.method == "wm_pcem" and result.steps == 2

    before = ev.fingerprint(cfg, "reach", "wm_pcem")
    assert ev.fingerprint(replace(cfg, pcem=CEMConfig()), "reach", "wm_pcem") != before
    other = tmp_path / "other_policy"
    _constant_policy(model, -push).save(other)
    assert ev.fingerprint(replace(cfg, proposal=str(other)), "reach", "wm_pcem") != before
    assert ev.fingerprint(replace(cfg, policy=str(other)), "reach", "wm_pcem") != before
    full = tmp_path / "full_grid"
    train_policy(_train_cfg(demos, full, steps=5, pooled=False))
    with pytest.raises(ValueError, match="pooled"):
        ev.make_agent("wm_pcem", replace(cfg, proposal=str(full)), model)


def test_proposal_installs_beside_the_policy_and_wm_pcem_finds_it(demos, tmp_path):
    """proposal=true install=true puts the policy into <model>/policy/proposal/; wm_pcem takes
    it from there, falls back to <model>/policy without one, and EvalConfig.proposal wins."""
    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    cfg = EvalConfig(tasks=("reach",), methods=("wm_pcem",), model=str(model_dir), out_dir="x")
    assert ev.proposal_folder(cfg) == model_dir / "policy"
    train_policy(_train_cfg(demos, tmp_path / "run", model=str(model_dir), steps=5,
                            install=True, proposal=True))  # fmt: skip
    nested = model_dir / "policy" / "proposal"
    assert (nested / POLICY_WEIGHTS).is_file() and not (
        model_dir / "policy" / POLICY_WEIGHTS
    ).exists()
    assert ev.proposal_folder(cfg) == nested
    assert ev.proposal_folder(replace(cfg, proposal=str(tmp_path / "run"))) == tmp_path / "run"


def test_demo_plans_with_the_proposal_and_falls_back_to_cem_without_a_policy(
    demos, model, tmp_path, capsys
):
    """wm-demo's default planner: 64 x 4 (top-8) from the model's proposal; a model without a
    policy/ gets a note and CEM 256 x 6 with no proposal."""
    from planning.harness.demo import make_demo_agent

    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    agent = make_demo_agent(model_dir, None, None)
    assert agent.mpc.proposal is None and agent.mpc.planner.cfg.samples == 256
    assert "has no policy/" in capsys.readouterr().out
    _constant_policy(model, np.zeros(7, np.float32)).save(model_dir / "policy")
    agent = make_demo_agent(model_dir, None, None)
    cfg = agent.mpc.planner.cfg
    assert agent.mpc.proposal is not None and (cfg.samples, cfg.iterations, cfg.top_k) == (64, 4, 8)


def test_demo_ends_with_a_final_goal_only_pick_and_place_by_the_policy(
    demos, model, tmp_path, capsys
):
    """wm-demo's last part: a pick-and-place episode from the final goal image alone, acted by
    <model>/policy, with its video; a model without a policy gets a note and no episode."""
    from planning.harness.demo import run_final_goal

    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    assert run_final_goal(model_dir, 1, tmp_path / "out", image_size=32) is None
    assert "has no policy/" in capsys.readouterr().out
    _constant_policy(model, np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32)).save(
        model_dir / "policy"
    )
    wins, times = run_final_goal(model_dir, 1, tmp_path / "out", image_size=32)
    assert wins == 0 and len(times) == 60  # a constant push never places the object
    assert (tmp_path / "out" / "pick_place_final_goal_only_00.mp4").is_file()
    assert "wm-demo pick_place_final_goal_only: success 0/1" in capsys.readouterr().out


def test_the_flat_planner_runs_on_the_final_goal_tasks_only():
    """wm_flat runs on ``final_goal_tasks`` (default pick_place; None: all), the other methods,
    wm_policy included, on every task."""
    cfg = EvalConfig(tasks=("reach", "pick_place"), methods=("wm_cem", "wm_flat", "wm_policy"))
    assert [m for m in cfg.methods if cfg.runs("reach", m)] == ["wm_cem", "wm_policy"]
    assert all(cfg.runs("pick_place", m) for m in cfg.methods)
    everywhere = EvalConfig(tasks=("reach",), methods=("wm_flat",), final_goal_tasks=None)
    assert everywhere.runs("reach", "wm_flat")


# ------------------------------------------------------------------ wm-dagger (corrections)


def _dagger_cfg(model_dir: Path, out: Path, **kw):
    from planning.harness.dagger import DaggerConfig

    base = dict(model=str(model_dir), out_dir=str(out), task="pick_place", episodes=2,
                image_size=32, max_steps=3, workers=1)  # fmt: skip
    return DaggerConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def push_model(demos, model, tmp_path_factory) -> Path:
    """The tiny model with a policy that always pushes +x by 1 cm, installed."""
    model_dir = tmp_path_factory.mktemp("dagger") / "model"
    shutil.copytree(demos / "model", model_dir)
    _constant_policy(model, np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32)).save(
        model_dir / "policy"
    )
    return model_dir


def _replay(model_dir: Path, seed: int, actions: np.ndarray) -> np.ndarray:
    """States (T, 7) seen before each of ``actions`` when replayed from reset(seed)."""
    from envs.contract import make_env

    env = make_env("pick_place", image_size=32, views=("exterior",))
    obs, _ = env.reset(seed=seed)
    states = []
    for action in actions:
        states.append(obs["state"])
        obs, *_ = env.step(action)
    env.close()
    return np.stack(states)


def test_dagger_labels_states_the_policy_visits_with_the_experts_actions(push_model, tmp_path):
    """beta=0: the policy drives (replaying its constant push reproduces the recorded states)
    and each label is the expert's action there (not the push); beta=1: the expert drives,
    so replaying the labels reproduces the states. Latents are the model's (T, N, D)."""
    from planning.harness.dagger import collect_corrections
    from worldmodel.training.corrections import load_corrections

    model = WorldModel.load(push_model)
    out = collect_corrections(_dagger_cfg(push_model, tmp_path / "policy_drives"))
    assert out["rolled_out"] == 2 and out["labelled_steps"] == 6
    eps = load_corrections(tmp_path / "policy_drives", model.encoder.identity())
    push = np.tile(np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32), (3, 1))
    for ep in eps:
        assert ep["z"].shape == (3, TOKENS, DIM) and ep["goal"].shape == (TOKENS, DIM)
        np.testing.assert_allclose(ep["state"], _replay(push_model, int(ep["seed"]), push),
                                   atol=1e-5)  # fmt: skip
        assert not np.allclose(ep["label"], push, atol=1e-3)  # the expert heads elsewhere
        assert np.all(ep["label"][:, 3:6] ** 2 < 1e-2)  # and keeps the orientation

    collect_corrections(_dagger_cfg(push_model, tmp_path / "expert_drives", beta=1.0))
    for ep in load_corrections(tmp_path / "expert_drives", model.encoder.identity()):
        np.testing.assert_allclose(ep["state"], _replay(push_model, int(ep["seed"]), ep["label"]),
                                   atol=1e-5)  # fmt: skip
    # the first frame and goal are the same instance either way: same latents
    a = load_corrections(tmp_path / "policy_drives", model.encoder.identity())[0]
    b = load_corrections(tmp_path / "expert_drives", model.encoder.identity())[0]
    np.testing.assert_array_equal(a["z"][0], b["z"][0])
    np.testing.assert_array_equal(a["goal"], b["goal"])


def test_dagger_rerun_continues_and_refuses_other_settings(push_model, tmp_path):
    """A rerun writes only missing rollouts; another beta, policy or model is refused naming
    corrections.json; a missing policy is named."""
    from planning.harness.dagger import collect_corrections

    out = tmp_path / "c"
    assert collect_corrections(_dagger_cfg(push_model, out, episodes=1))["rolled_out"] == 1
    first = (out / "ep_000000.npz").stat().st_mtime_ns
    assert collect_corrections(_dagger_cfg(push_model, out, episodes=2))["rolled_out"] == 1
    assert (out / "ep_000000.npz").stat().st_mtime_ns == first
    assert sorted(p.name for p in out.glob("ep_*")) == ["ep_000000.npz", "ep_000001.npz"]
    with pytest.raises(ValueError, match=r"corrections\.json.*beta"):
        collect_corrections(_dagger_cfg(push_model, out, beta=0.5))
    with pytest.raises(FileNotFoundError, match="no policy"):
        collect_corrections(_dagger_cfg(push_model, tmp_path / "d", policy=str(tmp_path)))


def _write_corrections(folder: Path, encoder: str, label: np.ndarray, n: int = 6) -> None:
    from worldmodel.training.corrections import open_corrections, write_episode

    open_corrections(folder, {"encoder": encoder})
    rng = np.random.default_rng(3)
    for k in range(n):
        write_episode(
            folder, k, z=rng.normal(size=(5, TOKENS, DIM)).astype(np.float16),
            goal=rng.normal(size=(TOKENS, DIM)).astype(np.float16),
            state=rng.uniform(STATE_LOW, STATE_HIGH, (5, 7)).astype(np.float32),
            label=np.tile(label, (5, 1)).astype(np.float32), success=np.bool_(False),
            seed=np.int64(k),
        )  # fmt: skip


def test_train_policy_learns_from_corrections_and_checks_their_encoder(demos, model, tmp_path):
    """corrections_frac=1: every batch comes from the corrections, so the policy learns their
    constant label on their latents (far from the demonstrations' actions); corrections
    from another encoder, or a folder that is not one, are refused naming the file."""
    label = np.array([0.04, -0.03, 0.02, 0, 0, 0, 0.6], np.float32)
    _write_corrections(tmp_path / "corr", model.encoder.identity(), label)
    cfg = _train_cfg(demos, tmp_path / "run", corrections=(str(tmp_path / "corr"),),
                     corrections_frac=1.0, steps=120, dropout=0.0)  # fmt: skip
    train_policy(cfg)
    policy = load_policy(model, tmp_path / "run")
    from worldmodel.training.corrections import load_corrections

    ep = load_corrections(tmp_path / "corr", model.encoder.identity())[0]
    with torch.no_grad():
        out = policy(torch.from_numpy(ep["z"]).float(),
                     torch.from_numpy(ep["goal"]).float()[None].expand(5, -1, -1),
                     torch.from_numpy(ep["state"])).numpy()  # fmt: skip
    np.testing.assert_allclose(out, np.tile(label, (5, 1)), atol=0.02)

    _write_corrections(tmp_path / "other", "0" * 64, label, n=1)
    with pytest.raises(DatasetError, match=r"corrections\.json.*encoder"):
        train_policy(replace(cfg, corrections=(str(tmp_path / "other"),),
                             out_dir=str(tmp_path / "run2")))  # fmt: skip
    with pytest.raises(DatasetError, match=r"corrections\.json: not found"):
        train_policy(replace(cfg, corrections=(str(tmp_path),), out_dir=str(tmp_path / "run3")))


# ------------------------------------------------------------------ wm-serve planner=pcem


def test_serve_pcem_starts_every_plan_at_the_models_proposal(demos, model, tmp_path):
    """wm-serve planner=pcem: the model folder's proposal starts each plan (with a near-zero
    search std the reply is the policy's action), the metadata names the folder; proposal=
    gives another policy to any planner; refused at start with no policy or on the toy."""
    from websockets.sync.client import connect

    from planning.server.config import ServeConfig
    from planning.server.serve import PolicyServer, ServerThread
    from planning.server.session import Session
    from planning.server.wire import packb, unpackb

    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    push = np.array([0.01, 0, 0, 0, 0, 0, 0], np.float32)
    tight = CEMConfig(samples=4, iterations=1, top_k=2, init_std=1e-6, min_std=1e-6)
    state = np.array([0.5, 0.5, 0.2, 0.0, 0.0, 0.0, 0.2], np.float32)

    def first_action(server: PolicyServer) -> np.ndarray:
        session = Session(server.cfg, server.dynamics, server.planner, server.conv,
                          server.proposal)  # fmt: skip
        session.controller.set_goal(FRAME, state[None])
        return session.controller.act(FRAME, state)[0]

    cfg = ServeConfig(model=str(model_dir), planner="pcem", pcem=tight)
    with pytest.raises(CheckpointError, match=r"policy\.json not found"):
        PolicyServer(cfg)
    _constant_policy(model, push).save(model_dir / "policy")
    server = PolicyServer(cfg)
    assert server.metadata["planner"] == "pcem"
    assert server.metadata["proposal"] == str(model_dir / "policy")
    assert server.planner.cfg.samples == 4
    np.testing.assert_allclose(first_action(server), push, atol=1e-5)

    with ServerThread(cfg) as running:  # noqa: SIM117 (the port is known once it runs)
        with connect(f"ws://127.0.0.1:{running.port}", open_timeout=10, max_size=None) as ws:
            assert unpackb(ws.recv(timeout=10))["proposal"] == str(model_dir / "policy")
            ws.send(packb({"goal_image": FRAME, "observation/image": FRAME,
                           "observation/state": state}))  # fmt: skip
            reply = unpackb(ws.recv(timeout=30))
    # before the server's safety limits (this state lies outside their default workspace)
    np.testing.assert_allclose(reply["requested_actions"][0], push, atol=1e-5)

    _constant_policy(model, 2 * push).save(model_dir / "policy" / "proposal")  # preferred
    server = PolicyServer(cfg)
    assert server.metadata["proposal"] == str(model_dir / "policy" / "proposal")
    np.testing.assert_allclose(first_action(server), 2 * push, atol=1e-5)

    other = tmp_path / "other"
    _constant_policy(model, -push).save(other)
    server = PolicyServer(replace(cfg, planner="cem", cem=tight, proposal=str(other)))
    assert server.metadata["proposal"] == str(other)
    np.testing.assert_allclose(first_action(server), -push, atol=1e-5)
    assert PolicyServer(replace(cfg, planner="cem")).metadata["proposal"] is None
    with pytest.raises(ValueError, match="model=toy has none"):
        PolicyServer(ServeConfig(planner="pcem"))
    with pytest.raises(ValueError, match="planner must be one of"):
        ServeConfig(planner="pcme")


# ------------------------------------------------------------------ ensembles (ensemble=K)


def test_ensemble_trains_k_seeds_resumes_installs_and_acts_as_their_mean(demos, model, tmp_path):
    """ensemble=2: two members (seeds 0 and 1, each with its checkpoint and log) and an
    ensemble.json; load_policy gives their mean action; a rerun trains nothing; install puts the
    ensemble into <model>/policy/ and a later single policy replaces it there, leaving the
    nested proposal alone."""
    from worldmodel.models.policy import ENSEMBLE_CONFIG, PolicyEnsemble

    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    installed = model_dir / "policy"
    _constant_policy(model, np.zeros(7, np.float32)).save(installed)  # a single one before
    out = tmp_path / "ens"
    cfg = _train_cfg(demos, out, model=str(model_dir), steps=6, ensemble=2, install=True)
    train_policy(cfg)
    members = [out / "members" / "0", out / "members" / "1"]
    assert (out / ENSEMBLE_CONFIG).is_file() and not (out / POLICY_WEIGHTS).exists()
    assert (installed / ENSEMBLE_CONFIG).is_file()
    assert not (installed / POLICY_WEIGHTS).exists() and not (installed / POLICY_CONFIG).exists()
    assert all(_steps(m) == [6] for m in members)
    ens = load_policy(model, out)
    assert isinstance(ens, PolicyEnsemble) and len(ens.members) == 2
    single = [load_policy(model, m) for m in members]
    w0, w1 = (_weights(m) for m in members)
    assert not torch.equal(w0["mlp.0.weight"], w1["mlp.0.weight"])  # other seeds
    z = torch.randn(3, TOKENS, DIM)
    goal, state = torch.randn(3, TOKENS, DIM), torch.randn(3, 7)
    with torch.no_grad():
        mean = (single[0](z, goal, state) + single[1](z, goal, state)) / 2
        torch.testing.assert_close(ens(z, goal, state), mean)
    logs = [(m / "log.csv").read_text() for m in members]
    train_policy(cfg)  # finished: nothing retrained, nothing appended
    assert [(m / "log.csv").read_text() for m in members] == logs
    torch.testing.assert_close(_weights(members[0]), w0, rtol=0, atol=0)

    assert isinstance(load_policy(model, installed), PolicyEnsemble)
    ctrl = PolicyController(model, load_policy(model, installed))
    ctrl.set_goal(FRAME, np.zeros(7, np.float32))
    assert np.all(np.isfinite(ctrl.act(FRAME, np.zeros(7, np.float32))))
    train_policy(_train_cfg(demos, tmp_path / "prop", model=str(model_dir), steps=3,
                            install=True, proposal=True))  # fmt: skip
    train_policy(_train_cfg(demos, tmp_path / "one", model=str(model_dir), steps=3, install=True))
    assert not (installed / ENSEMBLE_CONFIG).exists() and not (installed / "members").exists()
    assert isinstance(load_policy(model, installed), GoalPolicy)
    assert (installed / "proposal" / POLICY_WEIGHTS).is_file()


def test_install_into_its_own_out_dir_is_refused_before_training(demos, model, tmp_path):
    """out_dir equal to the install folder would have the install delete the members' training
    checkpoints: refused up front, naming both, and nothing is written."""
    model_dir = tmp_path / "model"
    shutil.copytree(demos / "model", model_dir)
    for proposal, folder in (
        (False, model_dir / "policy"),
        (True, model_dir / "policy" / "proposal"),
    ):
        cfg = _train_cfg(demos, folder, model=str(model_dir), steps=2, ensemble=2, install=True,
                         proposal=proposal)  # fmt: skip
        with pytest.raises(ValueError, match="is the install folder"):
            train_policy(cfg)
        assert not folder.exists()


def test_a_broken_ensemble_is_refused_naming_the_file(demos, model, tmp_path):
    """ensemble.json with a member outside the folder, a missing member, or members of other
    encoders: CheckpointError naming the file."""
    from worldmodel.models.policy import ENSEMBLE_CONFIG, PolicyEnsemble, load_goal_policy

    folder = tmp_path / "ens"
    PolicyEnsemble([_constant_policy(model, np.zeros(7, np.float32))] * 2).save(folder)
    assert isinstance(load_policy(model, folder), PolicyEnsemble)
    path = folder / ENSEMBLE_CONFIG
    for members, match in ((["../x"], "not a folder inside"), (["members/9"], r"policy\.json"),
                           ([], "not a policy ensemble"), ("members/0", "not a policy ensemble")):  # fmt: skip
        path.write_text(json.dumps({"format_version": 1, "members": members}))
        with pytest.raises(CheckpointError, match=match):
            load_policy(model, folder)
    other = _constant_policy(model, np.zeros(7, np.float32))
    other = GoalPolicy(replace(other.cfg, encoder="another"))
    other.save(folder / "members" / "1")
    path.write_text(json.dumps({"format_version": 1, "members": ["members/0", "members/1"]}))
    with pytest.raises(CheckpointError, match="member 1 has encoder"):
        load_goal_policy(folder)  # without an encoder to check against: members disagree
    with pytest.raises(CheckpointError, match="trained on the latents of encoder another"):
        load_policy(model, folder)
