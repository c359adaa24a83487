"""wm-serve: an openpi-compatible websocket policy server around the MPC planner.

Protocol (that of ``openpi_client.websocket_client_policy.WebsocketClientPolicy``): on connect
the server sends a msgpack metadata dict; then each binary msgpack request gets one binary
msgpack reply dict, or a text frame ``"error: ..."`` (the openpi client raises on text) after
which the connection keeps serving. Optional API key: header ``Authorization: Api-Key <key>``;
a missing/wrong key is refused with HTTP 401 during the handshake.

Request keys (any subset, applied as one unit after validation; S = the model's state dim):
- ``"reset": True``: forget warm start and sub-goal progress (a new episode; goal kept).
- ``"goal_image"``: uint8 (H,W,3) or (K,H,W,3) sub-goal schedule (the model's views side by
  side), or a map {view name: image(s)} the server assembles; ``"goal_state"`` (S,)/(K,S)
  optional goal proprioception; ``"goal_budgets"`` (K,) steps per sub-goal; ``"goal_id"``: a
  name to store the goal under, or alone to switch back to a stored goal.
- an observation, in the keys of the ``obs_keys`` preset (:mod:`planning.server.keys`): plan
  now. ``ours``: ``"observation/image"`` uint8 mosaic + ``"observation/state"`` float (S,);
  ``droid``: openpi's DROID camera keys (the server builds the mosaic of the model's views)
  + ``"observation/cartesian_position"`` (6) and ``"observation/gripper_position"`` (1).
  Optional ``"observation/timestamp"`` (client ``time.time()``): stale ones are refused.
- ``"dry_run": True``: plan and report, send nothing (also ``ServeConfig.dry_run``).
Reply with an observation: ``"actions"`` float32 (k, A) chunk of the plan (k = action_chunk)
after the safety limits (``"requested_actions"`` before them, ``"clamped"`` the limits that
fired per row; in a dry run ``"actions"`` is empty (0, A) and ``"would_send"`` holds them),
``"energy"``, ``"current_energy"``, ``"subgoal_index"``, ``"planning_s"``, ``"dry_run"``,
``"obs_age_s"`` (with a timestamp); otherwise ``"ok"``. The metadata sent on connect reports
the model's conventions (state and action names and dims, action bounds, fps, views, image
policy), the observation keys and the safety limits.

Limits (``ServeConfig``; a request over one gets an error frame naming the key and the limit):
``max_message_bytes`` (8 MiB; frames over twice that close the connection, code 1009),
``max_image_side`` (1024 px), ``max_subgoals`` (16 images in ``goal_image``),
``max_stored_goals`` (16 ``goal_id`` names per connection). NaN or inf in any float field is
refused. No action leaves the server unless it is finite and inside the planner's action box
(``action_low``/``action_high``); a non-finite plan gets an error frame, and the connection's
controller keeps its last good warm start (MPCController checks a plan before keeping it).

Scheduling: each connection owns its controller (goal, warm start, sub-goal progress); the model
is shared and runs one unit of work at a time, granted in arrival order (:class:`ModelTurns`),
off the event loop. A unit is one plan, or the encoding of ``goal_encode_batch`` sub-goal
images: a long goal schedule is encoded over several turns, so a client waits for at most one
such unit of another client's goal (about one ordinary plan), never for the whole of it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from planning.cpu_memory import keep_freed_memory
from planning.mpc import MPCConfig, MPCController, Proposal
from planning.planners import PCEM, PLANNERS, CEMConfig, ICEMConfig, make_planner
from planning.policy import load_policy, policy_proposal, proposal_folder
from planning.protocol import LatentDynamics, Planner
from planning.server.checks import ChunkSafety, ObservationClock, ServeSafety, check_clock_limits
from planning.server.keys import ObsKeyMap, ObsKeys, resolve_obs_keys
from planning.server.wire import Request, RequestError, packb, parse_request, unpackb
from planning.toy import ToyDynamics
from worldmodel.config import from_mapping, plain_defaults, run_cli
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


class PlanError(RuntimeError):
    """The plan cannot be sent (non-finite, or outside the action box); goes back as an error."""


_NOT_SENT = "no action sent; warm start and sub-goal progress reset"


class ModelTurns:
    """Fair turns on the shared model: one unit of work at a time, in arrival order.

    ``asyncio.Lock`` wakes its waiters first in, first out and lets no newcomer barge past them;
    each connection has at most one unit waiting, so turns go round-robin over the connections.
    Each unit runs in a worker thread, so the event loop keeps reading and writing frames.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.units = 0
        self.longest_s = 0.0  # the longest unit so far: what one client can make others wait

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._lock:
            start = time.perf_counter()
            try:
                return await asyncio.to_thread(fn, *args)
            finally:
                self.units += 1
                self.longest_s = max(self.longest_s, time.perf_counter() - start)


class GoalMemo:
    """One connection's view of the shared dynamics: ``encode`` answers from ``memo`` (images,
    states, latents) when asked for exactly those images and states, else asks the model.

    MPCController encodes a whole goal schedule in one ``encode`` call (in ``set_goal``, or at
    the first ``plan_chunk`` when the goal has no states). The server computes those latents
    beforehand, a few sub-goals per model turn, and serves that call from the memo, so one long
    schedule never holds the model for a long turn. Everything else is the model's own.
    """

    def __init__(self, dynamics: LatentDynamics) -> None:
        self.model = dynamics
        self.memo: tuple[Tensor, Tensor, Tensor] | None = None

    def __getattr__(self, name: str) -> Any:  # action_dim, views, rollout, ...
        return getattr(self.model, name)

    def encode(self, images: Tensor, states: Tensor) -> Tensor:
        memo = self.memo
        if memo is not None and _same(images, memo[0]) and _same(states, memo[1]):
            return memo[2]
        return self.model.encode(images, states)


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


Goal = tuple[np.ndarray, np.ndarray | None, list[int] | None]  # images, states, budgets


class Session:
    """One connection's planner state: its controller and its stored goals."""

    def __init__(
        self,
        cfg: ServeConfig,
        dynamics: LatentDynamics,
        planner: Planner,
        conv: Conventions,
        proposal: Proposal | None = None,
    ) -> None:
        self.cfg, self.conv = cfg, conv
        self.dynamics = GoalMemo(dynamics)
        self.controller = MPCController(self.dynamics, planner, cfg=cfg.mpc, proposal=proposal)
        self.low, self.high = action_box(planner)
        self.safety = ChunkSafety(cfg.safety, conv.layout)
        self.clock = ObservationClock(cfg.max_obs_age_s, cfg.max_obs_ahead_s)
        self.next_chunk_s = 0.0  # monotonic time the rate limit allows the next chunk at
        self.goals: dict[str, Goal] = {}
        self.goal: Goal | None = None  # the active goal
        self.lazy = False  # its latents wait for the first plan's state (MPCController's rule)

    def decode(self, message: str | bytes) -> Request:
        if isinstance(message, str):
            raise RequestError("expected a binary msgpack frame, got a text frame")
        msg = unpackb(message, max_bytes=self.cfg.max_message_bytes)
        cfg, (layout, views, keys) = self.cfg, self.conv
        return parse_request(msg, layout.state_dim, cfg.max_image_side, views, cfg.max_subgoals,
                             keys, layout.image_policy)  # fmt: skip

    def requested_goal(self, req: Request) -> Goal | None:
        """The goal this request sets (new, or a stored one by ``goal_id``), if any."""
        if req.goal_images is not None:
            full = len(self.goals) >= self.cfg.max_stored_goals
            if req.goal_id is not None and req.goal_id not in self.goals and full:
                raise RequestError(
                    f"'goal_id': {len(self.goals)} goals stored (max_stored_goals="
                    f"{self.cfg.max_stored_goals}); reuse a stored goal_id"
                )
            return req.goal_images, req.goal_states, req.goal_budgets
        if req.goal_id is not None:
            if req.goal_id not in self.goals:
                raise RequestError(f"unknown goal_id {req.goal_id!r}; known: {sorted(self.goals)}")
            return self.goals[req.goal_id]
        return None

    def goal_to_encode(self, req: Request, goal: Goal | None) -> tuple:
        """(images, states) of the goal latents this request makes the controller encode, or
        (None, None): a goal with states now, one without at its first plan, with that plan's
        state repeated (as MPCController does)."""
        if goal is not None and goal[1] is not None:
            return goal[0], goal[1]
        pending = goal if goal is not None else (self.goal if self.lazy else None)
        if pending is not None and req.state is not None:
            return pending[0], np.repeat(req.state[None], len(pending[0]), axis=0)
        return None, None

    async def respond(self, message: str | bytes, turns: ModelTurns) -> dict:
        arrived = time.time()  # server clock on arrival: the observation's age is taken here
        req = await asyncio.to_thread(self.decode, message)  # large frames: off the event loop
        age = self.clock.check(req.timestamp, arrived) if req.image is not None else None
        goal = self.requested_goal(req)
        if req.image is not None and goal is None and not self.controller.has_goal:
            raise RequestError("goal missing: send 'goal_image' (or a stored 'goal_id') first")
        images, states = self.goal_to_encode(req, goal)
        memo = None
        if images is not None:
            dev = self.cfg.mpc.device
            images_t = torch.as_tensor(np.ascontiguousarray(images), device=dev)
            states_t = torch.as_tensor(states, dtype=torch.float32, device=dev)
            n = self.cfg.goal_encode_batch
            parts = [
                await turns.run(self._encode, images_t[i : i + n], states_t[i : i + n])
                for i in range(0, len(images_t), n)
            ]  # one model turn per slice: other connections' units run in between
            memo = (images_t, states_t, torch.cat(parts))
        reply = await turns.run(self._apply, req, goal, memo)
        if "actions" not in reply:
            return reply
        if age is not None:
            reply["obs_age_s"] = age
        if self.cfg.dry_run or req.dry_run:  # planned and reported; nothing to execute
            reply["would_send"] = reply["actions"]
            reply["actions"] = reply["actions"][:0]
            reply["dry_run"] = True
            return reply
        if self.cfg.safety.enabled and self.cfg.safety.rate_limit_hz > 0:
            await self.pace(reply)
        # The age when the chunk leaves, after model turns, planning and pacing.
        sent_age = self.clock.check_sent(req.timestamp, time.time())
        if sent_age is not None:
            reply["obs_age_s"] = sent_age
        return reply

    async def pace(self, reply: dict) -> None:
        """The rate limit: wait (off the model's turns) until the previous chunk has had time to
        run at ``rate_limit_hz``; the wait is reported as ``"rate"`` on the first row."""
        wait = self.next_chunk_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            reply["clamped"][0].append("rate")
        hz = self.cfg.safety.rate_limit_hz
        self.next_chunk_s = time.monotonic() + len(reply["actions"]) / hz

    def _encode(self, images: Tensor, states: Tensor) -> Tensor:
        """One model turn (worker thread): latents of a slice of sub-goals."""
        with torch.no_grad():
            return self.dynamics.model.encode(images, states)

    def _apply(self, req: Request, goal: Goal | None, memo: tuple | None) -> dict:
        """One model turn (worker thread): set the goal, reset, plan, check the actions."""
        self.dynamics.memo = memo
        try:
            if goal is not None:
                self.controller.set_goal(*goal)
                self.goal, self.lazy = goal, goal[1] is None
                if req.goal_id is not None:
                    self.goals[req.goal_id] = goal
            if req.reset:
                self.controller.reset()
            if req.image is None:
                return {"ok": True, "subgoal_index": self.controller.subgoal_index}
            dry = self.cfg.dry_run or req.dry_run
            snap = self.controller.snapshot() if dry else None
            try:
                chunk, info = self.controller.plan_chunk(req.image, req.state)
                if snap is not None:  # a dry run plans and reports, and leaves no trace
                    self.controller.restore(snap)
            except RuntimeError as exc:  # a non-finite plan (not kept as the warm start)
                raise PlanError(f"{exc}; no action sent") from exc
            except ValueError as exc:  # e.g. non-finite latents, an image the model refuses
                raise PlanError(f"{exc}; no action sent") from exc
        finally:
            self.dynamics.memo = None
        self.lazy = False
        requested = self.checked_actions(chunk, info.energy, req.state)
        sent, clamped = self.safety.apply(requested, req.state)
        self.check_box(sent, "after the safety limits")
        return {
            "actions": sent, "requested_actions": requested, "clamped": clamped,
            "energy": info.energy, "current_energy": info.current_energy,
            "subgoal_index": info.subgoal_index, "planning_s": info.seconds, "dry_run": False,
        }  # fmt: skip

    def checked_actions(self, chunk: np.ndarray, energy: float, state: np.ndarray) -> np.ndarray:
        """The (k, A) chunk as planned, after the execution filters; :class:`PlanError` unless
        it is finite and inside the action box (e.g. a model with NaN weights plans NaN, or a
        finite chunk picked on NaN energies). A plan outside the box is a fault of the model
        or planner: refused, not clamped."""
        if not (np.isfinite(chunk).all() and math.isfinite(energy)):
            self.controller.reset()  # the warm start holds the bad plan
            raise PlanError(f"non-finite plan (energy {energy}); {_NOT_SENT}")
        actions = np.asarray(self.controller.cfg.execute(chunk, state), dtype=np.float32)
        self.check_box(actions)
        return actions

    def check_box(self, actions: np.ndarray, when: str = "") -> None:
        """:class:`PlanError` unless ``actions`` are finite and inside the action box."""
        tol = 1e-6  # float32 rounding of the bounds
        finite = np.isfinite(actions).all()
        if not finite or (actions < self.low - tol).any() or (actions > self.high + tol).any():
            raise PlanError(
                f"action {actions.tolist()} outside the action box [{self.low.tolist()}, "
                f"{self.high.tolist()}]{' ' + when if when else ''}; not sent"
            )


class PolicyServer:
    """The websocket server; ``start()``/``stop()`` inside a running event loop."""

    def __init__(self, cfg: ServeConfig, factory: Factory = default_factory) -> None:
        self.cfg = cfg
        self.api_key = cfg.resolved_api_key()
        if cfg.host not in LOOPBACK and not self.api_key:
            raise ValueError(
                f"ServeConfig.host={cfg.host!r} is not loopback: set api_key or ${cfg.api_key_env}"
            )
        self.dynamics, self.planner = factory(cfg)
        self.proposal_dir = proposal_source(cfg)
        self.proposal = build_proposal(self.proposal_dir, self.dynamics)
        self.conv = conventions(cfg, self.dynamics, self.planner)
        self.turns = ModelTurns()
        self._server = None
        self.metadata = self.describe()

    def describe(self) -> dict:
        """The metadata sent on connect: the model's conventions, the keys it reads, limits."""
        cfg, (layout, views, keys) = self.cfg, self.conv
        low, high = action_box(self.planner)
        return {
            "server": "wm-serve", "protocol": "openpi-websocket-msgpack",
            "action_dim": int(self.dynamics.action_dim), "action_chunk": cfg.mpc.action_chunk,
            "horizon": self.planner.cfg.horizon, "planner": cfg.planner, "model": cfg.model,
            "proposal": None if self.proposal_dir is None else str(self.proposal_dir),
            "state_dim": layout.state_dim, "state_names": list(layout.state_names),
            "action_names": list(layout.action_names), "action_kind": layout.action_kind,
            "action_low": low.tolist(), "action_high": high.tolist(), "fps": layout.fps,
            "views": list(views), "image_policy": layout.image_policy,
            "obs_keys": keys.name, "observation_keys": keys.describe(),
            "goal_keys": ["goal_image", "goal_state", "goal_budgets", "goal_id", "reset"],
            "safety": cfg.safety.describe(layout), "dry_run": cfg.dry_run,
            "max_obs_age_s": cfg.max_obs_age_s, "max_obs_ahead_s": cfg.max_obs_ahead_s,
            "max_message_bytes": cfg.max_message_bytes, "max_image_side": cfg.max_image_side,
            "max_subgoals": cfg.max_subgoals,
        }  # fmt: skip

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    def _check_key(self, connection: ServerConnection, request):
        if self.api_key is None:
            return None
        got = request.headers.get("Authorization", "")
        if hmac.compare_digest(got.encode(), f"Api-Key {self.api_key}".encode()):
            return None
        log.warning(
            "refused connection from %s: missing or wrong API key", connection.remote_address
        )
        return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.cfg.host, self.cfg.port, process_request=self._check_key,
            max_size=2 * self.cfg.max_message_bytes, compression=None,
        )  # fmt: skip
        log.info("wm-serve listening on ws://%s:%d", self.cfg.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(self.cfg, self.dynamics, self.planner, self.conv, self.proposal)
        try:
            await ws.send(packb(self.metadata))
            async for message in ws:
                await ws.send(await self._reply(session, message))
        except ConnectionClosed:
            log.info("client %s went away", ws.remote_address)

    async def _reply(self, session: Session, message: str | bytes) -> str | bytes:
        """Packed reply, or an ``error: ...`` text frame (the connection keeps serving)."""
        try:
            return packb(await session.respond(message, self.turns))
        except RequestError as exc:
            return f"error: {exc}"
        except PlanError as exc:  # the model or planner misbehaved: worth an operator's look
            log.warning("plan not sent: %s", exc)
            return f"error: {exc}"
        except Exception as exc:  # server boundary: report, log, keep serving
            log.exception("internal error while serving a request")
            return f"error: internal {type(exc).__name__}: {exc}"


def config_from_dict(raw: dict) -> ServeConfig:
    """Typed ServeConfig from a plain (Hydra) mapping (:func:`worldmodel.config.from_mapping`)."""
    return from_mapping(ServeConfig, raw, where="wm-serve")


async def serve_forever(cfg: ServeConfig, factory: Factory = default_factory) -> None:
    server = PolicyServer(cfg, factory)
    await server.start()
    try:
        await asyncio.Future()
    finally:
        await server.stop()


class ServerThread:
    """Run a :class:`PolicyServer` on its own event loop in a daemon thread (tests, demos).

    ``with ServerThread(cfg, factory) as server: ... server.port`` (use port 0 for a free port).
    """

    def __init__(self, cfg: ServeConfig, factory: Factory = default_factory) -> None:
        self.cfg, self.factory = cfg, factory
        self.loop = asyncio.new_event_loop()
        self.server: PolicyServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="wm-serve")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = PolicyServer(self.cfg, self.factory)
            self.loop.run_until_complete(self.server.start())
        except (OSError, ValueError) as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30.0):
            raise TimeoutError("wm-serve did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10.0)


def main() -> None:
    """Entry point ``wm-serve`` (Hydra, configs/serve.yaml over the ServeConfig defaults)."""
    run_cli("serve", config_from_dict, _run, schema=plain_defaults(ServeConfig))


def _run(cfg: ServeConfig) -> None:
    keep_freed_memory()  # planning.cpu_memory: no page faults per plan on CPU
    log.info("wm-serve config: %s", {k: v for k, v in asdict(cfg).items() if k != "api_key"})
    asyncio.run(serve_forever(cfg))


if __name__ == "__main__":
    main()
