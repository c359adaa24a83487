"""WorldModel: protocol, encode, KV-cached rollout vs a naive per-sample loop, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from planning.protocol import LatentDynamics
from worldmodel.errors import CameraMismatchError, CheckpointError
from worldmodel.models.predictor import ACPredictor, PredictorConfig
from worldmodel.models.state_ops import apply_action
from worldmodel.world_model import RolloutHistory, WorldModel, layer_norm

CFG = PredictorConfig(
    encoder_dim=24, width=48, depth=2, num_heads=2, mlp_dim=64, input_grid=(4, 4), pool_kernel=2
)


class FakeEncoder:
    """Deterministic stand-in for FrozenEncoder: 4x4 grid of mean colours, fixed projection."""

    grid = (4, 4)
    embed_dim = 24

    def __init__(self, seed: int = 0) -> None:
        self.proj = np.random.default_rng(seed).normal(size=(3, 24)).astype(np.float32)

    def encode_frames(self, frames) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames)).float() / 255.0  # (B, H, W, 3)
        b, h, w, _ = x.shape
        cells = x.view(b, 4, h // 4, 4, w // 4, 3).mean(dim=(2, 4)).reshape(b, 16, 3)
        return cells @ torch.from_numpy(self.proj)  # (B, 16, 24)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "proj.npy", self.proj)

    @classmethod
    def load(cls, folder: Path) -> FakeEncoder:
        enc = cls()
        enc.proj = np.load(folder / "proj.npy")
        return enc


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(FakeEncoder(), ACPredictor(CFG))


def _context(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = layer_norm(torch.randn(b, CFG.tokens_per_frame, CFG.encoder_dim, generator=g))
    state = torch.cat([torch.rand(b, 6, generator=g) - 0.5, torch.rand(b, 1, generator=g)], 1)
    return z, state


def _naive(wm: WorldModel, z, state, actions):
    """Per-sample, full recompute every step, states propagated one at a time."""
    B, S, H, _ = actions.shape
    out = torch.zeros(B, S, H, *z.shape[1:])
    for b in range(B):
        for s in range(S):
            zs, ss, acts = [z[b]], [state[b]], actions[b, s]
            for h in range(H):
                pred = wm.predictor(
                    torch.stack(zs)[None], acts[None, : h + 1], torch.stack(ss)[None]
                )[0, -1]
                zs.append(layer_norm(pred))
                ss.append(apply_action(ss[-1], acts[h]))
                out[b, s, h] = zs[-1]
    return out


def test_implements_protocol(wm):
    assert isinstance(wm, LatentDynamics)
    assert wm.action_dim == 7


@pytest.mark.parametrize("batch", [1, 4])
def test_encode_pooled_layernormed(wm, batch):
    imgs = np.random.default_rng(0).integers(0, 255, size=(batch, 16, 16, 3), dtype=np.uint8)
    z = wm.encode(imgs, np.zeros((batch, 7), np.float32))
    assert z.shape == (batch, CFG.tokens_per_frame, CFG.encoder_dim)
    torch.testing.assert_close(z.mean(-1), torch.zeros(batch, 4), atol=1e-5, rtol=0)
    # pooled: equal to pooling the raw features by hand
    raw = wm.encoder.encode_frames(imgs).view(batch, 2, 2, 2, 2, 24).mean(dim=(2, 4))
    torch.testing.assert_close(z, layer_norm(raw.reshape(batch, 4, 24)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 4])
def test_rollout_matches_naive_loop(wm, batch):
    z, state = _context(batch)
    actions = torch.randn(batch, 3, 3, 7, generator=torch.Generator().manual_seed(1)) * 0.1
    out = wm.rollout(z, state, actions)
    assert out.shape == (batch, 3, 3, CFG.tokens_per_frame, CFG.encoder_dim)
    with torch.no_grad():
        ref = _naive(wm, z, state, actions)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # samples with different actions differ; identical samples agree
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4


def test_rollout_with_history_equals_full_sequence(wm):
    z, state = _context(2)
    g = torch.Generator().manual_seed(2)
    hist = RolloutHistory(
        layer_norm(torch.randn(2, 2, 4, 24, generator=g)),
        torch.randn(2, 2, 7, generator=g),
        torch.randn(2, 2, 7, generator=g) * 0.1,
    )
    actions = torch.randn(2, 3, 2, 7, generator=g) * 0.1
    out = wm.rollout(z, state, actions, history=hist)
    with torch.no_grad():
        for b in range(2):
            for s in range(3):
                zz = torch.cat([hist.z[b], z[b : b + 1]])[None]
                st = torch.cat([hist.states[b], state[b : b + 1]])[None]
                aa = torch.cat([hist.actions[b], actions[b, s, :1]])[None]
                ref = layer_norm(wm.predictor(zz, aa, st)[0, -1])
                torch.testing.assert_close(out[b, s, 0], ref, atol=1e-5, rtol=0)


def test_rollout_rejects_bad_shapes(wm):
    z, state = _context(2)
    with pytest.raises(ValueError, match="actions"):
        wm.rollout(z, state, torch.zeros(2, 3, 2, 6))
    with pytest.raises(ValueError, match="state"):
        wm.rollout(z, state[:, :6], torch.zeros(2, 3, 2, 7))


def test_save_load_roundtrip(wm, tmp_path):
    wm.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm", encoder_loader=FakeEncoder.load)
    z, state = _context(2)
    actions = torch.randn(2, 2, 2, 7) * 0.1
    torch.testing.assert_close(loaded.rollout(z, state, actions), wm.rollout(z, state, actions))
    imgs = np.full((1, 16, 16, 3), 7, np.uint8)
    torch.testing.assert_close(
        loaded.encode(imgs, np.zeros((1, 7))), wm.encode(imgs, np.zeros((1, 7)))
    )


def test_save_replaces_atomically(wm, tmp_path):
    folder = tmp_path / "wm"
    (tmp_path / "wm.tmp").mkdir()  # leftover of a killed save
    (tmp_path / "wm.tmp" / "junk").write_text("x")
    folder.mkdir()
    (folder / "stale_file").write_text("from an older save")
    wm.save(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]
    assert not (folder / "stale_file").exists() and (folder / "predictor.safetensors").is_file()
    WorldModel.load(folder, encoder_loader=FakeEncoder.load)


def test_load_rejects_mismatch(wm, tmp_path):
    wm.save(tmp_path / "wm")
    meta_path = tmp_path / "wm" / "world_model.json"
    meta = json.loads(meta_path.read_text())
    meta["predictor"]["depth"] = 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"predictor_blocks\.2"):
        WorldModel.load(tmp_path / "wm", encoder_loader=FakeEncoder.load)
    with pytest.raises(CheckpointError, match="expected"):
        WorldModel.load(tmp_path / "nothing", encoder_loader=FakeEncoder.load)


def test_encoder_predictor_mismatch():
    enc = FakeEncoder()
    enc.grid = (8, 8)
    with pytest.raises(ValueError, match="grid"):
        WorldModel(enc, ACPredictor(CFG))


CAMERA = {
    "name": "exterior", "width": 64, "height": 64, "fovy_deg": 40.0, "parent": "world",
    "pos_m": [1.15, -0.15, 0.5], "quat_wxyz": [0.6, 0.4, 0.3, 0.62],
}  # fmt: skip


def test_camera_record_roundtrips_and_guards_the_view(tmp_path):
    torch.manual_seed(0)
    WorldModel(FakeEncoder(), ACPredictor(CFG), CAMERA).save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm", encoder_loader=FakeEncoder.load)
    assert loaded.camera == CAMERA
    loaded.check_camera(dict(CAMERA))
    flipped = dict(CAMERA, quat_wxyz=[-q for q in CAMERA["quat_wxyz"]])  # same rotation
    loaded.check_camera(flipped)
    for change in ({"pos_m": [1.1, -0.45, 0.42]}, {"fovy_deg": 50.0}, {"width": 128}):
        with pytest.raises(CameraMismatchError, match=next(iter(change))):
            loaded.check_camera(dict(CAMERA, **change))
    meta_path = tmp_path / "wm" / "world_model.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "camera": [1, 2]}))
    with pytest.raises(CheckpointError, match="camera"):
        WorldModel.load(tmp_path / "wm", encoder_loader=FakeEncoder.load)


def test_model_without_camera_record_checks_nothing(wm, tmp_path):
    wm.save(tmp_path / "wm")
    assert "camera" not in json.loads((tmp_path / "wm" / "world_model.json").read_text())
    loaded = WorldModel.load(tmp_path / "wm", encoder_loader=FakeEncoder.load)
    assert loaded.camera is None
    loaded.check_camera(dict(CAMERA, fovy_deg=90.0))
