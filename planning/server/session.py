"""One wm-serve connection's planner state (:class:`Session`: its controller, stored goals,
safety limits and clock) and the fair turns all connections take on the shared model
(:class:`ModelTurns`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planning.mpc import MPCController, Proposal
from planning.protocol import LatentDynamics, Planner
from planning.server.checks import ChunkSafety, ObservationClock
from planning.server.config import Conventions, ServeConfig, action_box
from planning.server.wire import Request, RequestError, parse_request, unpackb


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
