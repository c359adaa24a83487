"""Battery: faults during wm-train. Each case: the specific error, the run folder unchanged by
the failed call, and a rerun (same process) that works."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from worldmodel.data.episodes import open_dataset
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.errors import CheckpointError
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.training.train import train
from worldmodel.training.train_config import TrainConfig
from worldmodel.training.train_data import EpisodeSource


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(root / "ds", num_episodes=6, lengths=10, image_size=32, seed=0)
    torch.manual_seed(0)
    encoder = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    dataset = open_dataset(root / "ds")
    feats = {
        i: encoder.encode_frames(dataset.read_episode_frames(i)).numpy().astype(np.float16)
        for i in range(len(dataset))
    }
    return dataset, encoder, feats


def _cfg(out, **overrides) -> TrainConfig:
    base = dict(out_dir=str(out), clip_len=4, rollout_steps=2, batch_size=4, max_steps=4,
                lr=2e-3, start_lr=2e-4, warmup_steps=5, decay_steps=10, eval_every=100,
                eval_batches=1, ckpt_every=4, val_fraction=0.34, progress=False)  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def _source(data, poison_episode: int | None = None):
    dataset, encoder, feats = data

    def features(ep: int) -> np.ndarray:
        f = feats[ep]
        if ep == poison_episode:
            f = f.copy()
            f[2] = np.nan  # one frame's features: a corrupt cache entry or a bad encoder
        return f

    return EpisodeSource(dataset, encoder, features=features)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A run folder with a checkpoint at step 4 and its exported world model."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(_cfg(run), source=_source(data))
    return run


def test_nan_loss_stops_before_the_update_and_the_checkpoint_is_kept(
    data, trained, tmp_path, snapshot
):
    run = shutil.copytree(trained, tmp_path / "run")
    snap = snapshot(run)
    bad = _source(data)
    bad.features = lambda ep: np.full_like(data[2][ep], np.nan)  # a corrupt cache, say
    with pytest.raises(FloatingPointError, match="loss is nan at step 5"):
        train(_cfg(run, max_steps=6), source=bad)
    snap.assert_unchanged()
    train(_cfg(run, max_steps=6), source=_source(data))  # the fix: rerun resumes from step 4
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6


def test_resume_with_another_predictor_size_names_the_misshaped_weights(
    data, trained, tmp_path, snapshot
):
    run = shutil.copytree(trained, tmp_path / "run")
    snap = snapshot(run)
    with pytest.raises(CheckpointError, match="mis-shaped") as err:
        train(_cfg(run, max_steps=6, predictor="small"), source=_source(data))
    assert "checkpoint.pt" in str(err.value)
    snap.assert_unchanged()
    train(_cfg(run, max_steps=5), source=_source(data))


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda wm: shutil.rmtree(wm), "expected world_model.json"),
        (lambda wm: (wm / "world_model.json").write_text("[]"), "must be a JSON object"),
        (lambda wm: (wm / "predictor.safetensors").write_bytes(b"\0" * 8), "not a readable"),
    ],
    ids=["init_from_missing", "init_from_json_list", "init_from_truncated_weights"],
)
def test_init_from_a_bad_world_model(data, trained, tmp_path, snapshot, damage, match):
    wm = shutil.copytree(trained / "world_model", tmp_path / "wm")
    damage(wm)
    snap = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=match):
        train(_cfg(tmp_path / "second", init_from=str(wm)), source=_source(data))
    snap.assert_unchanged()
    train(_cfg(tmp_path / "third", max_steps=1), source=_source(data))  # the process goes on
