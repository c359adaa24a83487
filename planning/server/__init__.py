"""wm-serve: the openpi-compatible websocket policy server (:mod:`planning.server.serve`) and
its msgpack wire format (:mod:`planning.server.wire`)."""

from planning.server.serve import PolicyServer, ServeConfig, ServerThread, serve_forever

__all__ = ["PolicyServer", "ServeConfig", "ServerThread", "serve_forever"]
