"""Planners of action sequences, each a :class:`planning.protocol.Planner`, built by name.

``make_planner("cem" | "icem" | "reference", cfg=None, **overrides)`` is the one place that maps
a name to a planner: wm-eval, wm-demo and wm-serve all build theirs through it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from planning.planners.cem import CEMConfig, CEMPlanner
from planning.planners.icem import ICEMConfig, ICEMPlanner
from planning.planners.reference import ReferenceCEMPlanner, reference_cem, reference_cem_config
from planning.protocol import Planner

# name -> (default config factory, planner class)
PLANNERS: dict[str, tuple[Any, type]] = {
    "cem": (CEMConfig, CEMPlanner),
    "icem": (ICEMConfig, ICEMPlanner),
    "reference": (reference_cem_config, ReferenceCEMPlanner),
}


def make_planner(name: str, cfg: CEMConfig | None = None, **overrides: Any) -> Planner:
    """The planner called ``name`` with ``cfg`` (default: that planner's own defaults) and any
    field ``overrides`` (e.g. ``samples=256``)."""
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; known: {sorted(PLANNERS)}")
    default_cfg, planner_cls = PLANNERS[name]
    cfg = default_cfg() if cfg is None else cfg
    return planner_cls(replace(cfg, **overrides) if overrides else cfg)


__all__ = [
    "PLANNERS", "CEMConfig", "CEMPlanner", "ICEMConfig", "ICEMPlanner", "ReferenceCEMPlanner",
    "make_planner", "reference_cem", "reference_cem_config",
]  # fmt: skip
