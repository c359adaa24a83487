"""wm-serve: openpi client drives the toy to a goal; bad inputs get error frames; API key."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import msgpack
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from planning.planners.cem import CEMConfig
from planning.server.config import ServeConfig, build_planner, config_from_dict
from planning.server.serve import PolicyServer, ServerThread
from planning.server.wire import packb, unpackb
from planning.toy import ToyDynamics

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], np.float32)
IMG = np.zeros((16, 16, 3), np.uint8)
GOAL = START + np.array([0.08, -0.06, 0.05, 0, 0, 0, 0], np.float32)
CFG = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=128, iterations=5, top_k=12),
                  max_message_bytes=64 * 1024)  # fmt: skip


@pytest.fixture(scope="module")
def server():
    with ServerThread(CFG) as srv:
        yield srv


@contextlib.contextmanager
def raw_client(port, headers=None):
    """A plain websockets client speaking the same msgpack; yields (ws, server metadata)."""
    with connect(
        f"ws://127.0.0.1:{port}", open_timeout=10, additional_headers=headers, max_size=None,
        compression=None,
    ) as ws:  # fmt: skip
        yield ws, unpackb(ws.recv(timeout=10))


def ask(ws, payload):
    ws.send(payload if isinstance(payload, bytes | str) else packb(payload))
    reply = ws.recv(timeout=30)
    return reply if isinstance(reply, str) else unpackb(reply)


def obs(state=START, image=IMG):
    return {"observation/image": image, "observation/state": state}


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")
def test_openpi_client_drives_toy_to_goal(server):
    policy_mod = pytest.importorskip("openpi_client.websocket_client_policy")
    client = policy_mod.WebsocketClientPolicy("127.0.0.1", server.port)
    assert client.get_server_metadata()["action_dim"] == 7
    assert client.infer({"goal_image": IMG, "goal_state": GOAL, "reset": True})["ok"]
    state = START.copy()
    for _ in range(6):
        reply = client.infer({**obs(state), "prompt": "reach"})
        assert reply["actions"].shape == (1, 7) and reply["actions"].dtype == np.float32
        state = state + reply["actions"][0]
    client._ws.close()
    assert np.abs(state[:3] - GOAL[:3]).max() < 0.006


def _huge():
    return packb({**obs(), "observation/image": np.zeros((160, 160, 3), np.uint8)})


# fmt: off
BAD = [
    ("text frame", "hello", "text frame"),
    ("not msgpack", b"\xc1\xc1\xc1", "not valid msgpack"),
    ("not a map", packb([1, 2, 3]), "must be a msgpack map"),
    ("unknown key", {"observation/imag": IMG}, "unknown keys"),
    ("image without state", {"observation/image": IMG}, "sent together"),
    ("image float", obs(image=IMG.astype(np.float32)), "uint8"),
    ("image shape", obs(image=np.zeros((16, 16), np.uint8)), "shape"),
    ("image as list", obs(image=[[1, 2, 3]]), "uint8 ndarray"),
    ("state shape", obs(state=np.zeros(6, np.float32)), "shape"),
    ("state NaN", obs(state=np.full(7, np.nan, np.float32)), "NaN or inf"),
    ("state inf", obs(state=np.array([np.inf] + [0] * 6, np.float32)), "NaN or inf"),
    ("state text", obs(state="up"), "numeric"),
    ("oversized", _huge(), "exceeds max_message_bytes"),
    (
        "corrupt ndarray",
        msgpack.packb(
            {
                "observation/image": {
                    b"__ndarray__": True,
                    b"data": b"12",
                    b"dtype": "|u1",
                    b"shape": [16, 16, 3],
                },
                "observation/state": START.tolist(),
            }
        ),
        "does not match",
    ),
    ("reset not bool", {"reset": "yes"}, "bool"),
    ("unknown goal id", {"goal_id": "nope"}, "unknown goal_id"),
    ("budgets mismatch", {"goal_image": IMG, "goal_budgets": np.array([1, 2])}, "goal_budgets"),
    (
        "goal states mismatch",
        {"goal_image": IMG, "goal_state": np.zeros((2, 7), np.float32)},
        "goal states",
    ),
    ("goal state alone", {"goal_state": GOAL}, "need a 'goal_image'"),
]
# fmt: on


def test_bad_inputs_get_specific_errors_and_server_keeps_serving(server):
    with raw_client(server.port) as (ws, _):
        assert "goal missing" in ask(ws, obs())  # no goal yet
        assert ask(ws, {"goal_image": IMG, "goal_state": GOAL})["ok"]
        for name, payload, match in BAD:
            reply = ask(ws, payload)
            assert isinstance(reply, str) and match in reply, (name, reply)
            good = ask(ws, obs())  # the next good request still succeeds
            assert isinstance(good, dict) and good["actions"].shape == (1, 7), (name, good)


def test_two_connections_do_not_share_state(server):
    with raw_client(server.port) as (a, _), raw_client(server.port) as (b, _):
        far = START + np.array([-0.05, 0.05, -0.05, 0, 0, 0, 0], np.float32)
        ask(a, {"goal_image": IMG, "goal_state": GOAL, "goal_id": "g"})
        ask(b, {"goal_image": IMG, "goal_state": far})
        ra, rb = ask(a, obs()), ask(b, obs())
        assert np.sign(ra["actions"][0, 0]) == 1 and np.sign(rb["actions"][0, 0]) == -1
        assert "unknown goal_id" in ask(b, {"goal_id": "g"})  # goals are per connection
        assert ask(a, {"goal_id": "g", "reset": True})["ok"]


def test_subgoal_schedule_over_the_wire(server):
    mid = START + np.array([0.03, 0, 0, 0, 0, 0, 0], np.float32)
    with raw_client(server.port) as (ws, _):
        ask(ws, {"goal_image": np.stack([IMG, IMG]), "goal_state": np.stack([mid, GOAL]),
                 "goal_budgets": np.array([1, 1])})  # fmt: skip
        assert [ask(ws, obs())["subgoal_index"] for _ in range(3)] == [0, 1, 1]


def test_execution_filters_apply_to_the_returned_chunk():
    from planning.mpc import MPCConfig

    start = START.copy()
    start[-1] = 0.0  # open
    grasp = start + np.array([0.03, 0, 0, 0, 0, 0, 0.2], np.float32)  # move 3 cm, close to 0.2
    filters = MPCConfig(gripper_close_at=0.1, hold_arm_on_gripper=True)
    for mpc, closing in ((MPCConfig(), False), (filters, True)):
        cfg = ServeConfig(port=0, cem=CEMConfig(samples=64, top_k=8, iterations=4), mpc=mpc)
        with ServerThread(cfg) as srv, raw_client(srv.port) as (ws, _):
            ask(ws, {"goal_image": IMG, "goal_state": grasp})
            action = ask(ws, obs(start))["actions"][0]
        if closing:  # all the way closed (0 -> 1), the arm still
            assert action[-1] == pytest.approx(1.0) and not action[:-1].any()
        else:  # as planned: part-way, moving
            assert 0.05 < action[-1] < 0.45 and action[0] > 0.01


def test_api_key_required_and_checked():
    cfg = ServeConfig(port=0, api_key="s3cret", cem=CEMConfig(samples=32, top_k=4, iterations=2))
    with ServerThread(cfg) as srv:
        for headers in (None, {"Authorization": "Api-Key wrong"}, {"Authorization": "s3cret"}):
            with pytest.raises(InvalidStatus, match="401"), raw_client(srv.port, headers):
                pass
        with raw_client(srv.port, {"Authorization": "Api-Key s3cret"}) as (ws, meta):
            assert meta["server"] == "wm-serve"
            assert "goal missing" in ask(ws, obs())


def test_non_loopback_bind_needs_api_key(monkeypatch):
    monkeypatch.delenv("WM_SERVE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="not loopback"):
        PolicyServer(ServeConfig(host="0.0.0.0", port=0))


def test_config_from_dict_and_validation():
    cfg = config_from_dict({"planner": "cem", "cem": {"samples": 64, "action_low": [-0.1] * 7,
                            "action_high": [0.1] * 7}, "mpc": {"action_chunk": 1}})  # fmt: skip
    assert cfg.cem.samples == 64 and cfg.cem.action_low == (-0.1,) * 7
    with pytest.raises(ValueError, match="planner"):
        ServeConfig(planner="mppi")


@pytest.mark.parametrize("planner", ["cem", "icem", "reference"])
def test_hydra_configs_compose_into_serve_config(planner):
    from planning.server.config import ServeConfig
    from worldmodel.config import compose, plain_defaults

    raw = compose("serve", [f"planner={planner}"], plain_defaults(ServeConfig))
    cfg = config_from_dict(raw)
    assert cfg.planner == planner and cfg.host == "127.0.0.1"


def test_a_multi_view_model_takes_its_views_side_by_side():
    """parse_request(views=2): a single square image is refused with the layout named."""
    from planning.server.wire import RequestError, parse_request

    state = np.zeros(7, np.float32)
    pair = np.zeros((64, 128, 3), np.uint8)
    req = parse_request({"observation/image": pair, "observation/state": state}, views=2)
    assert req.image.shape == (64, 128, 3)
    with pytest.raises(RequestError, match=r"2 square views side by side"):
        parse_request({"observation/image": pair[:, :64], "observation/state": state}, views=2)
    with pytest.raises(RequestError, match="'goal_image'"):
        parse_request({"goal_image": np.zeros((1, 64, 64, 3), np.uint8)}, views=2)
    parse_request({"observation/image": pair[:, :64], "observation/state": state})  # one view


class RecordingToy(ToyDynamics):
    """Toy dynamics that records each ``encode`` batch size and takes ``delay_s`` per image
    (a stand-in for an image encoder)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s, self.calls = delay_s, []

    def encode(self, images, states):
        self.calls.append(int(images.shape[0]))
        time.sleep(self.delay_s * images.shape[0])
        return super().encode(images, states)


def recording_server(dynamics, **overrides):
    cfg = replace(CFG, max_message_bytes=1 << 20, **overrides)
    return ServerThread(cfg, lambda c: (dynamics, build_planner(c)))


def test_too_many_subgoals_are_refused_naming_the_limit(server):
    with raw_client(server.port) as (ws, meta):
        assert meta["max_subgoals"] == CFG.max_subgoals == 16
        reply = ask(ws, {"goal_image": np.zeros((17, 16, 16, 3), np.uint8)})
        assert reply == "error: 'goal_image' holds 17 sub-goals > max_subgoals=16"
        assert ask(ws, {"goal_image": np.zeros((16, 16, 16, 3), np.uint8)})["ok"]
    with pytest.raises(ValueError, match="max_subgoals"):
        ServeConfig(max_subgoals=0)
    cfg = config_from_dict({"max_subgoals": 8, "goal_encode_batch": 2, "max_stored_goals": 0})
    assert (cfg.max_subgoals, cfg.goal_encode_batch, cfg.max_stored_goals) == (8, 2, 0)


@pytest.mark.parametrize("with_states", [True, False])
def test_a_goal_schedule_is_encoded_in_slices_with_the_same_plan(with_states):
    """16 sub-goals with goal_encode_batch=4: four encode calls of 4 (the controller's own call
    is served from them), and the same actions as one call of 16. Without goal states the
    goal is encoded at the first plan, with that plan's state (MPCController's rule)."""
    goals = np.stack([GOAL + np.float32(0.001 * i) for i in range(16)])
    request = {"goal_image": np.zeros((16, 16, 16, 3), np.uint8), "goal_budgets": [1] * 16}
    if with_states:
        request["goal_state"] = goals
    plans = {}
    for batch in (4, 16):
        toy = RecordingToy()
        with recording_server(toy, goal_encode_batch=batch) as srv, raw_client(srv.port) as (ws, _):
            assert ask(ws, request)["ok"]
            plans[batch] = [ask(ws, obs())["actions"] for _ in range(3)]
        goal_calls = [batch] * (16 // batch)
        assert toy.calls == [*goal_calls, 1, 1, 1]
    np.testing.assert_allclose(plans[4], plans[16], atol=1e-6)


def test_a_long_goal_does_not_hold_the_model_from_other_clients():
    """While client A's 16 sub-goals are encoded (4 turns of 4 images), client B's plan gets a
    turn in between; with goal_encode_batch=16 (one long turn) it waits for all of A's."""
    order = {}
    for batch in (4, 16):
        toy = RecordingToy(delay_s=0.05)  # a 4-image slice: 0.2 s
        with recording_server(toy, goal_encode_batch=batch) as srv, raw_client(srv.port) as (
            a, _), raw_client(srv.port) as (b, _):  # fmt: skip
            assert ask(b, {"goal_image": IMG, "goal_state": GOAL})["ok"]
            toy.calls.clear()
            a.send(packb({"goal_image": np.zeros((16, 16, 16, 3), np.uint8), "goal_state":
                          np.stack([GOAL] * 16)}))  # fmt: skip
            deadline = time.monotonic() + 10
            while not toy.calls and time.monotonic() < deadline:  # A holds its first turn
                time.sleep(0.005)
            assert ask(b, obs())["actions"].shape == (1, 7)
            assert unpackb(a.recv(timeout=30))["ok"]
        order[batch] = list(toy.calls)
    assert order[4] == [4, 1, 4, 4, 4]  # B's frame (1 image) right after A's first slice
    assert order[16] == [16, 1]


def test_non_finite_plans_and_out_of_box_actions_are_never_sent():
    """A model whose rollout is NaN: an error frame, and the connection keeps serving."""

    class NaNToy(ToyDynamics):
        def rollout(self, z_context, state_context, actions):
            out = super().rollout(z_context, state_context, actions)
            return out.masked_fill((state_context[:, 0] > 5.0)[:, None, None, None, None], np.nan)

    with recording_server(NaNToy()) as srv, raw_client(srv.port) as (ws, _):
        ask(ws, {"goal_image": IMG, "goal_state": GOAL})
        far = START.copy()
        far[0] = 7.0  # a finite state on which the model's output is NaN
        reply = ask(ws, obs(far))
        assert isinstance(reply, str) and "non-finite plan" in reply, reply
        assert reply.endswith("no action sent")
        assert ask(ws, obs())["actions"].shape == (1, 7)
