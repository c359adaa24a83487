"""wm-serve's settings (:class:`ServeConfig`) and what they build at start: the planner, the
proposal policy a plan's search starts from, the dynamics, and the conventions (layout, views,
observation keys) the server serves."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from planning.mpc import MPCConfig, Proposal
from planning.planners import PCEM, PLANNERS, CEMConfig, ICEMConfig, make_planner
from planning.policy import load_policy, policy_proposal, proposal_folder
from planning.protocol import LatentDynamics, Planner
from planning.server.checks import ServeSafety, check_clock_limits
from planning.server.keys import ObsKeyMap, ObsKeys, resolve_obs_keys
from planning.toy import ToyDynamics
from worldmodel.config import from_mapping
from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW
from worldmodel.models.layout import Layout
from worldmodel.models.policy import POLICY_DIR
from worldmodel.models.views import parse_views

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# "pcem": CEM 64 x 4 started at the model's proposal policy (wm_pcem's planner, wm-demo's default)
SERVE_PLANNERS = (*PLANNERS, "pcem")


@dataclass(frozen=True)
class ServeConfig:
    """wm-serve settings. ``model``: "toy" or a WorldModel folder; ``planner``:
    cem|icem|reference|pcem. ``pcem`` is a small CEM (``pcem``, 64 x 4) whose search starts at
    a learned proposal's action (wm-eval's wm_pcem planner; its gripper execution filters are
    ``mpc.*``, off by default here): the policy in ``proposal``, else the model
    folder's (``<model>/policy/proposal``, else ``<model>/policy``); refused at start when
    there is none. ``proposal`` given with another planner starts that planner's search there.

    ``api_key`` (or the env var named by ``api_key_env``) is required to bind a non-loopback host.
    Limits on one request (see the module docstring): ``max_message_bytes``, ``max_image_side``,
    ``max_subgoals``; per connection: ``max_stored_goals``. ``goal_encode_batch``: sub-goal
    images encoded per model turn (larger: a long goal is encoded faster, other clients wait
    longer behind it).

    Observations: ``obs_keys`` names the key preset (``ours`` | ``droid``,
    :mod:`planning.server.keys`), ``obs_key_map`` overrides any of its keys. ``safety``: the
    limits applied to every returned action (:class:`planning.server.checks.ServeSafety`).
    ``max_obs_age_s``: refuse an observation whose ``observation/timestamp`` is older than this
    on arrival (0: no clock comparison), ``max_obs_ahead_s``: or further ahead of the server
    clock than this. ``dry_run``: plan and report, but return no actions.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    api_key_env: str = "WM_SERVE_API_KEY"
    model: str = "toy"
    planner: str = "icem"
    cem: CEMConfig = field(default_factory=CEMConfig)
    icem: ICEMConfig = field(default_factory=ICEMConfig)
    pcem: CEMConfig = field(default_factory=lambda: PCEM)
    proposal: str = ""  # a wm-train-policy folder: each plan's search starts at its action
    mpc: MPCConfig = field(default_factory=MPCConfig)
    max_message_bytes: int = 8 * 1024 * 1024
    max_image_side: int = 1024
    max_subgoals: int = 16
    max_stored_goals: int = 16
    goal_encode_batch: int = 4
    obs_keys: str = "ours"
    obs_key_map: ObsKeyMap = field(default_factory=ObsKeyMap)
    safety: ServeSafety = field(default_factory=ServeSafety)
    max_obs_age_s: float = 1.0
    max_obs_ahead_s: float = 0.1
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.planner not in SERVE_PLANNERS:
            raise ValueError(
                f"ServeConfig.planner must be one of {sorted(SERVE_PLANNERS)}, got {self.planner}"
            )
        if not 0 <= self.port < 65536:
            raise ValueError(f"ServeConfig.port out of range: {self.port}")
        if self.max_message_bytes < 1024 or self.max_image_side < 1:
            raise ValueError("ServeConfig.max_message_bytes must be >= 1024, max_image_side >= 1")
        for name in ("max_subgoals", "goal_encode_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_stored_goals < 0:
            raise ValueError(
                f"ServeConfig.max_stored_goals must be >= 0, got {self.max_stored_goals}"
            )
        self.observation_keys()  # a bad preset or override fails at start
        check_clock_limits(self.max_obs_age_s, self.max_obs_ahead_s)
        if not isinstance(self.dry_run, bool):
            raise ValueError(f"ServeConfig.dry_run must be true or false, got {self.dry_run}")

    def observation_keys(self) -> ObsKeys:
        return resolve_obs_keys(self.obs_keys, self.obs_key_map)

    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or None


Factory = Callable[[ServeConfig], tuple[LatentDynamics, Any]]


def build_planner(cfg: ServeConfig, dynamics: LatentDynamics | None = None) -> Planner:
    """The configured planner, with the action bounds ``dynamics`` (a world model) records."""
    chosen = {"cem": cfg.cem, "icem": cfg.icem, "pcem": cfg.pcem}.get(cfg.planner)
    return make_planner("cem" if cfg.planner == "pcem" else cfg.planner, chosen, dynamics)


def proposal_source(cfg: ServeConfig) -> Path | None:
    """The policy folder each plan's search starts from: ``cfg.proposal``, or for
    ``planner=pcem`` the model folder's proposal (None: plans start from the warm start)."""
    if cfg.proposal:
        return Path(cfg.proposal)
    if cfg.planner != "pcem":
        return None
    if cfg.model == "toy":
        raise ValueError(
            "ServeConfig.planner=pcem needs a world model folder with a proposal policy "
            "(wm-train-policy proposal=true install=true) or proposal=<policy folder>; "
            "model=toy has none: use planner=cem or icem"
        )
    return proposal_folder(Path(cfg.model) / POLICY_DIR)


def build_proposal(folder: Path | None, dynamics: LatentDynamics) -> Proposal | None:
    """MPCController's ``proposal`` from the policy in ``folder`` (:func:`proposal_source`),
    checked against the model's encoder (CheckpointError, a ValueError, naming the file that
    is missing or does not fit); None without a folder."""
    if folder is None:
        return None
    if not hasattr(dynamics, "encoder"):
        raise ValueError(
            f"ServeConfig.proposal: {folder} is a policy on a world model's latents; the "
            f"served dynamics ({type(dynamics).__name__}) are not a world model"
        )
    return policy_proposal(load_policy(dynamics, folder))


def default_factory(cfg: ServeConfig) -> tuple[LatentDynamics, Any]:
    """Toy dynamics for ``model: toy``; else ``WorldModel.load(folder)`` (toy if unavailable)."""
    if cfg.model != "toy":
        try:
            from worldmodel.world_model import WorldModel
        except ImportError as exc:
            log.warning("worldmodel.world_model unavailable (%s): serving the TOY model", exc)
        else:
            model = WorldModel.load(cfg.model)
            return model, build_planner(cfg, model)
    return ToyDynamics(), build_planner(cfg)


def action_box(planner: Planner) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 bounds of one action: the planner's ``action_low``/``action_high``
    (CEMConfig), else the DROID bounds of :mod:`worldmodel.data.actions`."""
    low = getattr(planner.cfg, "action_low", ACTION_LOW)
    high = getattr(planner.cfg, "action_high", ACTION_HIGH)
    return np.asarray(low, np.float32), np.asarray(high, np.float32)


def serving_layout(dynamics: LatentDynamics, planner: Planner) -> Layout:
    """The conventions the server serves: the layout a world model records; for dynamics that
    record none (the toy, test doubles), the published 7-D layout, or a per-dim ``delta``
    layout for another action size, with the planner's action box as bounds."""
    layout = getattr(dynamics, "layout", None)
    if isinstance(layout, Layout):
        return layout
    low, high = (tuple(float(v) for v in b) for b in action_box(planner))
    a = int(dynamics.action_dim)
    if a == 7:
        return Layout(action_low=low, action_high=high)
    return Layout(a, a, [f"s{i}" for i in range(a)], [f"a{i}" for i in range(a)], "delta", low,
                  high)  # fmt: skip


class Conventions(NamedTuple):
    """What the served model takes, read once at start: its layout, view names and the
    observation keys that carry them."""

    layout: Layout
    views: tuple[str, ...]
    keys: ObsKeys


def conventions(cfg: ServeConfig, dynamics: LatentDynamics, planner: Planner) -> Conventions:
    """The served model's conventions; ValueError when the observation keys cannot carry its
    views (checked before the first request)."""
    views = parse_views(getattr(dynamics, "views", None) or ("exterior",))
    keys = cfg.observation_keys()
    keys.check_views(views)
    return Conventions(serving_layout(dynamics, planner), views, keys)


def config_from_dict(raw: dict) -> ServeConfig:
    """Typed ServeConfig from a plain (Hydra) mapping (:func:`worldmodel.config.from_mapping`)."""
    return from_mapping(ServeConfig, raw, where="wm-serve")
