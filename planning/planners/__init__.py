"""Planners of action sequences, each a :class:`planning.protocol.Planner`, built by name.

``make_planner("cem" | "icem" | "reference", cfg=None, **overrides)`` is the one place that maps
a name to a planner: wm-eval, wm-demo and wm-serve all build theirs through it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from planning.planners.cem import DROID_HIGH, DROID_LOW, CEMConfig, CEMPlanner
from planning.planners.icem import ICEMConfig, ICEMPlanner
from planning.planners.reference import ReferenceCEMPlanner, reference_cem, reference_cem_config
from planning.protocol import ActionLayout, Planner

# name -> (default config factory, planner class)
PLANNERS: dict[str, tuple[Any, type]] = {
    "cem": (CEMConfig, CEMPlanner),
    "icem": (ICEMConfig, ICEMPlanner),
    "reference": (reference_cem_config, ReferenceCEMPlanner),
}

# Effort weight on the gripper delta for world-model planning (CEMConfig.action_cost): keep the
# gripper unless the goal pays for moving it. A tie-breaker, small against the energy a real
# grasp gains (docs/experiments/ has the measurements behind the value).
GRIPPER_EFFORT = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01)
# "pcem" (wm-eval's wm_pcem, wm-demo's default, wm-serve planner=pcem): a small CEM whose search
# starts at a learned proposal's action for the active (sub-)goal (MPCController's proposal)
PCEM = CEMConfig(samples=64, iterations=4, top_k=8, action_cost=GRIPPER_EFFORT)


def fit_to_model(cfg: CEMConfig, dynamics: Any) -> CEMConfig:
    """``cfg`` for the model ``dynamics``: a world model records the per-dim action bounds of
    its training data (``dynamics.layout``); a config that keeps the default (DROID) bounds
    takes the model's, and for a layout other than the 7-D end-effector delta the planner sees
    no xyz or rotation part (the layout's gripper, if any, is kept) and drops an effort term
    sized for 7 dims. Bounds set explicitly are kept (and must fit the model's action dim)."""
    layout = getattr(dynamics, "layout", None)
    if layout is None:
        return cfg
    changes: dict[str, Any] = {}
    if (cfg.action_low, cfg.action_high) == (DROID_LOW, DROID_HIGH):
        changes.update(action_low=layout.action_low, action_high=layout.action_high)
    if not layout.is_published:
        changes["layout"] = ActionLayout(None, None, layout.gripper_index)
        if cfg.action_cost is not None and len(cfg.action_cost) != layout.action_dim:
            changes["action_cost"] = None
    return replace(cfg, **changes) if changes else cfg


def make_planner(
    name: str, cfg: CEMConfig | None = None, dynamics: Any = None, **overrides: Any
) -> Planner:
    """The planner called ``name`` with ``cfg`` (default: that planner's own defaults), fitted
    to the model ``dynamics`` when given (:func:`fit_to_model`), and any field ``overrides``
    (e.g. ``samples=256``)."""
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; known: {sorted(PLANNERS)}")
    default_cfg, planner_cls = PLANNERS[name]
    cfg = default_cfg() if cfg is None else cfg
    if dynamics is not None:
        cfg = fit_to_model(cfg, dynamics)
    return planner_cls(replace(cfg, **overrides) if overrides else cfg)


__all__ = [
    "GRIPPER_EFFORT", "PCEM", "PLANNERS", "CEMConfig", "CEMPlanner", "ICEMConfig", "ICEMPlanner", "ReferenceCEMPlanner",
    "fit_to_model", "make_planner", "reference_cem", "reference_cem_config",
]  # fmt: skip
