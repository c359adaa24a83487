"""AC predictor checkpoints: the published V-JEPA 2-AC ``.pt`` and our world-model folder.

The published file is a ``torch.save`` dict whose ``predictor`` entry maps names such as
``module.predictor_blocks.0.attn.qkv.weight`` to tensors (DDP ``module.`` prefix; the unused
``extrinsics_encoder`` is included). Names match :class:`ACPredictor` once ``module.`` /
``backbone.`` prefixes are stripped. Every key must match by name and shape; otherwise a
:class:`CheckpointError` lists the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from worldmodel.checkpoints.strict import (
    describe,
    load_state_strict,
    read_json_object,
    read_safetensors,
    strip_prefixes,
)
from worldmodel.errors import CheckpointError
from worldmodel.models.predictor import ACPredictor, PredictorConfig

PUBLISHED_KEY = "predictor"
# Our world-model folder: world_model.json (format, predictor config, views, ...) + weights.
FORMAT_VERSION = 1
CONFIG_FILE = "world_model.json"
WEIGHTS_FILE = "predictor.safetensors"


def infer_config(state: Mapping[str, Tensor], **overrides) -> PredictorConfig:
    """Predictor sizes read off the weight shapes; heads and grid come from ``overrides``
    (defaults: the published 16 heads and 16x16 grid)."""
    try:
        width, encoder_dim = state["predictor_embed.weight"].shape
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("predictor_blocks."))
        mlp_dim = state["predictor_blocks.0.mlp.fc1.weight"].shape[0]
        action_dim = state["action_encoder.weight"].shape[1]
        state_dim = state["state_encoder.weight"].shape[1]
        extr_dim = state["extrinsics_encoder.weight"].shape[1]
    except (KeyError, ValueError, IndexError) as err:
        raise CheckpointError(f"cannot infer predictor sizes: missing or bad key {err}") from err
    sizes = dict(
        encoder_dim=int(encoder_dim),
        width=int(width),
        depth=depth,
        mlp_dim=int(mlp_dim),
        action_dim=int(action_dim),
        state_dim=int(state_dim),
        extrinsics_dim=int(extr_dim),
    )
    sizes.update(overrides)
    return PredictorConfig(**sizes)


def read_published_state(path: str | Path) -> dict[str, Tensor]:
    """The cleaned ``predictor`` state dict of a published-format checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (weights only): {describe(err)}"
        ) from err
    if not isinstance(raw, Mapping) or PUBLISHED_KEY not in raw:
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{path}: expected a dict with a '{PUBLISHED_KEY}' entry, got {keys}")
    return strip_prefixes(raw[PUBLISHED_KEY])


def load_published_predictor(
    path: str | Path, cfg: PredictorConfig | None = None, **overrides
) -> ACPredictor:
    """Build an :class:`ACPredictor` from a published-format file, strictly.

    Args:
        path: ``torch.save`` file with a ``predictor`` entry.
        cfg: expected config; when None it is inferred from the shapes (+ ``overrides``, e.g.
            ``num_heads``, ``input_grid``, ``pool_kernel``).
    """
    state = read_published_state(path)
    cfg = cfg if cfg is not None else infer_config(state, **overrides)
    model = ACPredictor(cfg)
    load_state_strict(model, state, str(path), what="predictor")
    return model


def save_published_format(model: ACPredictor, path: str | Path) -> None:
    """Write ``model`` the way the released files are laid out (``predictor`` + ``module.``)."""
    state = {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({PUBLISHED_KEY: state, "epoch": 0}, Path(path))


def predictor_config_from_dict(raw: dict, source: str) -> PredictorConfig:
    """PredictorConfig from its JSON form (lists -> tuples), naming ``source`` on errors."""
    try:
        raw = dict(raw)
        raw["input_grid"] = tuple(raw["input_grid"])
        if raw.get("action_scale") is not None:
            raw["action_scale"] = tuple(raw["action_scale"])
        return PredictorConfig(**raw)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: bad predictor config ({err})") from err


def load_predictor_folder(folder: Path) -> tuple[ACPredictor, dict]:
    """Strictly load the predictor config + safetensors weights of a saved world model;
    returns the predictor and the parsed ``world_model.json``."""
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(f"{folder}: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    meta = read_json_object(cfg_path, "world-model config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    raw_cfg = meta.get("predictor")
    if not isinstance(raw_cfg, dict):
        raise CheckpointError(f"{cfg_path}: expected a 'predictor' object, got {raw_cfg!r:.60}")
    predictor = ACPredictor(predictor_config_from_dict(raw_cfg, str(cfg_path)))
    load_state_strict(predictor, read_safetensors(w_path), str(w_path), what="predictor")
    return predictor.eval(), meta
