"""The state/action conventions a world model was trained with, stored in its folder and used
wherever the model meets actions: rollouts (how an action moves the state), planner bounds,
action scaling, and checks against a robot or dataset.

``action_kind`` says how an action moves the state during an imagined rollout:

- ``ee_delta``: the published V-JEPA 2-AC / DROID layout, 7-D state ``[x, y, z, roll, pitch,
  yaw, gripper]`` and 7-D action ``[dx, dy, dz, droll, dpitch, dyaw, dgripper]``
  (:func:`worldmodel.models.state_ops.apply_action`). Required by published checkpoints.
- ``delta``: ``next_state = state + action`` per dim (e.g. joint-position deltas).
- ``absolute``: ``next_state = action`` (e.g. joint-position targets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW
from worldmodel.data.images import check_policy
from worldmodel.models.state_ops import apply_action

ACTION_KINDS = ("ee_delta", "delta", "absolute")
EE_STATE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
EE_ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "dgripper")


@dataclass(frozen=True)
class Layout:
    """Dims, names, kind and per-dim action bounds of a model's states and actions, plus the
    control rate (frames per second of the training clips; None = not recorded) and how frames
    that are not square were fitted (``image_policy``, :mod:`worldmodel.data.images`): planning
    fits a robot's frames the same way."""

    state_dim: int = 7
    action_dim: int = 7
    state_names: tuple[str, ...] = EE_STATE_NAMES
    action_names: tuple[str, ...] = EE_ACTION_NAMES
    action_kind: str = "ee_delta"
    action_low: tuple[float, ...] = ACTION_LOW
    action_high: tuple[float, ...] = ACTION_HIGH
    fps: float | None = None
    image_policy: str = "crop"

    def __post_init__(self) -> None:
        for name in ("state_names", "action_names", "action_low", "action_high"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "action_low", tuple(float(v) for v in self.action_low))
        object.__setattr__(self, "action_high", tuple(float(v) for v in self.action_high))
        if self.state_dim < 1 or self.action_dim < 1:
            raise ValueError(f"Layout dims must be >= 1, got {self.state_dim}, {self.action_dim}")
        if self.action_kind not in ACTION_KINDS:
            raise ValueError(
                f"Layout.action_kind must be one of {ACTION_KINDS}, got {self.action_kind!r}"
            )
        if self.action_kind == "ee_delta" and (self.state_dim, self.action_dim) != (7, 7):
            raise ValueError(
                f"Layout.action_kind 'ee_delta' needs 7-D state and action, got "
                f"{self.state_dim}-D and {self.action_dim}-D"
            )
        if self.action_kind in ("delta", "absolute") and self.state_dim != self.action_dim:
            raise ValueError(
                f"Layout.action_kind {self.action_kind!r} maps actions onto states dim by dim: "
                f"needs state_dim == action_dim, got {self.state_dim} and {self.action_dim}"
            )
        for name, dim in (("state_names", self.state_dim), ("action_names", self.action_dim),
                          ("action_low", self.action_dim), ("action_high", self.action_dim)):  # fmt: skip
            if len(getattr(self, name)) != dim:
                raise ValueError(
                    f"Layout.{name} has {len(getattr(self, name))} entries, dim is {dim}"
                )
        bad = [
            i for i, (lo, hi) in enumerate(zip(self.action_low, self.action_high, strict=True))
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi)
        ]  # fmt: skip
        if bad:
            raise ValueError(f"Layout action bounds need finite low < high; bad dims {bad}")
        check_policy(self.image_policy, "Layout.image_policy")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Layout.fps must be > 0, got {self.fps}")

    @property
    def is_published(self) -> bool:
        """The published V-JEPA 2-AC layout (7-D end-effector delta)."""
        return self.action_kind == "ee_delta"

    @property
    def action_scale(self) -> tuple[float, ...]:
        """1 / the largest |bound| per dim: a full step reads as 1 to the action encoder."""
        return tuple(
            1.0 / max(abs(lo), abs(hi))
            for lo, hi in zip(self.action_low, self.action_high, strict=True)
        )

    @property
    def gripper_index(self) -> int | None:
        """Index of the action dim named like a gripper (``gripper``/``dgripper``), or None."""
        for i, name in enumerate(self.action_names):
            if "gripper" in name.lower():
                return i
        return None

    def next_state(self, state: Tensor, action: Tensor) -> Tensor:
        """State after applying ``action`` (broadcasting over leading dims)."""
        if self.action_kind == "ee_delta":
            return apply_action(state, action)
        state, action = torch.broadcast_tensors(state, action)
        return state + action if self.action_kind == "delta" else action.clone()

    def propagate(self, state: Tensor, actions: Tensor) -> Tensor:
        """(..., S) state and (..., H, A) actions -> (..., H, S) states before each action."""
        out = [state.expand((*actions.shape[:-2], self.state_dim))]
        for h in range(actions.shape[-2] - 1):
            out.append(self.next_state(out[-1], actions[..., h, :]))
        return torch.stack(out, dim=-2)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("state_names", "action_names", "action_low", "action_high"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "layout") -> Layout:
        """A Layout from its JSON form; ValueError naming ``where`` and the field otherwise."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}: unknown layout fields {unknown}")
        try:
            return cls(**dict(raw))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err

    @classmethod
    def from_meta(cls, meta: Any) -> Layout:
        """The layout of an episode dataset's ``meta.json`` (fields absent in older datasets
        take the published 7-D defaults; bounds absent or empty: the DROID bounds for 7-D
        end-effector data, else required)."""
        state_dim, action_dim = int(meta.state_dim), int(meta.action_dim)
        kind = getattr(meta, "action_kind", "ee_delta") or "ee_delta"
        low = tuple(getattr(meta, "action_low", ()) or ())
        high = tuple(getattr(meta, "action_high", ()) or ())
        if not low and kind == "ee_delta":
            low, high = ACTION_LOW, ACTION_HIGH
        elif not low:
            raise ValueError(
                f"the dataset's meta.json has no action bounds for its {kind!r} actions: an "
                "import that did not finish (rerun wm-import to complete it), or a dataset "
                "written without action_low/action_high"
            )
        default = kind == "ee_delta"
        return cls(
            state_dim=state_dim,
            action_dim=action_dim,
            state_names=tuple(
                getattr(meta, "state_names", ())
                or (EE_STATE_NAMES if default else _numbered("s", state_dim))
            ),
            action_names=tuple(
                getattr(meta, "action_names", ())
                or (EE_ACTION_NAMES if default else _numbered("a", action_dim))
            ),
            action_kind=kind,
            action_low=low,
            action_high=high,
            fps=float(meta.fps) if getattr(meta, "fps", None) else None,
            image_policy=getattr(meta, "image_policy", "crop") or "crop",
        )


def _numbered(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))
