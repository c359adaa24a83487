"""Strict loading of released .pt, Hugging Face and our own encoder checkpoints."""

import json

import pytest
import torch
from safetensors.torch import save_file

from worldmodel.checkpoints.encoder import (
    load_encoder,
    load_hf_encoder,
    load_published_encoder,
    save_encoder,
)
from worldmodel.errors import CheckpointError
from worldmodel.models.encoder import EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig

# Head dim 40: RoPE chunk 12, 4 leftover dims. Width 80 is not published -> heads passed in.
TINY = EncoderConfig(image_size=32, patch_size=8, embed_dim=80, depth=2, num_heads=2, mlp_dim=112)


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(0)
    return VisionTransformer(TINY).eval()


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 32, 32)


def to_hf_state(model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Rename/split our tensors the way Hugging Face VJEPA2Model names them."""
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if key.startswith("patch_embed."):
            out["encoder.embeddings.patch_embeddings.proj." + parts[-1]] = value
        elif key.startswith("norm."):
            out["encoder.layernorm." + parts[-1]] = value
        elif ".attn.qkv." in key:
            for name, chunk in zip(("query", "key", "value"), value.chunk(3, 0), strict=True):
                out[f"encoder.layer.{parts[1]}.attention.{name}.{parts[-1]}"] = chunk.clone()
        else:
            rest = ".".join(parts[2:]).replace("attn.proj", "attention.proj")
            out[f"encoder.layer.{parts[1]}.{rest}"] = value
    out["predictor.embeddings.mask_tokens"] = torch.zeros(10, 1, 1, 8)  # ignored
    return out


def write_hf_folder(folder, model):
    folder.mkdir()
    cfg = model.cfg
    (folder / "config.json").write_text(json.dumps({
        "model_type": "vjepa2", "hidden_size": cfg.embed_dim, "num_attention_heads": cfg.num_heads,
        "num_hidden_layers": cfg.depth, "patch_size": cfg.patch_size, "crop_size": cfg.image_size,
        "tubelet_size": cfg.tubelet_size, "layer_norm_eps": 1e-6,
    }))  # fmt: skip
    save_file({k: v.contiguous() for k, v in to_hf_state(model).items()},
              str(folder / "model.safetensors"))  # fmt: skip


def write_published(path, model, pos_embed=True):
    state = {f"module.backbone.{k}": v for k, v in model.state_dict().items()}
    if pos_embed:
        state["module.backbone.pos_embed"] = torch.zeros(1, 4, TINY.embed_dim)
    noisy = {k: v + 1.0 for k, v in state.items()}  # a different "encoder" entry
    torch.save({"encoder": noisy, "target_encoder": state, "predictor": {},
                "opt": {"lr": torch.tensor(1e-3)}, "epoch": 3}, path)  # fmt: skip


def test_published_checkpoint_reproduces_features(tmp_path, source_model, video):
    path = tmp_path / "vitl.pt"
    write_published(path, source_model)
    loaded = load_published_encoder(path, image_size=32, num_heads=2)
    assert loaded.cfg == TINY
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), source_model(video), atol=1e-6, rtol=0)
        other = load_published_encoder(path, entry="encoder", image_size=32, num_heads=2)
        assert not torch.allclose(other(video), source_model(video))


def test_published_unknown_width_needs_heads(tmp_path, source_model):
    path = tmp_path / "x.pt"
    write_published(path, source_model)
    with pytest.raises(CheckpointError, match="num_heads"):
        load_published_encoder(path, image_size=32)


def test_published_mismatch_lists_every_bad_key(tmp_path, source_model):
    state = {f"module.backbone.{k}": v.clone() for k, v in source_model.state_dict().items()}
    del state["module.backbone.blocks.1.mlp.fc2.bias"]
    state["module.backbone.blocks.0.extra.weight"] = torch.zeros(3)
    state["module.backbone.norm.weight"] = torch.zeros(81)
    path = tmp_path / "bad.pt"
    torch.save({"target_encoder": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_published_encoder(path, image_size=32, num_heads=2)
    msg = str(info.value)
    assert "blocks.1.mlp.fc2.bias" in msg and "blocks.0.extra.weight" in msg
    assert "norm.weight: checkpoint (81,)" in msg


def test_missing_file_and_entry(tmp_path, source_model):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_published_encoder(tmp_path / "nope.pt")
    path = tmp_path / "p.pt"
    write_published(path, source_model)
    with pytest.raises(CheckpointError, match="no entry"):
        load_published_encoder(path, entry="ema", num_heads=2)


def test_hf_folder_reproduces_features(tmp_path, source_model, video):
    write_hf_folder(tmp_path / "hf", source_model)
    loaded = load_hf_encoder(tmp_path / "hf")
    assert loaded.cfg == TINY
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), source_model(video), atol=1e-6, rtol=0)


def test_hf_folder_mismatch(tmp_path, source_model):
    folder = tmp_path / "hf"
    write_hf_folder(folder, source_model)
    state = to_hf_state(source_model)
    del state["encoder.layer.0.attention.key.weight"]
    state["encoder.layer.0.surprise.weight"] = torch.zeros(2)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="surprise"):
        load_hf_encoder(folder)
    del state["encoder.layer.0.surprise.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="query/key/value"):
        load_hf_encoder(folder)


def test_our_format_roundtrip_and_mismatch(tmp_path, source_model, video):
    pre = PreprocessConfig(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_encoder(tmp_path / "ours", source_model, pre)
    loaded, pre_loaded = load_encoder(tmp_path / "ours")
    assert pre_loaded == pre and loaded.cfg == TINY
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), source_model(video), atol=0, rtol=0)
    meta = json.loads((tmp_path / "ours" / "config.json").read_text())
    meta["encoder"]["depth"] = 3
    (tmp_path / "ours" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"missing \['blocks.2"):
        load_encoder(tmp_path / "ours")


def test_matches_transformers_vjepa2(tmp_path):
    """The real check of the RoPE convention: a random HF VJEPA2Model, saved and loaded."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    hf_cfg = transformers.VJEPA2Config(
        patch_size=8, crop_size=32, frames_per_clip=4, hidden_size=80, num_attention_heads=2,
        num_hidden_layers=2, mlp_ratio=1.4, pred_hidden_size=32, pred_num_attention_heads=2,
        pred_num_hidden_layers=1, num_pooler_layers=1,
    )  # fmt: skip
    hf_model = transformers.VJEPA2Model(hf_cfg).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    ours = load_hf_encoder(tmp_path / "hf")
    assert ours.cfg.mlp_dim == 112 and ours.cfg.embed_dim == 80
    video = torch.randn(2, 4, 3, 32, 32)  # HF layout (B, T, C, H, W)
    with torch.no_grad():
        expected = hf_model(pixel_values_videos=video, skip_predictor=True).last_hidden_state
        got = ours(video.permute(0, 2, 1, 3, 4))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
