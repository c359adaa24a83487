"""Battery (#22): bad inputs and faults against a running wm-serve (toy model, port 0).

Every case checks the specific error text, that no file changed (the repo's configs/ and
models/, byte for byte), and that the server then still answers a valid plan request: on the
same connection where the protocol keeps it open, else on a new one.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from planning.mpc import MPCConfig
from planning.planners.cem import CEMConfig
from planning.server.config import ServeConfig, build_planner
from planning.server.serve import ServerThread
from planning.server.wire import packb, unpackb
from planning.toy import ToyDynamics

REPO = Path(__file__).resolve().parents[2]
START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], np.float32)
GOAL = START + np.array([0.05, -0.03, 0.02, 0, 0, 0, 0], np.float32)
IMG = np.zeros((16, 16, 3), np.uint8)
LIMIT = 64 * 1024  # max_message_bytes
CFG = ServeConfig(
    port=0, planner="cem", cem=CEMConfig(samples=32, iterations=2, top_k=4),
    mpc=MPCConfig(gripper_close_at=0.5), max_message_bytes=LIMIT, max_image_side=64,
    max_subgoals=4, max_stored_goals=2,
)  # fmt: skip
NAN_X, WILD_X = 7.0, -7.0  # finite states on which the model / the planner misbehave


class FaultyToy(ToyDynamics):
    """Toy dynamics whose rollout is NaN from a state with x = NAN_X (a model that outputs NaN
    on some inputs, e.g. with NaN weights in one branch)."""

    def rollout(self, z_context, state_context, actions):
        out = super().rollout(z_context, state_context, actions)
        bad = (state_context[:, 0] == NAN_X)[:, None, None, None, None]
        return out.masked_fill(bad, float("nan"))


class WildPlanner:
    """A planner that returns 10x its plan from a state with x = WILD_X (a planner bug that
    leaves the action box)."""

    def __init__(self, inner) -> None:
        self.inner, self.cfg = inner, inner.cfg

    def plan(self, dynamics, z, state, *args, **kwargs):
        res = self.inner.plan(dynamics, z, state, *args, **kwargs)
        return res._replace(actions=res.actions * 10) if state[0, 0] == WILD_X else res


def factory(cfg):
    return FaultyToy(), WildPlanner(build_planner(cfg))


@pytest.fixture(scope="module")
def server():
    with ServerThread(CFG, factory) as srv:
        yield srv


@contextlib.contextmanager
def client(port, headers=None):
    url = f"ws://127.0.0.1:{port}"
    with connect(url, open_timeout=10, additional_headers=headers, max_size=None) as ws:
        assert unpackb(ws.recv(timeout=10))["server"] == "wm-serve"
        yield ws


def ask(ws, payload):
    ws.send(payload if isinstance(payload, bytes | str) else packb(payload))
    reply = ws.recv(timeout=30)
    return reply if isinstance(reply, str) else unpackb(reply)


def obs(state=START, image=IMG, **extra):
    return {"observation/image": image, "observation/state": state, **extra}


def at_x(x):
    state = START.copy()
    state[0] = x
    return state


def assert_plans(ws):
    """A goal and a plan on this connection: valid, finite actions inside the box."""
    assert ask(ws, {"goal_image": IMG, "goal_state": GOAL, "reset": True})["ok"]
    actions = ask(ws, obs())["actions"]
    assert actions.shape == (1, 7) and np.isfinite(actions).all()
    assert np.abs(actions[0, :3]).max() <= 0.05 + 1e-6


def ndarray_map(data, dtype, shape):
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def images(k, side=16):
    return np.zeros((k, side, side, 3), np.uint8)


GOAL_SET = {"goal_image": IMG, "goal_state": GOAL}
# (case, requests before the fault (each must succeed), the fault, the error it must get)
# fmt: off
CASES = [
    ("text frame", [], "hello", "error: expected a binary msgpack frame, got a text frame"),
    ("garbage bytes", [], b"\xc1\xc1\xc1", "error: message is not valid msgpack"),
    ("map with a list key", [], b"\x81\x91\x01\x01", "error: message is not valid msgpack"),
    ("oversized message", [], packb(obs(image=np.zeros((160, 160, 3), np.uint8))),
     f"exceeds max_message_bytes={LIMIT}"),
    ("too many sub-goals", [], {"goal_image": images(5)},
     "error: 'goal_image' holds 5 sub-goals > max_subgoals=4"),
    ("no sub-goal", [], {"goal_image": images(0)}, "error: 'goal_image' holds no sub-goal"),
    ("image too large", [GOAL_SET], obs(image=np.zeros((65, 8, 3), np.uint8)),
     "error: 'observation/image' side 65 > max_image_side=64"),
    ("goal image too large", [], {"goal_image": images(1, 80)},
     "error: 'goal_image' side 80 > max_image_side=64"),
    ("image dtype", [GOAL_SET], obs(image=IMG.astype(np.float32)),
     "error: 'observation/image' must be a uint8 ndarray"),
    ("image shape", [GOAL_SET], obs(image=np.zeros((16, 16, 4), np.uint8)),
     "error: 'observation/image' must have shape (H,W,3)"),
    ("NaN state", [GOAL_SET], obs(np.full(7, np.nan, np.float32)),
     "error: 'observation/state' contains NaN or inf"),
    ("inf state (float64 overflow)", [GOAL_SET], obs(np.full(7, 1e300)),
     "error: 'observation/state' contains NaN or inf"),
    ("inf goal_state", [], {"goal_image": IMG, "goal_state": np.full(7, np.inf, np.float32)},
     "error: 'goal_state' contains NaN or inf"),
    ("NaN in an ignored key", [GOAL_SET],
     obs(**{"observation/wrist_image": np.full((4, 4, 3), np.nan, np.float32)}),
     "error: 'observation/wrist_image' contains NaN or inf"),
    ("ragged goal_budgets", [], {"goal_image": images(2), "goal_budgets": [[1, 2], [3]]},
     "error: 'goal_budgets' must be 2 integers >= 1"),
    ("ndarray shape overflow", [GOAL_SET],
     msgpack.packb({"observation/image": ndarray_map(b"", "|u1", [2**32, 2**32, 3]),
                    "observation/state": START.tolist()}),
     "does not match (4294967296, 4294967296, 3) uint8"),
    ("ndarray text data", [GOAL_SET],
     msgpack.packb({"observation/image": ndarray_map("x" * 768, "|u1", [16, 16, 3]),
                    "observation/state": START.tolist()}),
     "error: malformed ndarray on the wire: str data"),
    ("object dtype", [], msgpack.packb({"reset": ndarray_map(b"\x00" * 8, "|O", [1])}),
     "error: unsupported dtype on the wire: object"),
    ("numpy scalar overflow", [],
     msgpack.packb({"reset": {b"__npgeneric__": True, b"data": 300, b"dtype": "|u1"}}),
     "error: malformed numpy scalar on the wire"),
    ("unknown goal_id", [], {"goal_id": "nope"}, "error: unknown goal_id 'nope'; known: []"),
    ("too many stored goals", [{**GOAL_SET, "goal_id": "a"}, {**GOAL_SET, "goal_id": "b"}],
     {**GOAL_SET, "goal_id": "c"}, "error: 'goal_id': 2 goals stored (max_stored_goals=2)"),
    ("plan before goal", [], obs(),
     "error: goal missing: send 'goal_image' (or a stored 'goal_id') first"),
    ("non-finite plan (NaN model output)", [GOAL_SET], obs(at_x(NAN_X)),
     "non-finite plan"),
    ("action outside the box (planner bug)", [GOAL_SET], obs(at_x(WILD_X)),
     "outside the action box"),
]
# fmt: on


@pytest.mark.parametrize(("case", "before", "fault", "error"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_its_error_and_the_connection_keeps_serving(
    server, snapshot, case, before, fault, error
):
    snap = snapshot(REPO / "configs", REPO / "models")
    with client(server.port) as ws:
        for request in before:
            assert isinstance(ask(ws, request), dict), (case, request)
        reply = ask(ws, fault)
        assert isinstance(reply, str) and reply.startswith("error: ") and error in reply, reply
        assert_plans(ws)
    snap.assert_unchanged()


def test_a_non_finite_plan_leaves_no_bad_warm_start_so_the_next_plan_works(server, snapshot):
    snap = snapshot(REPO / "configs", REPO / "models")
    with client(server.port) as ws:
        assert ask(ws, GOAL_SET)["ok"]
        assert isinstance(ask(ws, obs())["actions"], np.ndarray)  # a warm start exists
        reply = ask(ws, obs(at_x(NAN_X)))
        assert reply.endswith("no action sent"), reply
        for _ in range(2):  # no NaN warm start left behind
            assert np.isfinite(ask(ws, obs())["actions"]).all()
    snap.assert_unchanged()


def test_a_frame_over_twice_the_limit_closes_only_that_connection(server, snapshot):
    snap = snapshot(REPO / "configs", REPO / "models")
    with client(server.port) as ws:
        ws.send(packb(obs(image=np.zeros((250, 250, 3), np.uint8))))  # 188 KB > 2 x 64 KiB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    with client(server.port) as ws:
        assert_plans(ws)
    snap.assert_unchanged()


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Api-Key wrong"},
        {"Authorization": "s3cret"},
        {"Authorization": "api-key s3cret"},
    ],
    ids=["missing", "wrong", "no scheme", "lowercase scheme"],
)
def test_a_wrong_api_key_is_refused_at_the_handshake(snapshot, headers):
    snap = snapshot(REPO / "configs", REPO / "models")
    with ServerThread(ServeConfig(api_key="s3cret", port=0, cem=CFG.cem)) as srv:
        with pytest.raises(InvalidStatus, match="401"), client(srv.port, headers):
            pass
        with client(srv.port, {"Authorization": "Api-Key s3cret"}) as ws:
            assert_plans(ws)
    snap.assert_unchanged()


def test_a_stalled_handshake_does_not_block_other_clients(server, snapshot):
    """A TCP client that sends half an HTTP upgrade request and then nothing."""
    snap = snapshot(REPO / "configs", REPO / "models")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with client(server.port) as ws:
            start = time.monotonic()
            assert_plans(ws)
            assert time.monotonic() - start < 5.0
    snap.assert_unchanged()


def test_a_client_that_does_not_read_its_replies_does_not_block_others(server, snapshot):
    snap = snapshot(REPO / "configs", REPO / "models")
    with client(server.port) as slow, client(server.port) as ws:
        assert ask(slow, GOAL_SET)["ok"]
        for _ in range(20):  # requests sent, replies left unread
            slow.send(packb(obs()))
        assert_plans(ws)
        replies = [unpackb(slow.recv(timeout=30)) for _ in range(20)]
        assert all(r["actions"].shape == (1, 7) for r in replies)  # all answered, in order
    snap.assert_unchanged()


def test_a_client_that_leaves_mid_request_does_not_break_the_server(server, snapshot):
    snap = snapshot(REPO / "configs", REPO / "models")
    with client(server.port) as gone:
        gone.send(packb({"goal_image": images(4), "goal_state": np.stack([GOAL] * 4), **obs()}))
    with client(server.port) as ws:  # the server is still there, and serves
        assert_plans(ws)
    snap.assert_unchanged()
