"""Strict, shape-checked loading of a state dict, shared by every checkpoint format."""

from __future__ import annotations

from collections.abc import Mapping

import torch
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

    ``what`` names the component in the error (encoder, predictor, ...).
    """
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
    model.load_state_dict(state, strict=True)
