"""Encoder checkpoints: the released V-JEPA 2 ``.pt`` files, Hugging Face ``VJEPA2Model`` folders
and our own folders (``model.safetensors`` + ``config.json``).

Every loader maps every tensor by name and checks its shape; anything missing, unexpected or
mis-shaped raises :class:`CheckpointError` listing all offenders. Nothing loads with
``strict=False``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from worldmodel.checkpoints.strict import (
    describe,
    load_state_strict,
    read_json_object,
    read_safetensors,
)
from worldmodel.errors import CheckpointError
from worldmodel.models.encoder import EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig

OUR_FORMAT = "worldmodel-encoder"
OUR_FORMAT_VERSION = 1
# Heads are not visible in tensor shapes; published widths -> heads.
PUBLISHED_HEADS = {1024: 16, 1280: 16, 1408: 22}


def _infer_config(state: dict[str, Tensor], image_size: int, num_heads: int | None,
                  norm_eps: float, source: str) -> EncoderConfig:  # fmt: skip
    """EncoderConfig from tensor shapes of a published-named state dict."""
    try:
        proj = state["patch_embed.proj.weight"]  # (D, C, t, p, p)
        mlp_dim = state["blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(
            f"{source}: no encoder tensor {err} (keys: {list(state)[:5]}...)"
        ) from err
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    width = proj.shape[0]
    heads = num_heads or PUBLISHED_HEADS.get(width)
    if heads is None:
        raise CheckpointError(f"{source}: width {width} is not a published size; pass num_heads")
    return EncoderConfig(
        image_size=image_size, patch_size=proj.shape[-1], tubelet_size=proj.shape[2],
        in_chans=proj.shape[1], embed_dim=width, depth=depth, num_heads=heads, mlp_dim=mlp_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state, norm_eps=norm_eps,
    )  # fmt: skip


def load_published_encoder(
    path: str | os.PathLike,
    entry: str | None = None,
    image_size: int = 256,
    num_heads: int | None = None,
) -> VisionTransformer:
    """Load a released V-JEPA 2 ``torch.save`` checkpoint (weights_only).

    Args:
        path: the ``.pt`` file.
        entry: ``"target_encoder"`` or ``"encoder"``; default: target_encoder when present.
        image_size: resolution the model is used at (not stored in the file).
        num_heads: needed only for widths that are not published sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"published checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of several types
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint (weights only): {describe(err)}"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    if entry is None:
        entry = next((e for e in ("target_encoder", "encoder") if e in ckpt), None)
        if entry is None and not all(isinstance(v, Tensor) for v in ckpt.values()):
            raise CheckpointError(
                f"{path}: expected a 'target_encoder' or 'encoder' entry (or a bare state dict); "
                f"entries: {sorted(map(str, ckpt))[:12]}"
            )
        raw = ckpt if entry is None else ckpt[entry]
    elif entry not in ckpt:
        raise CheckpointError(f"{path}: no entry {entry!r}; entries: {sorted(ckpt)}")
    else:
        raw = ckpt[entry]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path}[{entry}]: expected a non-empty dict of encoder tensors")
    state = {}
    for key, value in raw.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}[{entry}]: {key} is not a tensor")
        name = key.removeprefix("module.").removeprefix("backbone.")
        if name != "pos_embed":
            state[name] = value
    source = f"{path}[{entry}]"
    cfg = _infer_config(state, image_size, num_heads, 1e-6, source)
    model = VisionTransformer(cfg)
    load_state_strict(model, state, source)
    return model.eval()


def _hf_to_published(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Rename Hugging Face VJEPA2 encoder tensors to our names; fuse q/k/v into qkv."""
    out: dict[str, Tensor] = {}
    qkv_parts: dict[str, dict[str, Tensor]] = {}
    unknown = []
    for key, value in state.items():
        key = key.removeprefix("vjepa2.")
        if key.startswith(("predictor.", "pooler.", "classifier.")):
            continue
        if key.startswith("encoder.embeddings.patch_embeddings.proj."):
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("encoder.layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif m := re.match(r"encoder\.layer\.(\d+)\.attention\.(query|key|value)\.(\w+)$", key):
            qkv_parts.setdefault(f"blocks.{m.group(1)}.attn.qkv.{m.group(3)}", {})[m.group(2)] = (
                value
            )
        elif m := re.match(r"encoder\.layer\.(\d+)\.attention\.proj\.(\w+)$", key):
            out[f"blocks.{m.group(1)}.attn.proj.{m.group(2)}"] = value
        elif m := re.match(r"encoder\.layer\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.(\w+)$", key):
            out[f"blocks.{m.group(1)}.{m.group(2)}.{m.group(3)}"] = value
        else:
            unknown.append(key)
    partial = []
    for name, parts in qkv_parts.items():
        if set(parts) != {"query", "key", "value"}:
            partial.append(f"{name} has only {sorted(parts)} of query/key/value")
            continue
        out[name] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    if unknown or partial:
        raise CheckpointError(f"{source}: unexpected tensors {sorted(unknown)}; {partial}")
    return out


# Hugging Face config values our encoder implements (others would load and compute other features).
HF_SUPPORTED = {"hidden_act": ("gelu",), "model_type": ("vjepa2",)}


def check_hf_config(hf_cfg: dict, path: Path) -> None:
    """Refuse a Hugging Face config whose settings we do not implement, naming the field."""
    for key, allowed in HF_SUPPORTED.items():
        if key in hf_cfg and hf_cfg[key] not in allowed:
            raise CheckpointError(
                f"{path}: {key}={hf_cfg[key]!r} is not supported (this encoder implements "
                f"{key} in {list(allowed)})"
            )
    for key in ("crop_size", "patch_size", "num_attention_heads"):
        value = hf_cfg.get(key)
        if value is not None and not (isinstance(value, int | list) and value):
            raise CheckpointError(f"{path}: {key} must be a positive integer, got {value!r}")


def load_hf_encoder(folder: str | os.PathLike) -> VisionTransformer:
    """Load the encoder of a Hugging Face ``VJEPA2Model`` folder (config.json + *.safetensors)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    shards = sorted(folder.glob("*.safetensors"))
    if not config_path.is_file() or not shards:
        raise CheckpointError(f"{folder}: expected config.json and *.safetensors")
    hf_cfg = read_json_object(config_path, "Hugging Face config")
    check_hf_config(hf_cfg, config_path)
    state: dict[str, Tensor] = {}
    for shard in shards:
        state.update(read_safetensors(shard))
    source = str(folder)
    state = _hf_to_published(state, source)
    patch = hf_cfg.get("patch_size", 16)
    cfg = _infer_config(
        state, int(hf_cfg.get("crop_size", 256)), hf_cfg.get("num_attention_heads"),
        float(hf_cfg.get("layer_norm_eps", 1e-6)), source,
    )  # fmt: skip
    if cfg.patch_size != (patch[0] if isinstance(patch, list) else patch):
        raise CheckpointError(f"{config_path}: patch_size {patch} vs weights {cfg.patch_size}")
    model = VisionTransformer(cfg)
    load_state_strict(model, state, source)
    return model.eval()


def save_encoder(
    folder: str | os.PathLike, model: VisionTransformer, preprocess: PreprocessConfig
) -> Path:
    """Write our format: folder/model.safetensors + folder/config.json (atomic per file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    meta = {
        "format": OUR_FORMAT,
        "version": OUR_FORMAT_VERSION,
        "encoder": asdict(model.cfg),
        "preprocess": preprocess.to_dict(),
    }
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / "config.json")
    return folder


def read_our_config(folder: str | os.PathLike) -> tuple[EncoderConfig, PreprocessConfig] | None:
    """The configs of our checkpoint folder, or None when it is not in our format."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    meta = read_json_object(path, "encoder config")
    if meta.get("format") != OUR_FORMAT:
        return None
    if meta.get("version") != OUR_FORMAT_VERSION:
        raise CheckpointError(f"{path}: version {meta.get('version')} != {OUR_FORMAT_VERSION}")
    enc, pre = meta.get("encoder"), meta.get("preprocess")
    if not isinstance(enc, dict) or not isinstance(pre, dict):
        raise CheckpointError(f"{path}: expected 'encoder' and 'preprocess' objects")
    known = {f.name for f in fields(EncoderConfig)}
    extra = sorted(set(enc) - known)
    if extra:
        raise CheckpointError(f"{path}: unknown encoder fields {extra}")
    try:
        return EncoderConfig(**enc), PreprocessConfig.from_dict(pre)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: bad encoder config ({describe(err)})") from err


def load_encoder(folder: str | os.PathLike) -> tuple[VisionTransformer, PreprocessConfig]:
    """Load our checkpoint folder written by :func:`save_encoder`."""
    folder = Path(folder)
    configs = read_our_config(folder)
    if configs is None:
        raise CheckpointError(f"{folder}: no config.json of format {OUR_FORMAT!r}")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist")
    model = VisionTransformer(configs[0])
    load_state_strict(model, read_safetensors(weights), str(weights))
    return model.eval(), configs[1]
