"""wm-train: schedule, data order, learning signal, logs, atomic resumable checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from worldmodel.data.episodes import open_dataset
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.training.train import clip_losses, train
from worldmodel.training.train_config import TrainConfig, lr_factor
from worldmodel.training.train_data import ClipSampler, EpisodeSource
from worldmodel.world_model import WorldModel


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic episodes + a tiny frozen encoder + its features (in-memory cache stand-in)."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(root / "ds", num_episodes=6, lengths=10, image_size=32, seed=0)
    torch.manual_seed(0)
    encoder = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    encoder.save(root / "encoder")
    dataset = open_dataset(root / "ds")
    feats = {
        i: encoder.encode_frames(dataset.read_episode_frames(i)).numpy().astype(np.float16)
        for i in range(len(dataset))
    }
    return root, dataset, encoder, feats


def _source(data):
    _, dataset, encoder, feats = data
    return EpisodeSource(dataset, encoder, features=feats.__getitem__)


def test_config_validation():
    with pytest.raises(ValueError, match="rollout_steps"):
        TrainConfig(clip_len=3, rollout_steps=3)
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="stream")
    with pytest.raises(ValueError, match="predictor"):
        TrainConfig(predictor="huge")
    with pytest.raises(ValueError, match="gripper_event_weight"):
        TrainConfig(gripper_event_weight=0.0)
    with pytest.raises(ValueError, match="motion_weight"):
        TrainConfig(motion_weight=-1.0)


def test_lr_schedule_warmup_hold_decay():
    cfg = TrainConfig(
        lr=1.0, start_lr=0.1, final_lr=0.0, max_steps=100, warmup_steps=10, decay_steps=20
    )
    lrs = [lr_factor(cfg, s) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.55)
    assert all(v == 1.0 for v in lrs[10:80])
    assert lrs[90] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)


def test_sampler_resumes_same_order():
    refs = np.stack([np.arange(10), np.zeros(10, int)], 1)
    a = ClipSampler(refs, 4, seed=3)
    for _ in range(3):
        a.next_batch()  # crosses an epoch boundary
    b = ClipSampler(refs, 4, seed=3)
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        np.testing.assert_array_equal(a.next_batch(), b.next_batch())
    epoch0 = np.concatenate([ClipSampler(refs, 10, 3).next_batch()[:, 0]])
    assert sorted(epoch0.tolist()) == list(range(10))  # each clip once per epoch


def test_rollout_loss_first_step_equals_teacher_forcing(data):
    from worldmodel.training.train_config import build_predictor

    src = _source(data)
    pred = build_predictor(TrainConfig(), src.feature_dim, src.grid)
    z, a, s = src.batch(np.array([[0, 0], [1, 2]]), 4, pred, "cpu")
    assert z.shape == (2, 4, 16, 96)  # 8x8 grid pooled 2x2
    _tf, roll = clip_losses(pred, z, a, s, rollout_steps=3)
    assert len(roll) == 3
    with torch.no_grad():
        ref = torch.nn.functional.layer_norm(pred(z[:, :1], a[:, :1], s[:, :1]), (96,))
    expected = float((ref[:, 0] - z[:, 1]).abs().mean())
    assert float(roll[0].detach()) == pytest.approx(expected, rel=1e-4)


def test_event_weight_weights_gripper_transitions(data):
    from worldmodel.training.train import event_weights
    from worldmodel.training.train_config import build_predictor

    src = _source(data)
    pred = build_predictor(TrainConfig(), src.feature_dim, src.grid)
    z, a, s = src.batch(np.array([[0, 0], [1, 2]]), 4, pred, "cpu")
    a[:, :, 6] = torch.tensor([[0.0, 1.0, 0.2, 0.0], [-0.7, 0.0, 0.0, 0.0]])
    w = event_weights(a, 5.0)
    assert w.tolist() == [[1.0, 5.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0]]
    with torch.no_grad():
        tf_plain, roll_plain = clip_losses(pred, z, a, s, rollout_steps=2)
        tf_one, _ = clip_losses(pred, z, a, s, rollout_steps=2, event_weight=1.0)
        tf_w, roll_w = clip_losses(pred, z, a, s, rollout_steps=2, event_weight=5.0)
        per = (
            (
                torch.nn.functional.layer_norm(pred(z[:, :-1], a[:, :-1], s[:, :-1]), (96,))
                - z[:, 1:]
            )
            .abs()
            .mean(dim=(-2, -1))
        )  # (B, T-1) per-transition L1
    assert float(tf_one) == pytest.approx(float(tf_plain))
    assert float(tf_plain) == pytest.approx(float(per.mean()), rel=1e-5)
    ww = w[:, :-1]
    assert float(tf_w) == pytest.approx(float((per * ww).sum() / ww.sum()), rel=1e-5)
    # rollout step 1 is transition 0: weights 1 and 5 for the two clips
    assert float(roll_w[0]) == pytest.approx(float((per[0, 0] + 5 * per[1, 0]) / 6), rel=1e-5)
    assert float(roll_plain[0]) == pytest.approx(float(per[:, 0].mean()), rel=1e-5)


def test_motion_weight_weights_tokens_by_their_true_change(data):
    from worldmodel.training.train import motion_weights
    from worldmodel.training.train_config import build_predictor

    src = _source(data)
    pred = build_predictor(TrainConfig(), src.feature_dim, src.grid)
    z, a, s = src.batch(np.array([[0, 0], [1, 2]]), 4, pred, "cpu")
    # one token moves, the rest stand still: only the mover is up-weighted
    still = z[:, :1].expand_as(z).clone()
    still[:, 2, 5] += 1.0
    w = motion_weights(still, 3.0)
    assert w.shape == (2, 3, 16)
    change = torch.zeros(2, 3, 16)
    change[:, 1, 5] = change[:, 2, 5] = 1.0  # z1 -> z2 moves it, z2 -> z3 moves it back
    torch.testing.assert_close(w, 1.0 + 3.0 * change / change.mean())
    assert motion_weights(z[:, :1].expand_as(z), 3.0).eq(1.0).all()  # nothing moves: 1
    with torch.no_grad():
        tf_plain, _ = clip_losses(pred, z, a, s, rollout_steps=2)
        tf_zero, _ = clip_losses(pred, z, a, s, rollout_steps=2, motion_weight=0.0)
        tf_m, roll_m = clip_losses(pred, z, a, s, rollout_steps=2, motion_weight=2.0)
        tf = torch.nn.functional.layer_norm(pred(z[:, :-1], a[:, :-1], s[:, :-1]), (96,))
        per = (tf - z[:, 1:]).abs().mean(dim=-1)  # (B, T-1, N) per-token L1
    assert float(tf_zero) == pytest.approx(float(tf_plain))
    m = motion_weights(z, 2.0)
    assert float(tf_m) == pytest.approx(float((per * m).sum() / m.sum()), rel=1e-5)
    assert float(roll_m[0]) == pytest.approx(
        float((per[:, 0] * m[:, 0]).sum() / m[:, 0].sum()), rel=1e-5
    )
    assert float(tf_m) != pytest.approx(float(tf_plain), rel=1e-3)  # the weights matter
    a2 = a.clone()
    a2[:, :, 6] = 0.0
    a2[0, 1, 6] = 1.0  # one gripper event, at transition 1 of clip 0: both weights multiply
    ew = torch.ones(2, 3)
    ew[0, 1] = 5.0
    with torch.no_grad():
        tf_me, _ = clip_losses(pred, z, a2, s, rollout_steps=2, event_weight=5.0, motion_weight=2.0)
        tf2 = torch.nn.functional.layer_norm(pred(z[:, :-1], a2[:, :-1], s[:, :-1]), (96,))
        per2 = (tf2 - z[:, 1:]).abs().mean(dim=-1)
    both = m * ew[..., None]
    assert float(tf_me) == pytest.approx(float((per2 * both).sum() / both.sum()), rel=1e-5)


def test_init_from_starts_from_a_saved_predictor(data, tmp_path, small_train_cfg):
    from worldmodel.errors import CheckpointError

    root = data[0]
    first = small_train_cfg(tmp_path / "first", encoder_dir=str(root / "encoder"), max_steps=20)
    train(first, source=_source(data))
    saved = WorldModel.load(tmp_path / "first" / "world_model").predictor.state_dict()
    # one step at lr ~0 from the saved weights leaves them (almost) as they were
    tuned = dataclasses.replace(
        first,
        out_dir=str(tmp_path / "tuned"),
        init_from=str(tmp_path / "first" / "world_model"),
        max_steps=1,
        lr=1e-9,
        start_lr=1e-9,
        warmup_steps=0,
        decay_steps=0,
        motion_weight=1.0,
    )
    train(tuned, source=_source(data))
    got = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["model"]
    for k, v in saved.items():
        torch.testing.assert_close(got[k], v, atol=1e-6, rtol=1e-5)
    fresh = dataclasses.replace(tuned, out_dir=str(tmp_path / "fresh"), init_from="")
    train(fresh, source=_source(data))
    other = torch.load(tmp_path / "fresh" / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.allclose(other[k], v) for k, v in saved.items())
    wrong = dataclasses.replace(tuned, out_dir=str(tmp_path / "wrong"), pool_kernel=1)
    with pytest.raises(CheckpointError, match="init_from"):
        train(wrong, source=_source(data))
    with pytest.raises(CheckpointError):
        bad = dataclasses.replace(tuned, out_dir=str(tmp_path / "x"), init_from=str(tmp_path))
        train(bad, source=_source(data))
    torch.manual_seed(1)
    other_encoder = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    _, dataset, _, feats = data
    elsewhere = EpisodeSource(dataset, other_encoder, features=feats.__getitem__)
    with pytest.raises(CheckpointError, match="encoder"):
        train(dataclasses.replace(tuned, out_dir=str(tmp_path / "y")), source=elsewhere)
    _, dataset, encoder, feats = data
    other_view = EpisodeSource(dataset, encoder, features=feats.__getitem__, views=("wrist",))
    with pytest.raises(CheckpointError, match="views"):
        train(dataclasses.replace(tuned, out_dir=str(tmp_path / "z")), source=other_view)


def test_train_learns_logs_and_saves(data, tmp_path, small_train_cfg):
    root = data[0]
    cfg = small_train_cfg(
        tmp_path / "run", encoder_dir=str(root / "encoder"), max_steps=60, eval_every=30
    )
    report = train(cfg, source=_source(data))
    for key in (
        "val_tf",
        "copy_tf",
        "tf_ratio",
        "val_roll1",
        "val_roll2",
        "copy_roll2",
        "roll2_ratio",
    ):
        assert key in report
    rows = np.genfromtxt(tmp_path / "run" / "train_log.csv", delimiter=",", names=True)
    assert len(rows) == 60
    assert rows["loss"][-10:].mean() < 0.7 * rows["loss"][:5].mean()  # it learns
    evals = np.genfromtxt(tmp_path / "run" / "eval_log.csv", delimiter=",", names=True)
    assert evals["step"].tolist() == [30, 60]
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert not (tmp_path / "run" / "checkpoint.pt.tmp").exists()
    wm = WorldModel.load(tmp_path / "run" / "world_model")
    exterior = dataclasses.asdict(data[1].meta.camera("exterior"))
    assert wm.camera == json.loads(json.dumps(exterior))  # the data's view
    assert wm.rollout(torch.zeros(1, 16, 96), torch.zeros(1, 7), torch.zeros(1, 2, 3, 7)).shape == (
        1,
        2,
        3,
        16,
        96,
    )


class _CrashError(RuntimeError):
    pass


class _CrashingSource:
    """Delegates to a source, raising on the n-th batch (a kill in the middle of training)."""

    def __init__(self, inner, crash_at: int) -> None:
        self.inner, self.calls, self.crash_at = inner, 0, crash_at

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def batch(self, *args):
        self.calls += 1
        if self.calls == self.crash_at:
            raise _CrashError("simulated kill")
        return self.inner.batch(*args)


def test_crash_then_rerun_resumes_identically(data, tmp_path, small_train_cfg):
    cfg = small_train_cfg(tmp_path / "straight", max_steps=25, eval_every=100)
    train(cfg, source=_source(data))
    crashed = dataclasses.replace(cfg, out_dir=str(tmp_path / "crashed"))
    with pytest.raises(_CrashError):
        train(crashed, source=_CrashingSource(_source(data), crash_at=14))  # after ckpt at 10
    state = torch.load(tmp_path / "crashed" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    train(crashed, source=_source(data))
    a = np.genfromtxt(tmp_path / "straight" / "train_log.csv", delimiter=",", names=True)
    b = np.genfromtxt(tmp_path / "crashed" / "train_log.csv", delimiter=",", names=True)
    assert b["step"].tolist() == list(range(1, 26))
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)
    wa = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "crashed" / "checkpoint.pt", weights_only=True)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)


def test_init_from_a_published_predictor_file_fine_tunes_it(data, tmp_path, small_train_cfg):
    """#23: wm-train init_from=<published V-JEPA 2-AC .pt> (a tiny one in the published layout)."""
    from worldmodel.checkpoints.predictor import save_published_format
    from worldmodel.errors import CheckpointError
    from worldmodel.models.layout import Layout
    from worldmodel.models.predictor import ACPredictor, PredictorConfig

    torch.manual_seed(3)
    published = ACPredictor(PredictorConfig(encoder_dim=96, width=96, depth=1, num_heads=16,
                                            mlp_dim=128, input_grid=(8, 8)))  # fmt: skip
    save_published_format(published, tmp_path / "vjepa2-ac-tiny.pt")
    cfg = small_train_cfg(
        tmp_path / "tuned", init_from=str(tmp_path / "vjepa2-ac-tiny.pt"), max_steps=1,
        lr=1e-9, start_lr=1e-9, warmup_steps=0, decay_steps=0,
    )  # fmt: skip
    train(cfg, source=_source(data))
    wm = WorldModel.load(tmp_path / "tuned" / "world_model")
    assert wm.predictor.cfg.num_heads == 16 and wm.predictor.cfg.action_scale is None
    for k, v in published.state_dict().items():
        torch.testing.assert_close(wm.predictor.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    joints = _source(data)
    joints.layout = Layout(6, 6, [f"j{i}" for i in range(6)], [f"dj{i}" for i in range(6)],
                           "delta", [-0.1] * 6, [0.1] * 6)  # fmt: skip
    with pytest.raises(CheckpointError, match="7-D end-effector"):
        train(dataclasses.replace(cfg, out_dir=str(tmp_path / "joints")), source=joints)
    other = ACPredictor(PredictorConfig(encoder_dim=64, width=96, depth=1, num_heads=16,
                                        mlp_dim=128, input_grid=(8, 8)))  # fmt: skip
    save_published_format(other, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="64-D encoder features"):
        train(dataclasses.replace(cfg, out_dir=str(tmp_path / "x"), init_from=str(tmp_path / "other.pt")),
              source=_source(data))  # fmt: skip
