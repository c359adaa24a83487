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
import threading
from dataclasses import asdict
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from planning.cpu_memory import keep_freed_memory
from planning.server.config import (
    LOOPBACK,
    Factory,
    ServeConfig,
    action_box,
    build_proposal,
    config_from_dict,
    conventions,
    default_factory,
    proposal_source,
)
from planning.server.session import ModelTurns, PlanError, Session
from planning.server.wire import RequestError, packb
from worldmodel.config import plain_defaults, run_cli

log = logging.getLogger(__name__)


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
