"""Strict, shape-checked loading of a state dict, shared by every checkpoint format."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from worldmodel.errors import CheckpointError

PREFIXES = ("module.", "backbone.")  # DDP and wrapper prefixes of published checkpoints


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


def load_state_strict(
    model: torch.nn.Module, state: Mapping[str, Tensor], source: str, what: str = "encoder"
) -> None:
    """Copy ``state`` into ``model`` after checking names and shapes; raise listing every problem.

    ``what`` names the component in the error (encoder, predictor, ...). Values that are not
    tensors, and floating-point tensors holding NaN or inf, are refused: a model with non-finite
    weights would plan on NaN energies.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source}: expected a mapping of {what} weights, got {type(state).__name__}"
        )
    not_tensors = sorted(
        f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, Tensor)
    )
    if not_tensors:
        raise CheckpointError(f"{source}: {what} entries that are not tensors: {not_tensors[:8]}")
    non_finite = sorted(
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    )
    if non_finite:
        raise CheckpointError(
            f"{source}: {what} weights hold NaN or inf in {len(non_finite)} tensors: "
            f"{non_finite[:8]}"
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        raise CheckpointError(
            f"{source} does not match the {what}: missing {missing}, unexpected {unexpected}, "
            f"mis-shaped {misshaped}"
        )
    model.load_state_dict(dict(state), strict=True)


def describe(err: BaseException) -> str:
    """``Type: first line`` of a library error, never empty (an empty file gives ``EOFError()``);
    for torch's weights-only refusal, the reason (e.g. ``Unsupported global: ...``)."""
    text = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if isinstance(err, pickle.UnpicklingError) and "WeightsUnpickler error:" in str(err):
        # torch's weights_only refusal: a page of advice, then the reason on its own line.
        after = str(err).split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        text = [ln.strip() for ln in after if ln.strip()][:1] or text
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold an object; :class:`CheckpointError` naming ``path`` otherwise."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the {what} as JSON ({describe(err)})") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: the {what} must be a JSON object, got {type(raw).__name__}")
    return raw


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file; :class:`CheckpointError` naming it when truncated,
    empty or not safetensors."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({describe(err)}); it may be truncated "
            "(an interrupted download or copy)"
        ) from err
