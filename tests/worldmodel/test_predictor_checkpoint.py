"""Strict loading of the published AC predictor format."""

from __future__ import annotations

import pytest
import torch

from worldmodel.checkpoints.predictor import (
    load_published_predictor,
    save_published_format,
    strip_prefixes,
)
from worldmodel.errors import CheckpointError
from worldmodel.models.predictor import ACPredictor, PredictorConfig

CFG = PredictorConfig(
    encoder_dim=24, width=48, depth=2, num_heads=2, mlp_dim=64, input_grid=(4, 4), pool_kernel=1
)


@pytest.fixture
def model() -> ACPredictor:
    torch.manual_seed(1)
    return ACPredictor(CFG).eval()


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 2, 16, 24, generator=g),
        torch.randn(2, 2, 7, generator=g),
        torch.randn(2, 2, 7, generator=g),
    )


def test_roundtrip_reproduces_outputs(model, tmp_path):
    path = tmp_path / "ac.pt"
    save_published_format(model, path)
    raw = torch.load(path, weights_only=True)
    assert "module.extrinsics_encoder.weight" in raw["predictor"]
    assert "module.predictor_blocks.1.attn.qkv.bias" in raw["predictor"]
    loaded = load_published_predictor(path, num_heads=2, input_grid=(4, 4)).eval()
    assert loaded.cfg == CFG  # sizes inferred from the shapes
    z, a, s = _inputs()
    torch.testing.assert_close(loaded(z, a, s), model(z, a, s), atol=0, rtol=0)
    load_published_predictor(path, cfg=CFG)  # explicit config also fine


def _write(tmp_path, state):
    path = tmp_path / "bad.pt"
    torch.save({"predictor": state, "encoder": {}}, path)
    return path


def test_missing_unexpected_misshaped_all_listed(model, tmp_path):
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    del state["module.extrinsics_encoder.bias"]
    state["module.predictor_blocks.0.attn.extra"] = torch.zeros(3)
    state["module.predictor_proj.weight"] = torch.zeros(25, 48)
    with pytest.raises(CheckpointError) as info:
        load_published_predictor(_write(tmp_path, state), cfg=CFG)
    msg = str(info.value)
    assert "bad.pt" in msg
    assert "extrinsics_encoder.bias" in msg
    assert "predictor_blocks.0.attn.extra" in msg
    assert "predictor_proj.weight: checkpoint (25, 48) vs model (24, 48)" in msg


def test_wrong_config_depth_rejected(model, tmp_path):
    path = tmp_path / "ac.pt"
    save_published_format(model, path)
    deeper = PredictorConfig(**{**CFG.__dict__, "depth": 3})
    with pytest.raises(CheckpointError, match=r"predictor_blocks\.2\."):
        load_published_predictor(path, cfg=deeper)


def test_not_a_published_file(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"encoder": {}}, path)
    with pytest.raises(CheckpointError, match="'predictor'"):
        load_published_predictor(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_published_predictor(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_published_predictor(tmp_path / "junk.pt")


def test_strip_prefixes():
    t = torch.zeros(1)
    out = strip_prefixes({"module.backbone.a.b": t, "backbone.module.c": t, "d": t})
    assert sorted(out) == ["a.b", "c", "d"]
