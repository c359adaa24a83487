"""wm-serve: an openpi-compatible websocket policy server around the MPC planner.

Protocol (that of ``openpi_client.websocket_client_policy.WebsocketClientPolicy``): on connect
the server sends a msgpack metadata dict; then each binary msgpack request gets one binary
msgpack reply dict, or a text frame ``"error: ..."`` (the openpi client raises on text) after
which the connection keeps serving. Optional API key: header ``Authorization: Api-Key <key>``;
a missing/wrong key is refused with HTTP 401 during the handshake.

Request keys (any subset, applied as one unit after validation):
- ``"reset": True``: forget warm start and sub-goal progress (a new episode; goal kept).
- ``"goal_image"``: uint8 (H,W,3) or (K,H,W,3) sub-goal schedule; ``"goal_state"`` (7,)/(K,7)
  optional goal proprioception; ``"goal_budgets"`` (K,) steps per sub-goal; ``"goal_id"``: a
  name to store the goal under, or alone to switch back to a stored goal.
- ``"observation/image"`` uint8 (H,W,3) + ``"observation/state"`` float (7,): plan now.
  ``"prompt"`` and ``"observation/wrist_image"`` are accepted and ignored.
Reply with an observation: ``"actions"`` float32 (k, A) chunk of the plan (k = action_chunk),
``"energy"``, ``"current_energy"``, ``"subgoal_index"``, ``"planning_s"``; otherwise ``"ok"``.
Each connection owns its controller (goal, warm start, sub-goal progress); model calls are
serialized by one lock and run off the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from planning.cpu_memory import keep_freed_memory
from planning.mpc import MPCConfig, MPCController
from planning.planners import PLANNERS, CEMConfig, ICEMConfig, make_planner
from planning.protocol import LatentDynamics, Planner
from planning.server.wire import Request, RequestError, packb, parse_request, unpackb
from planning.toy import ToyDynamics
from worldmodel.config import from_mapping, plain_defaults, run_cli

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """wm-serve settings. ``model``: "toy" or a WorldModel folder; ``planner``: cem|icem|reference.

    ``api_key`` (or the env var named by ``api_key_env``) is required to bind a non-loopback host.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    api_key_env: str = "WM_SERVE_API_KEY"
    model: str = "toy"
    planner: str = "icem"
    cem: CEMConfig = field(default_factory=CEMConfig)
    icem: ICEMConfig = field(default_factory=ICEMConfig)
    mpc: MPCConfig = field(default_factory=MPCConfig)
    max_message_bytes: int = 8 * 1024 * 1024
    max_image_side: int = 1024
    state_dim: int = 7

    def __post_init__(self) -> None:
        if self.planner not in PLANNERS:
            raise ValueError(
                f"ServeConfig.planner must be one of {sorted(PLANNERS)}, got {self.planner}"
            )
        if not 0 <= self.port < 65536:
            raise ValueError(f"ServeConfig.port out of range: {self.port}")
        if self.max_message_bytes < 1024 or self.max_image_side < 1:
            raise ValueError("ServeConfig.max_message_bytes must be >= 1024, max_image_side >= 1")

    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or None


Factory = Callable[[ServeConfig], tuple[LatentDynamics, Any]]


def build_planner(cfg: ServeConfig) -> Planner:
    return make_planner(cfg.planner, {"cem": cfg.cem, "icem": cfg.icem}.get(cfg.planner))


def default_factory(cfg: ServeConfig) -> tuple[LatentDynamics, Any]:
    """Toy dynamics for ``model: toy``; else ``WorldModel.load(folder)`` (toy if unavailable)."""
    if cfg.model != "toy":
        try:
            from worldmodel.world_model import WorldModel
        except ImportError as exc:
            log.warning("worldmodel.world_model unavailable (%s): serving the TOY model", exc)
        else:
            return WorldModel.load(cfg.model), build_planner(cfg)
    return ToyDynamics(), build_planner(cfg)


class Session:
    """One connection's planner state: its controller and its stored goals."""

    def __init__(self, cfg: ServeConfig, dynamics: LatentDynamics, planner) -> None:
        self.cfg = cfg
        self.controller = MPCController(dynamics, planner, cfg=cfg.mpc)
        self.goals: dict[str, tuple] = {}

    def decode(self, message: str | bytes) -> Request:
        if isinstance(message, str):
            raise RequestError("expected a binary msgpack frame, got a text frame")
        msg = unpackb(message, max_bytes=self.cfg.max_message_bytes)
        views = len(getattr(self.controller.dynamics, "views", None) or ("exterior",))
        return parse_request(msg, self.cfg.state_dim, self.cfg.max_image_side, views)

    def apply_goal(self, req: Request) -> None:
        """Runs in a worker thread (encodes goals)."""
        if req.goal_images is not None:
            goal = (req.goal_images, req.goal_states, req.goal_budgets)
            if req.goal_id is not None:
                self.goals[req.goal_id] = goal
            self.controller.set_goal(*goal)
        elif req.goal_id is not None:
            if req.goal_id not in self.goals:
                raise RequestError(f"unknown goal_id {req.goal_id!r}; known: {sorted(self.goals)}")
            self.controller.set_goal(*self.goals[req.goal_id])
        if req.reset:
            self.controller.reset()

    async def respond(self, message: str | bytes, lock: asyncio.Lock) -> dict:
        req = self.decode(message)
        no_goal = req.goal_images is None and req.goal_id is None
        if req.image is not None and no_goal and not self.controller.has_goal:
            raise RequestError("goal missing: send 'goal_image' (or a stored 'goal_id') first")
        async with lock:
            await asyncio.to_thread(self.apply_goal, req)
            if req.image is None:
                return {"ok": True, "subgoal_index": self.controller.subgoal_index}
            chunk, info = await asyncio.to_thread(self.controller.plan_chunk, req.image, req.state)
        chunk = self.controller.cfg.execute(chunk, req.state)
        return {
            "actions": chunk, "energy": info.energy, "current_energy": info.current_energy,
            "subgoal_index": info.subgoal_index, "planning_s": info.seconds,
        }  # fmt: skip


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
        self.lock = asyncio.Lock()
        self._server = None
        self.metadata = {
            "server": "wm-serve", "protocol": "openpi-websocket-msgpack",
            "action_dim": int(self.dynamics.action_dim), "action_chunk": cfg.mpc.action_chunk,
            "horizon": self.planner.cfg.horizon, "planner": cfg.planner, "model": cfg.model,
            "max_message_bytes": cfg.max_message_bytes,
            "observation_keys": ["observation/image", "observation/state"],
            "goal_keys": ["goal_image", "goal_state", "goal_budgets", "goal_id", "reset"],
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
        session = Session(self.cfg, self.dynamics, self.planner)
        try:
            await ws.send(packb(self.metadata))
            async for message in ws:
                await ws.send(await self._reply(session, message))
        except ConnectionClosed:
            log.info("client %s went away", ws.remote_address)

    async def _reply(self, session: Session, message: str | bytes) -> str | bytes:
        """Packed reply, or an ``error: ...`` text frame (the connection keeps serving)."""
        try:
            return packb(await session.respond(message, self.lock))
        except RequestError as exc:
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
