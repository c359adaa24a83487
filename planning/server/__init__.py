"""wm-serve: the openpi-compatible websocket policy server (:mod:`planning.server.serve`), its
settings (:mod:`planning.server.config`), a connection's planner state
(:mod:`planning.server.session`), its msgpack wire format (:mod:`planning.server.wire`), the observation key presets and view
assembly (:mod:`planning.server.keys`) and the safety and staleness checks
(:mod:`planning.server.checks`)."""

from planning.server.config import ServeConfig
from planning.server.serve import PolicyServer, ServerThread, serve_forever

__all__ = ["PolicyServer", "ServeConfig", "ServerThread", "serve_forever"]
