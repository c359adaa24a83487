"""Strict loading of AC predictor weights: the published V-JEPA 2-AC format and our own.

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

from worldmodel.checkpoints import load_state_strict as _load_strict
from worldmodel.errors import CheckpointError
from worldmodel.predictor import ACPredictor, PredictorConfig

PREFIXES = ("module.", "backbone.")
PUBLISHED_KEY = "predictor"


def strip_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove leading ``module.`` / ``backbone.`` (in any order, repeatedly) from every name."""
    out = {}
    for name, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if name.startswith(p):
                    name, changed = name[len(p) :], True
        out[name] = value
    return out


def load_state_strict(model: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strict, shape-checked copy of predictor weights (see :func:`worldmodel.checkpoints.load_state_strict`).

    Raises:
        CheckpointError: naming ``source`` and listing missing / unexpected / mis-shaped keys.
    """
    _load_strict(model, state, source, what="predictor")


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
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
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
    load_state_strict(model, state, str(path))
    return model


def save_published_format(model: ACPredictor, path: str | Path) -> None:
    """Write ``model`` the way the released files are laid out (``predictor`` + ``module.``)."""
    state = {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({PUBLISHED_KEY: state, "epoch": 0}, Path(path))
